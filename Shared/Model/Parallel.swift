import COpenBLAS
import Dispatch
import Synchronization

/// Splits the model's own loops (attention heads, rows, elementwise ops) over the configured thread count, so the
/// cores that OpenBLAS uses for big products are not left idle in between. Runs on Dispatch's global queue, not the
/// Swift cooperative pool.
enum Parallel {
    /// The thread count set through `BLAS.setThreads` (0 until set: then OpenBLAS's own default).
    static let configured = Atomic<Int>(0)
    /// How many regions that need single-threaded BLAS are running (several models may run in different threads).
    private static let singleThreadedRegions = Mutex<Int>(0)

    /// Worker count: the configured thread count.
    @inline(__always) static var workers: Int {
        let n = configured.load(ordering: .relaxed)
        return n > 0 ? n : openBLASDefault
    }

    /// OpenBLAS's own thread count, read once before any region lowers it: reading it live would give 1 inside a
    /// region, so a model computing beside one would split its sums differently (and restore the wrong count).
    static let openBLASDefault = max(1, Int(openblas_get_num_threads()))

    /// Pieces per worker in balanced splits: the machine is shared, so a worker whose core is busy elsewhere
    /// takes fewer pieces instead of holding everyone up.
    static let piecesPerWorker = 4

    /// Most pieces any split makes (for per-piece scratch).
    static var maxPieces: Int { max(1, workers) * piecesPerWorker }

    /// Calls body(piece, range) on contiguous pieces of 0..<n (about `piecesPerWorker` per worker, handed out as
    /// workers become free); serial when one worker or little work. `piece` < maxPieces.
    @inline(__always)
    static func chunks(_ n: Int, minPerWorker: Int = 1, _ body: (_ piece: Int, _ range: Range<Int>) -> Void) {
        let w = min(workers, n / max(minPerWorker, 1))
        if w <= 1 {
            body(0, 0..<n)
            return
        }
        run(min(n, w * piecesPerWorker), n, body)
    }

    /// Like `chunks`, for work that itself calls BLAS: while any such region runs, OpenBLAS is single-threaded
    /// (each worker is one of the threads), and the configured count is restored when the last region ends.
    /// balanced: pieces as in `chunks`; otherwise exactly one piece per worker (decoding, where fewer rows per
    /// product would cost more than imbalance).
    @inline(__always)
    static func chunksCallingBLAS(_ n: Int, balanced: Bool = true, _ body: (_ piece: Int, _ range: Range<Int>) -> Void) {
        let threads = workers
        if threads <= 1 || n < 2 {
            body(0, 0..<n)
            return
        }
        singleThreadedRegions.withLock { depth in
            if depth == 0 { openblas_set_num_threads(1) }
            depth += 1
        }
        defer {
            singleThreadedRegions.withLock { depth in
                depth -= 1
                if depth == 0 { openblas_set_num_threads(Int32(workers)) }
            }
        }
        run(min(n, balanced ? threads * piecesPerWorker : threads), n, body)
    }

    /// The workers only touch disjoint ranges of buffers that outlive the call, which is why the unchecked box is sound.
    private static func run(_ w: Int, _ n: Int, _ body: (Int, Range<Int>) -> Void) {
        withoutActuallyEscaping(body) { escaping in
            let box = UncheckedBox(escaping)
            DispatchQueue.concurrentPerform(iterations: w) { i in
                box.value(i, (i * n / w)..<((i + 1) * n / w))
            }
        }
    }
}

private struct UncheckedBox<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
