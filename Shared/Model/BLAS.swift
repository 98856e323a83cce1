import COpenBLAS

/// The OpenBLAS settings Tributary uses; the thread count is set on purpose, never left to the environment.
public enum BLAS {
    /// Sets the number of threads OpenBLAS uses for every following call (process-wide).
    public static func setThreads(_ n: Int) {
        openblas_set_num_threads(Int32(max(1, n)))
    }

    /// The number of threads OpenBLAS currently uses.
    public static var threads: Int { Int(openblas_get_num_threads()) }

    /// OpenBLAS's build description (core type, threading), for benchmark reports.
    public static var configDescription: String {
        guard let c = openblas_get_config() else { return "unknown" }
        return String(cString: c)
    }
}

// Row-major C (M,N) = alpha * op(A) (M,K) * op(B) (K,N) + beta * C; the one entry point for every matrix product.
@inline(__always)
func sgemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
           alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
           b: UnsafePointer<Float>, ldb: Int,
           beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}
