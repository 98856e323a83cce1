import Runtime
import Foundation

/// The reward and accuracy curves of a run as a self-contained SVG, for `tributary plot`.
public enum RunPlot {
    public struct Series: Sendable {
        public var name: String
        public var color: String
        public var points: [(x: Double, y: Double)]
        public var dashed: Bool
        public var width: Double

        public init(name: String, color: String, points: [(x: Double, y: Double)], dashed: Bool = false, width: Double = 1.5) {
            self.name = name
            self.color = color
            self.points = points
            self.dashed = dashed
            self.width = width
        }
    }

    public struct Panel: Sendable {
        public var title: String
        public var yLabel: String
        public var series: [Series]
        /// Fixed y range (accuracy is 0...1); nil fits the data.
        public var yRange: ClosedRange<Double>?

        public init(title: String, yLabel: String, series: [Series], yRange: ClosedRange<Double>? = nil) {
            self.title = title
            self.yLabel = yLabel
            self.series = series
            self.yRange = yRange
        }
    }

    /// Reward mean per step (raw and smoothed) above, batch accuracy per step below with held-out accuracy before and after.
    public static func svg(points: [StepMetrics], title: String, accuracyBefore: Double? = nil, accuracyAfter: Double? = nil) -> String {
        let sorted = points.sorted { $0.step < $1.step }
        let reward = sorted.map { (x: Double($0.step), y: $0.rewardMean) }
        let accuracy = sorted.map { (x: Double($0.step), y: $0.accuracy) }
        var rewardSeries = [Series(name: "reward mean", color: "#9ecae1", points: reward, width: 1)]
        if reward.count >= 5 {
            rewardSeries.append(Series(name: "moving average", color: "#08519c", points: movingAverage(reward, window: max(3, reward.count / 20)), width: 2))
        }
        var accuracySeries = [Series(name: "batch accuracy", color: "#31a354", points: accuracy, width: 1.5)]
        let steps = sorted.map { Double($0.step) }
        let first = steps.first ?? 0, last = steps.last ?? 1
        if let accuracyBefore {
            accuracySeries.append(Series(name: String(format: "held-out before %.1f%%", accuracyBefore * 100), color: "#de2d26",
                                         points: [(first, accuracyBefore), (last, accuracyBefore)], dashed: true))
        }
        if let accuracyAfter {
            accuracySeries.append(Series(name: String(format: "held-out after %.1f%%", accuracyAfter * 100), color: "#756bb1",
                                         points: [(first, accuracyAfter), (last, accuracyAfter)], dashed: true))
        }
        return render(title: title, xLabel: "learner step", panels: [
            Panel(title: "Reward", yLabel: "reward mean", series: rewardSeries, yRange: nil),
            Panel(title: "Accuracy", yLabel: "accuracy", series: accuracySeries, yRange: 0...1),
        ])
    }

    /// Trailing mean over `window` points.
    public static func movingAverage(_ points: [(x: Double, y: Double)], window: Int) -> [(x: Double, y: Double)] {
        var sum = 0.0
        return points.enumerated().map { index, point in
            sum += point.y
            if index >= window { sum -= points[index - window].y }
            return (point.x, sum / Double(min(index + 1, window)))
        }
    }

