/// A growable float buffer, 64-byte aligned; contents are not kept when it grows.
final class FloatBuffer {
    private(set) var pointer: UnsafeMutablePointer<Float>
    private(set) var capacity: Int

    init(capacity: Int = 0) {
        self.capacity = capacity
        pointer = FloatBuffer.allocate(capacity)
    }

    private static func allocate(_ n: Int) -> UnsafeMutablePointer<Float> {
        UnsafeMutableRawPointer.allocate(byteCount: max(n, 1) * 4, alignment: 64).bindMemory(to: Float.self, capacity: max(n, 1))
    }

    /// Ensures room for n floats.
    func reserve(_ n: Int) {
        guard n > capacity else { return }
        pointer.deallocate()
        pointer = FloatBuffer.allocate(n)
        capacity = n
    }

    deinit { pointer.deallocate() }
}
