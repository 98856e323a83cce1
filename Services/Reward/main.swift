import Config
import Foundation
import Runtime

// tributary-reward: a reward scorer. Runs the task's verifier on every completion, shapes the rewards,
// normalises advantages within the group, counts groups with no signal, publishes scored groups.
exit(await ServiceProcess.main(RewardScorer.self, name: "reward", abstract: "Reward scorer: verifies completions, computes group advantages.",
                               specs: SettingsCatalog.reward, throughputUnit: "groups/s"))
