/// The Redis keys of one run's checkpoints (DESIGN.md): `tributary:RUN:ckpt:VERSION:manifest`, `…:shard:I`, `…:ckpt:latest`.
public struct CheckpointKeys: Sendable, Equatable {
    public let run: String
    /// `tributary:RUN`
    public let prefix: String

    public init(run: String, prefix: String) {
        self.run = run
        self.prefix = prefix
    }

    public var latest: String { "\(prefix):ckpt:latest" }
    public func manifest(version: UInt64) -> String { "\(prefix):ckpt:\(version):manifest" }
    /// The broadcaster's Ed25519 signature of the manifest's exact bytes.
    public func manifestSignature(version: UInt64) -> String { "\(prefix):ckpt:\(version):manifest-signature" }
    public func shard(version: UInt64, index: Int) -> String { "\(prefix):ckpt:\(version):shard:\(index)" }
    /// A policy the learner saved, waiting for the broadcaster.
    public func staging(version: UInt64) -> String { "\(prefix):staging:\(version)" }
    public var manifestPattern: String { "\(prefix):ckpt:*:manifest" }
}
