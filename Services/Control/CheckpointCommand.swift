import ArgumentParser
import Foundation
import Model
import Checkpoints
import Config
import Runtime
import Signing
import Wire

struct CheckpointCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "checkpoint", abstract: "List the run's checkpoint versions in Redis, or export one as a safetensors file.",
        subcommands: [List.self, Export.self, Keygen.self])

    struct Keygen: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make the broadcaster's Ed25519 key pair: DIR/broadcaster.key (secret, mode 0600) and DIR/broadcaster.pub.",
            discussion: "Give the broadcaster --broadcaster.signing_key_file DIR/broadcaster.key and every rollout worker --rollout.checkpoint_public_key with the text of DIR/broadcaster.pub. Refuses to overwrite an existing key.")

        @Argument(help: "Directory for the two files.") var directory: String

        func run() throws {
            let secretPath = URL(fileURLWithPath: directory).appendingPathComponent("broadcaster.key").path
            let publicPath = URL(fileURLWithPath: directory).appendingPathComponent("broadcaster.pub").path
            guard !FileManager.default.fileExists(atPath: secretPath) else { throw ControlError("\(secretPath) exists; not overwriting a key") }
            let key = try SigningKey.generate()
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            guard FileManager.default.createFile(atPath: secretPath, contents: Data((key.hex + "\n").utf8), attributes: [.posixPermissions: 0o600]) else {
                throw ControlError("cannot write \(secretPath)")
            }
            try Data((key.publicKey.hex + "\n").utf8).write(to: URL(fileURLWithPath: publicPath))
            print("secret key: \(secretPath) (broadcaster.signing_key_file)")
            print("public key: \(key.publicKey.hex) (rollout.checkpoint_public_key, also in \(publicPath))")
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Versions with a manifest: size, shards, compression, time; the announced latest is marked.")
        @OptionGroup var options: ControlOptions
        @Flag(help: "Print JSON instead of text.") var json = false

        func run() async throws {
            try await withSession(options, amqp: false) { session in
                let store = CheckpointStore(names: session.names, redis: session.checkpointRedis)
                let latest = try await store.latest()
                var manifests: [CheckpointManifest] = []
                for version in try await store.versions() {
                    // A version can be deleted between the scan and the read.
                    if let manifest = try? await store.manifest(version: version) { manifests.append(manifest) }
                }
                if json {
                    print(try Output.json(["run": session.names.run, "latest": latest.map { $0 as Any } ?? NSNull(),
                                           "versions": manifests.map { manifest -> [String: Any] in
                                               ["version": manifest.version, "bytes": manifest.totalBytes, "shards": manifest.shards.count,
                                                "compressed_bytes": manifest.shards.reduce(0) { $0 + $1.compressedBytes },
                                                "sha256": manifest.sha256, "created_at_ms": manifest.createdAtUnixMs]
                                           }]))
                    return
                }
                guard !manifests.isEmpty else {
                    print("run \(session.names.run): no checkpoints in Redis" + (latest.map { " (latest points at \($0), which is gone)" } ?? ""))
                    return
                }
                let formatter = DateFormatter()
                formatter.dateFormat = "yyyy-MM-dd HH:mm:ss"
                let rows = manifests.map { manifest -> [String] in
                    let compressed = manifest.shards.reduce(UInt64(0)) { $0 + $1.compressedBytes }
                    return [String(manifest.version) + (manifest.version == latest ? " *" : ""), Output.bytes(manifest.totalBytes),
                            "\(manifest.shards.count)", "\(Output.bytes(compressed)) \(manifest.compression)",
                            formatter.string(from: Date(timeIntervalSince1970: Double(manifest.createdAtUnixMs) / 1000)),
                            String(manifest.sha256.prefix(16))]
                }
                print("run \(session.names.run): \(manifests.count) checkpoints (* = announced latest)")
                print(Output.table(["VERSION", "SIZE", "SHARDS", "STORED", "CREATED", "SHA-256"], rows))
            }
        }
    }

    struct Export: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write a checkpoint version for Hugging Face: a model directory (config.json and model.safetensors), or one safetensors file with config.json beside it.",
            discussion: """
                Every shard is verified against the manifest's SHA-256 before anything is written. A PATH ending in \
                .safetensors gets the verified float32 bytes as they are; any other PATH is a directory that \
                transformers' AutoModelForCausalLM.from_pretrained opens, in --dtype.
                """)
        @OptionGroup var options: ControlOptions
        @Argument(help: ArgumentHelp("Version number, or latest.", valueName: "version")) var version: String
        @Argument(help: ArgumentHelp("Output: a directory, or a file ending in .safetensors.", valueName: "path")) var file: String
        @Option(help: "Weights' dtype in a directory export: float32, bfloat16 or float16.") var dtype = "float32"
        @Flag(help: "Do not write config.json beside a .safetensors file.") var noConfig = false

        func validate() throws {
            guard version == "latest" || UInt64(version) != nil else { throw ValidationError("VERSION must be a number or latest") }
            guard SafetensorsDType(torchName: dtype) != nil else { throw ValidationError("--dtype must be float32, bfloat16 or float16, not \(dtype)") }
        }

        func run() async throws {
            try await withSession(options, amqp: false) { session in
                let store = CheckpointStore(names: session.names, redis: session.checkpointRedis)
                let chosen: UInt64
                if version == "latest" {
                    guard let latest = try await store.latest() else { throw ControlError("run \(session.names.run) has no announced checkpoint") }
                    chosen = latest
                } else {
                    chosen = UInt64(version)!
                }
                let checkpoint: (bytes: [UInt8], manifest: CheckpointManifest)
                do { checkpoint = try await store.read(version: chosen) } catch {
                    throw ControlError("cannot export version \(chosen) of run \(session.names.run): \(error)")
                }
                let url = URL(fileURLWithPath: file)
                let model: any Policy
                do { model = try Policies.fromSafetensors(checkpoint.bytes) } catch {
                    throw ControlError("version \(chosen) of run \(session.names.run) is not a model this build reads: \(error)")
                }
                let verified = "version \(chosen), sha256 \(checkpoint.manifest.sha256) (verified)"
                guard file.hasSuffix(".safetensors") else {
                    do { try model.saveHuggingFace(to: url, dtype: SafetensorsDType(torchName: dtype)!) } catch {
                        throw ControlError("cannot write \(file): \(error)")
                    }
                    print("wrote \(file)/: \(model.architecture) in \(dtype), \(verified)")
                    return
                }
                do { try Data(checkpoint.bytes).write(to: url, options: .atomic) } catch {
                    throw ControlError("cannot write \(file): \(error.localizedDescription)")
                }
                print("wrote \(file): \(Output.bytes(UInt64(checkpoint.bytes.count))), \(verified)")
                if !noConfig {
                    let configURL = url.deletingLastPathComponent().appendingPathComponent(HuggingFaceCheckpoint.configFile)
                    try model.huggingFaceConfigJSON(dtype: .float32).write(to: configURL, options: .atomic)
                    print("wrote \(configURL.path)")
                }
            }
        }
    }
}
