import COpenBLAS
import Foundation

/// The OpenBLAS settings Tributary uses; the thread count is set on purpose, never left to the environment.
public enum BLAS {
    /// Sets the number of threads for OpenBLAS and for the model's own loops (process-wide). Set it once at start,
    /// not while a model is computing: buffers sized for the workers are allocated per pass.
    public static func setThreads(_ n: Int) {
        let n = max(1, n)
        Parallel.configured.store(n, ordering: .relaxed)
        openblas_set_num_threads(Int32(n))
    }

    /// The thread count in use (set by `setThreads`, else OpenBLAS's default).
    public static var threads: Int { Parallel.workers }

    /// The kernel set OpenBLAS chose at load time (e.g. "SkylakeX", or "Prescott" when it did not recognise the CPU).
    public static var coreName: String {
        guard let c = openblas_get_corename() else { return "unknown" }
        return String(cString: c)
    }

    /// The `OPENBLAS_CORETYPE` to set when OpenBLAS fell back to generic SSE3 kernels on a CPU it did not recognise
    /// (0.3.21 does not know e.g. Emerald Rapids, and loses ~5x on sgemm); nil when the choice is fine or was forced.
    /// It is read when the library loads, so it must be in the environment before the process starts.
    public static var suggestedCoreType: String? {
        guard ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] == nil, coreName.lowercased() == "prescott",
              let cpuinfo = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
              let flagsLine = cpuinfo.split(separator: "\n").first(where: { $0.hasPrefix("flags") })
        else { return nil }
        let flags = Set(flagsLine.split(separator: " ").map(String.init))
        if flags.contains("avx512f") && flags.contains("avx512bw") && flags.contains("avx512vl") { return "SkylakeX" }
        if flags.contains("avx2") && flags.contains("fma") { return "Haswell" }
        return nil
    }

    /// For an executable's first line: if OpenBLAS fell back to generic kernels (see `suggestedCoreType`), re-executes
    /// the process with `OPENBLAS_CORETYPE` set, keeping its arguments and environment; otherwise returns.
    public static func relaunchWithNativeKernelsIfNeeded() {
        guard let core = suggestedCoreType else { return }
        setenv("OPENBLAS_CORETYPE", core, 1)
        // the resolved path, so the process keeps its name (exec of /proc/self/exe would rename it "exe")
        let path = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? "/proc/self/exe"
        let args = CommandLine.arguments.map { strdup($0) } + [nil]
        execv(path, args)
        // exec failed: carry on with the generic kernels
    }

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

extension BLAS {
    /// c (m,n) = a (m,k) @ b (k,n), row-major; for measuring the machine's sgemm peak.
    public static func sgemm(m: Int, n: Int, k: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>, c: UnsafeMutablePointer<Float>) {
        Model.sgemm(transA: false, transB: false, m: m, n: n, k: k, a: a, lda: k, b: b, ldb: n, beta: 0, c: c, ldc: n)
    }
}