    /// Panels stacked vertically over a shared x axis.
    public static func render(title: String, xLabel: String, panels: [Panel], width: Double = 900, panelHeight: Double = 260) -> String {
        let left = 70.0, right = 200.0, top = 50.0, gap = 70.0, bottom = 50.0
        let height = top + Double(panels.count) * panelHeight + Double(max(0, panels.count - 1)) * gap + bottom
        let xs = panels.flatMap { $0.series.flatMap { $0.points.map(\.x) } }
        var xMin = xs.min() ?? 0, xMax = xs.max() ?? 1
        if xMax <= xMin { xMax = xMin + 1 }
        let plotWidth = width - left - right
        var svg = [
            #"<svg xmlns="http://www.w3.org/2000/svg" width="\#(format(width))" height="\#(format(height))" viewBox="0 0 \#(format(width)) \#(format(height))" font-family="Helvetica, Arial, sans-serif" font-size="12">"#,
            #"<rect width="100%" height="100%" fill="white"/>"#,
            #"<text x="\#(format(width / 2))" y="28" text-anchor="middle" font-size="16" font-weight="bold">\#(escape(title))</text>"#,
        ]
        let xTicks = ticks(xMin, xMax)
        xMin = min(xMin, xTicks.first ?? xMin)
        xMax = max(xMax, xTicks.last ?? xMax)
        func xPosition(_ x: Double) -> Double { left + (x - xMin) / (xMax - xMin) * plotWidth }

        for (index, panel) in panels.enumerated() {
            let panelTop = top + Double(index) * (panelHeight + gap)
            let ys = panel.series.flatMap { $0.points.map(\.y) }.filter(\.isFinite)
            var yMin = panel.yRange?.lowerBound ?? min(0, ys.min() ?? 0)
            var yMax = panel.yRange?.upperBound ?? (ys.max() ?? 1)
            if yMax <= yMin { yMax = yMin + 1 }
            let yTicks = ticks(yMin, yMax)
            if panel.yRange == nil {
                yMin = min(yMin, yTicks.first ?? yMin)
                yMax = max(yMax, yTicks.last ?? yMax)
            }
            func yPosition(_ y: Double) -> Double { panelTop + panelHeight - (y - yMin) / (yMax - yMin) * panelHeight }

            svg.append(#"<text x="\#(format(left))" y="\#(format(panelTop - 10))" font-size="14" font-weight="bold">\#(escape(panel.title))</text>"#)
            svg.append(#"<rect x="\#(format(left))" y="\#(format(panelTop))" width="\#(format(plotWidth))" height="\#(format(panelHeight))" fill="none" stroke="\#(frameColor)"/>"#)
            for tick in yTicks where tick >= yMin - 1e-9 && tick <= yMax + 1e-9 {
                let y = yPosition(tick)
                svg.append(#"<line x1="\#(format(left))" y1="\#(format(y))" x2="\#(format(left + plotWidth))" y2="\#(format(y))" stroke="\#(gridColor)"/>"#)
                svg.append(#"<text x="\#(format(left - 6))" y="\#(format(y + 4))" text-anchor="end">\#(label(tick))</text>"#)
            }
            for tick in xTicks where tick >= xMin - 1e-9 && tick <= xMax + 1e-9 {
                let x = xPosition(tick)
                svg.append(#"<line x1="\#(format(x))" y1="\#(format(panelTop))" x2="\#(format(x))" y2="\#(format(panelTop + panelHeight))" stroke="\#(lightGridColor)"/>"#)
                svg.append(#"<text x="\#(format(x))" y="\#(format(panelTop + panelHeight + 16))" text-anchor="middle">\#(label(tick))</text>"#)
            }
            let middle = panelTop + panelHeight / 2
            svg.append(#"<text x="18" y="\#(format(middle))" text-anchor="middle" transform="rotate(-90 18 \#(format(middle)))">\#(escape(panel.yLabel))</text>"#)
            if ys.isEmpty {
                svg.append(#"<text x="\#(format(left + plotWidth / 2))" y="\#(format(middle))" text-anchor="middle" fill="\#(noteColor)">no data yet</text>"#)
            }
            for (number, series) in panel.series.enumerated() {
                let finite = series.points.filter { $0.x.isFinite && $0.y.isFinite }
                if finite.count == 1 {
                    svg.append(#"<circle cx="\#(format(xPosition(finite[0].x)))" cy="\#(format(yPosition(finite[0].y)))" r="3" fill="\#(series.color)"/>"#)
                } else if finite.count > 1 {
                    let path = finite.map { "\(format(xPosition($0.x))),\(format(yPosition(min(max($0.y, yMin), yMax))))" }.joined(separator: " ")
                    svg.append(#"<polyline fill="none" stroke="\#(series.color)" stroke-width="\#(format(series.width))"\#(series.dashed ? #" stroke-dasharray="6 4""# : "") points="\#(path)"/>"#)
                }
                let legendY = panelTop + 14 + Double(number) * 18
                let legendX = left + plotWidth + 14
                svg.append(#"<line x1="\#(format(legendX))" y1="\#(format(legendY - 4))" x2="\#(format(legendX + 22))" y2="\#(format(legendY - 4))" stroke="\#(series.color)" stroke-width="2"\#(series.dashed ? #" stroke-dasharray="6 4""# : "")/>"#)
                svg.append(#"<text x="\#(format(legendX + 28))" y="\#(format(legendY))">\#(escape(series.name))</text>"#)
            }
            if index == panels.count - 1 {
                svg.append(#"<text x="\#(format(left + plotWidth / 2))" y="\#(format(panelTop + panelHeight + 38))" text-anchor="middle">\#(escape(xLabel))</text>"#)
            }
        }
        svg.append("</svg>")
        return svg.joined(separator: "\n") + "\n"
    }

    /// About five round tick values (1, 2 or 5 times a power of ten) covering low...high.
    public static func ticks(_ low: Double, _ high: Double, target: Int = 5) -> [Double] {
        guard low.isFinite, high.isFinite, high > low else { return [low] }
        let raw = (high - low) / Double(target)
        let magnitude = pow(10, (log10(raw)).rounded(.down))
        let step = [1.0, 2, 5, 10].map { $0 * magnitude }.first { $0 >= raw } ?? 10 * magnitude
        let start = (low / step).rounded(.down) * step
        var values: [Double] = []
        var value = start
        while value < high + step * 0.5 && values.count < 50 {
            values.append(abs(value) < step * 1e-9 ? 0 : value)
            value += step
        }
        return values
    }

    static func label(_ value: Double) -> String {
        if value == value.rounded(), abs(value) < 1e9 { return String(Int(value)) }
        var text = String(format: "%.3f", value)
        while text.hasSuffix("0") { text.removeLast() }
        return text
    }

    static let frameColor = "#444", gridColor = "#e5e5e5", lightGridColor = "#f0f0f0", noteColor = "#888"

    static func format(_ value: Double) -> String { String(format: "%.1f", value) }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
            .replacingOccurrences(of: "\"", with: "&quot;")
    }
}
