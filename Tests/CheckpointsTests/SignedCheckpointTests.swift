import Checkpoints
import Foundation
import Signing
import Store
import Testing
import Wire

/// Manifests signed by the broadcaster's key and checked by readers, against the real Redis; and the bounds a manifest's
/// claims must keep before anything is fetched.
@Suite("Signed checkpoints", .serialized)
struct SignedCheckpointTests {
    func withStore(_ body: (CheckpointKeys, RedisClient) async throws -> Void) async throws {
        let run = "signed-\(UUID().uuidString.prefix(8).lowercased())"
        let keys = CheckpointKeys(run: run, prefix: "tributary:\(run)")
        let redis = RedisClient(endpoint: try RedisEndpoint.fromEnvironment())
        try await redis.connect()
        defer { redis.close() }
        do { try await body(keys, redis) } catch {
            if let all = try? await redis.scanKeys(matching: "\(keys.prefix):*"), !all.isEmpty { _ = try? await redis.del(all) }
            throw error
        }
        if let all = try? await redis.scanKeys(matching: "\(keys.prefix):*"), !all.isEmpty { _ = try? await redis.del(all) }
    }

    let weights = (0..<20_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }

    @Test func keysRoundTripThroughHexAndOnlyTheRightKeyVerifies() throws {
        let key = try SigningKey.generate()
        let again = try SigningKey(hex: key.hex)
        #expect(again.publicKey == key.publicKey)
        let signature = key.sign(Array("manifest".utf8))
        #expect(try VerifyingKey(hex: key.publicKey.hex).isValid(signature: signature, of: Array("manifest".utf8)))
        #expect(!key.publicKey.isValid(signature: signature, of: Array("manifesT".utf8)))
        #expect(!(try SigningKey.generate()).publicKey.isValid(signature: signature, of: Array("manifest".utf8)))
        #expect(throws: SigningError.self) { try VerifyingKey(hex: "abcd") }
        #expect(throws: SigningError.self) { try SigningKey(hex: String(repeating: "z", count: 128)) }
    }

    @Test func aSignedVersionVerifiesAndASwappedManifestDoesNot() async throws {
        try await withStore { keys, redis in
            let key = try SigningKey.generate()
            let broadcaster = CheckpointStore(keys: keys, redis: redis, signer: key)
            let worker = CheckpointStore(keys: keys, redis: redis, verifier: key.publicKey)
            _ = try await broadcaster.write(version: 1, safetensors: weights, shardBytes: 4096)
            #expect(try await worker.read(version: 1).bytes == weights)

            // a relay (or anyone with write access to it) writes its own consistent version under the same number
            let forger = CheckpointStore(keys: keys, redis: redis, signer: try SigningKey.generate())
            _ = try await forger.write(version: 1, safetensors: weights.map { $0 ^ 1 }, shardBytes: 4096)
            await #expect(throws: CheckpointStoreError.self) { _ = try await worker.read(version: 1) }
            // and without any signature at all
            _ = try await CheckpointStore(keys: keys, redis: redis).write(version: 2, safetensors: weights, shardBytes: 4096)
            do {
                _ = try await worker.read(version: 2)
                Issue.record("an unsigned manifest was accepted")
            } catch let error as CheckpointStoreError {
                #expect("\(error)".contains("no signature"))
            }
        }
    }

    @Test func aManifestsClaimsAreBoundedBeforeAnythingIsFetched() async throws {
        try await withStore { keys, redis in
            let store = CheckpointStore(keys: keys, redis: redis)
            let honest = try await store.write(version: 3, safetensors: weights, shardBytes: 4096)
            func forged(_ change: (inout CheckpointManifest) -> Void) async throws -> String {
                var manifest = honest
                change(&manifest)
                _ = try await redis.command(["SET", keys.manifest(version: 3), try manifest.serializedBytes() as [UInt8]])
                do {
                    _ = try await store.read(version: 3)
                    return "accepted"
                } catch let error as CheckpointStoreError {
                    return "\(error)"
                }
            }
            #expect(try await forged { $0.totalBytes = UInt64.max }.contains("total_bytes"))
            #expect(try await forged { $0.shards[0].rawBytes = 1 << 40 }.contains("do not add up"))
            #expect(try await forged { $0.runID = "other" }.contains("not '\(keys.run)'"))
            #expect(try await forged { $0.version = 4 }.contains("version 4"))
            #expect(try await forged { $0.shards[1].key = keys.shard(version: 1, index: 0) }.contains("in order"))
            #expect(try await forged { _ in } == "accepted")
        }
    }
}
