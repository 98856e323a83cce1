// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "Tributary",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "tributary-rollout", targets: ["Rollout"]),
        .executable(name: "tributary-reward", targets: ["Reward"]),
        .executable(name: "tributary-learner", targets: ["Learner"]),
        .executable(name: "tributary-broadcaster", targets: ["Broadcaster"]),
        .executable(name: "tributary-validator", targets: ["Validator"]),
        .executable(name: "tributary", targets: ["Control"]),
        .executable(name: "tributary-bench", targets: ["Bench"]),
        .executable(name: "tributary-model-probe", targets: ["ModelProbe"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        // C at the edge: one system-library target per C library, wrapped by one Swift module each.
        .systemLibrary(name: "CRabbitMQ", path: "Shared/CRabbitMQ"),
        .target(name: "CAMQPLogin", path: "Shared/CAMQPLogin", linkerSettings: [.linkedLibrary("rabbitmq")]),
        .systemLibrary(name: "CHiredis", path: "Shared/CHiredis"),
        .systemLibrary(name: "CZstd", path: "Shared/CZstd"),
        .systemLibrary(name: "COpenBLAS", path: "Shared/COpenBLAS"),
        .systemLibrary(name: "CSodium", path: "Shared/CSodium"),

        .target(name: "Messaging", dependencies: ["CRabbitMQ", "CAMQPLogin", .product(name: "Logging", package: "swift-log")], path: "Shared/Messaging"),
        .target(name: "Store", dependencies: ["CHiredis"], path: "Shared/Store"),
        .target(name: "Compression", dependencies: ["CZstd"], path: "Shared/Compression"),
        .target(name: "Wire", dependencies: [.product(name: "SwiftProtobuf", package: "swift-protobuf")], path: "Shared/Wire", exclude: ["Protos"]),
        .target(name: "Model", dependencies: ["COpenBLAS", "Tokenizers"], path: "Shared/Model"),
        .target(name: "RL", dependencies: ["Model", "Tokenizers"], path: "Shared/RL"),
        .target(name: "Tokenizers", path: "Shared/Tokenizers"),
        // the config system: TOML run files, layered settings, the run's learning knobs
        .target(name: "Config", dependencies: ["Model", "RL", "Tokenizers"], path: "Shared/Config"),
        // checkpoints in Redis: sharded, compressed, hashed, verified
        // Ed25519 keys and signatures (libsodium): checkpoint manifests today, worker groups next
        .target(name: "Signing", dependencies: ["CSodium"], path: "Shared/Signing"),
        .target(name: "Checkpoints", dependencies: ["Store", "Compression", "Wire", "Signing"], path: "Shared/Checkpoints"),
        // what every service process shares: lifecycle, connections (Fabric), names, heartbeats, metrics, the run's contracts
        .target(
            name: "Runtime",
            dependencies: [
                "Messaging", "Store", "Wire", "Config", "Checkpoints", "Signing", "Model", "RL", "Tokenizers",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            path: "Shared/Runtime"),

        .executableTarget(name: "Rollout", dependencies: ["Runtime", "Config", "Checkpoints", "Signing", "Messaging", "Store", "Compression", "Wire", "Model", "RL", .product(name: "Logging", package: "swift-log"), .product(name: "ServiceLifecycle", package: "swift-service-lifecycle")], path: "Services/Rollout"),
        .executableTarget(name: "Reward", dependencies: ["Runtime", "Config", "Checkpoints", "Signing", "Messaging", "Store", "Compression", "Wire", "Model", "RL", .product(name: "Logging", package: "swift-log"), .product(name: "ServiceLifecycle", package: "swift-service-lifecycle")], path: "Services/Reward"),
        .executableTarget(name: "Learner", dependencies: ["Runtime", "Config", "Checkpoints", "Signing", "Messaging", "Store", "Compression", "Wire", "Model", "RL", .product(name: "Logging", package: "swift-log"), .product(name: "ServiceLifecycle", package: "swift-service-lifecycle")], path: "Services/Learner"),
        .executableTarget(name: "Broadcaster", dependencies: ["Runtime", "Config", "Checkpoints", "Signing", "Messaging", "Store", "Compression", "Wire", "Model", "RL", .product(name: "Logging", package: "swift-log"), .product(name: "ServiceLifecycle", package: "swift-service-lifecycle")], path: "Services/Broadcaster"),
        .executableTarget(name: "Validator", dependencies: ["Runtime", "Config", "Checkpoints", "Signing", "Messaging", "Store", "Compression", "Wire", "Model", "RL", .product(name: "Logging", package: "swift-log"), .product(name: "ServiceLifecycle", package: "swift-service-lifecycle")], path: "Services/Validator"),
        .executableTarget(name: "Control", dependencies: ["Runtime", "Config", "Checkpoints", "Signing", "Messaging", "Store", "Wire", "Model", "RL", .product(name: "ArgumentParser", package: "swift-argument-parser")], path: "Services/Control"),
        .executableTarget(
            name: "Bench",
            dependencies: ["Messaging", "Store", "Compression", "Model", "RL", "Runtime", "Config", "Checkpoints", "Tokenizers", "TestSupport", "Adversary", "Chaos", "Signing", "ModelAgreement", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Benchmarks/Bench"),

        .target(name: "TestSupport", path: "Tests/TestSupport"),
        // a lying rollout worker and a hostile relay: the adversary suite's and `tributary-bench adversary`'s attacks
        .target(name: "Adversary", dependencies: ["Runtime", "Checkpoints", "Signing", "Messaging", "Store", "Compression", "Wire", "RL", "TestSupport",
                                                  .product(name: "Logging", package: "swift-log")], path: "Tests/Adversary"),
        // the fault table's harness: runs under faults, its own brokers, a supervised fleet, the accounting of every task
        .target(name: "Chaos", dependencies: ["Runtime", "Config", "Checkpoints", "Messaging", "Store", "Wire", "TestSupport",
                                              .product(name: "Logging", package: "swift-log")], path: "Tests/Chaos"),
        // the model's results for fixed inputs, and how two computations of them are compared (to rounding)
        .target(name: "ModelAgreement", dependencies: ["Model"], path: "Tests/ModelAgreement"),
        .executableTarget(name: "ModelProbe", dependencies: ["Model", "ModelAgreement"], path: "Tests/ModelProbe"),
        .testTarget(name: "MessagingTests", dependencies: ["Messaging", "TestSupport"], path: "Tests/MessagingTests"),
        .testTarget(name: "StoreTests", dependencies: ["Store"], path: "Tests/StoreTests"),
        .testTarget(name: "TokenizersTests", dependencies: ["Tokenizers"], path: "Tests/TokenizersTests"),
        .testTarget(name: "CompressionTests", dependencies: ["Compression"], path: "Tests/CompressionTests"),
        .testTarget(name: "WireTests", dependencies: ["Wire"], path: "Tests/WireTests"),
        .testTarget(name: "ModelTests", dependencies: ["Model", "ModelAgreement", "TestSupport"], path: "Tests/ModelTests"),
        .testTarget(name: "RLTests", dependencies: ["RL", "Model", "ModelAgreement"], path: "Tests/RLTests"),
        .testTarget(name: "ConfigTests", dependencies: ["Config"], path: "Tests/ConfigTests"),
        .testTarget(name: "RuntimeTests", dependencies: ["Runtime", "Messaging"], path: "Tests/RuntimeTests"),
        .testTarget(name: "CheckpointsTests", dependencies: ["Checkpoints", "Signing", "Store", "Compression", "Wire", "TestSupport"], path: "Tests/CheckpointsTests"),
        // single roles run in process against the real brokers
        .testTarget(name: "RoleTests", dependencies: ["Runtime", "Config", "Checkpoints", "Signing", "Messaging", "Store", "Wire", "Model", "RL", "TestSupport", "Learner", "Rollout", "Reward", "Broadcaster", "Validator"], path: "Tests/RoleTests"),
        .testTarget(name: "ControlTests", dependencies: ["Control", "Runtime", "Config", "Messaging", "Store", "TestSupport"], path: "Tests/ControlTests"),
        .testTarget(name: "EndToEndTests", dependencies: ["Runtime", "Config", "Checkpoints", "Signing", "Messaging", "Store", "Model", "Tokenizers", "TestSupport", "Adversary", "Chaos", "ModelAgreement", .product(name: "Logging", package: "swift-log")], path: "Tests/EndToEndTests"),
    ]
)
