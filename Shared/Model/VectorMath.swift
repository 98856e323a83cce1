// Vectorised helpers for the non-BLAS loops: exp, tanh, sums and dot products on SIMD8 lanes.

typealias F8 = SIMD8<Float>

@inline(__always) func load8(_ p: UnsafePointer<Float>) -> F8 {
    UnsafeRawPointer(p).loadUnaligned(as: F8.self)
}

@inline(__always) func store8(_ v: F8, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: F8.self)
}

/// Lane-wise clamp written with selects, which lower to min/max instructions (the generic SIMD clamp does not inline).
@inline(__always) func clamp8(_ x: F8, _ lo: Float, _ hi: Float) -> F8 {
    var y = x
    y.replace(with: F8(repeating: lo), where: x .< lo)
    y.replace(with: F8(repeating: hi), where: x .> hi)
    return y
}

@inline(__always) func max8(_ a: F8, _ b: F8) -> F8 {
    var y = a
    y.replace(with: b, where: b .> a)
    return y
}

/// exp on eight lanes (Cephes-style: 2^n * polynomial), relative error about 2e-7 for |x| < 87.
@inline(__always) func exp8(_ xIn: F8) -> F8 {
    let x = clamp8(xIn, -87.3, 88.3)
    // n = round(x / ln 2) by the 1.5 * 2^23 trick: the integer lands in the low mantissa bits (no slow conversions)
    let magic: Float = 12_582_912
    let t: F8 = x * 1.44269504088896341 + magic
    let n: F8 = t - magic
    var r: F8 = x - n * 0.693359375
    r = r - n * -2.12194440e-4
    var p = F8(repeating: 1.9875691500e-4)
    p = p * r + 1.3981999507e-3
    p = p * r + 8.3334519073e-3
    p = p * r + 4.1665795894e-2
    p = p * r + 1.6666665459e-1
    p = p * r + 5.0000001201e-1
    let r2: F8 = r * r
    p = p * r2 + r + 1
    let ni = unsafeBitCast(t, to: SIMD8<Int32>.self) &- 0x4B40_0000
    let bits = (ni &+ 127) &<< 23
    return p * unsafeBitCast(bits, to: F8.self)
}

/// tanh on eight lanes through exp; absolute error about 1e-7.
@inline(__always) func tanh8(_ x: F8) -> F8 {
    let xc = clamp8(x, -9, 9)
    let e = exp8(xc + xc)
    return (e - 1) / (e + 1)
}

/// Scalar exp with the same formula as `exp8`, so vector bodies and tails agree.
@inline(__always) func expScalar(_ x: Float) -> Float { exp8(F8(repeating: x))[0] }

@inline(__always) func tanhScalar(_ x: Float) -> Float { tanh8(F8(repeating: x))[0] }

/// sum of p[0..<n].
@inline(__always) func vsum(_ p: UnsafePointer<Float>, _ n: Int) -> Float {
    var acc = F8(), i = 0
    while i + 8 <= n { acc += load8(p + i); i += 8 }
    var s = acc.sum()
    while i < n { s += p[i]; i += 1 }
    return s
}

/// dot(a, b) over n elements.
@inline(__always) func vdot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
    var acc = F8(), i = 0
    while i + 8 <= n { acc += load8(a + i) * load8(b + i); i += 8 }
    var s = acc.sum()
    while i < n { s += a[i] * b[i]; i += 1 }
    return s
}

/// max of p[0..<n] (n >= 1).
@inline(__always) func vmax(_ p: UnsafePointer<Float>, _ n: Int) -> Float {
    var acc = F8(repeating: -.infinity), i = 0
    while i + 8 <= n { acc = max8(acc, load8(p + i)); i += 8 }
    var m = acc.max()
    while i < n { m = max(m, p[i]); i += 1 }
    return m
}

/// p[i] = exp(p[i] - shift) in place; returns the sum of the results.
@inline(__always) func vexpShiftSum(_ p: UnsafeMutablePointer<Float>, _ n: Int, shift: Float) -> Float {
    var acc = F8(), i = 0
    let s8 = F8(repeating: shift)
    while i + 8 <= n {
        let e = exp8(load8(p + i) - s8)
        store8(e, p + i); acc += e; i += 8
    }
    var s = acc.sum()
    while i < n { let e = expScalar(p[i] - shift); p[i] = e; s += e; i += 1 }
    return s
}

/// p[i] *= a over n elements.
@inline(__always) func vscale(_ p: UnsafeMutablePointer<Float>, _ n: Int, _ a: Float) {
    var i = 0
    while i + 8 <= n { store8(load8(p + i) * a, p + i); i += 8 }
    while i < n { p[i] *= a; i += 1 }
}

/// y[i] += x[i] over n elements.
@inline(__always) func vadd(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ n: Int) {
    var i = 0
    while i + 8 <= n { store8(load8(y + i) + load8(x + i), y + i); i += 8 }
    while i < n { y[i] += x[i]; i += 1 }
}
