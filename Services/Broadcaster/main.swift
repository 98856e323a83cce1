import Config
import Foundation
import Runtime

// tributary-broadcaster: turns each policy the learner saved into a sharded, compressed, checksummed
// checkpoint in Redis, waits for the relays, announces it, and deletes versions nobody may use any more.
exit(await ServiceProcess.main(CheckpointBroadcaster.self, name: "broadcaster", abstract: "Shards, hashes and announces each saved policy version.",
                               specs: SettingsCatalog.broadcaster, throughputUnit: "checkpoints/s"))
