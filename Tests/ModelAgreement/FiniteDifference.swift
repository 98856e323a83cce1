import Model

extension Policy {
    /// d loss / d parameter i by central differences (eps either side), the parameter restored afterwards: the model
    /// gradient checks' one reference.
    public func centralDifference(parameter i: Int, eps: Float = 1e-2, loss: () -> Double) -> Float {
        let saved = withParameters { p, _ in p[i] }
        withParameters { p, _ in p[i] = saved + eps }
        let plus = loss()
        withParameters { p, _ in p[i] = saved - eps }
        let minus = loss()
        withParameters { p, _ in p[i] = saved }
        return Float((plus - minus) / Double(2 * eps))
    }
}
