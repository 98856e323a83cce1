/// A one-line chart of a series (`▁▂▃▄▅▆▇█`), for `tributary watch`.
public enum Sparkline {
    public static let levels: [Character] = ["▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"]

    /// At most `width` characters: longer series are averaged into `width` buckets, oldest first.
    /// `range` fixes the scale (e.g. 0...1 for accuracy); otherwise the series' own minimum and maximum.
    /// Non-finite values show as a space; a flat series sits on the lowest level.
    public static func render(_ values: [Double], width: Int = 60, range: ClosedRange<Double>? = nil) -> String {
        let series = resample(values, width: max(1, width))
        let finite = series.filter(\.isFinite)
        guard let low = range?.lowerBound ?? finite.min(), let high = range?.upperBound ?? finite.max() else {
            return String(repeating: " ", count: series.count)
        }
        let span = high - low
        return String(series.map { value -> Character in
            guard value.isFinite else { return " " }
            guard span > 0 else { return levels[0] }
            let position = (min(max(value, low), high) - low) / span
            return levels[min(levels.count - 1, Int((position * Double(levels.count)).rounded(.down)))]
        })
    }

    /// Averages `values` into at most `width` equal buckets (non-finite values are skipped within a bucket).
    public static func resample(_ values: [Double], width: Int) -> [Double] {
        guard values.count > width else { return values }
        return (0..<width).map { bucket in
            let start = bucket * values.count / width
            let end = max(start + 1, (bucket + 1) * values.count / width)
            let finite = values[start..<end].filter(\.isFinite)
            return finite.isEmpty ? .nan : finite.reduce(0, +) / Double(finite.count)
        }
    }
}
