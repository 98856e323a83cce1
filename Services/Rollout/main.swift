import Config
import Foundation
import Runtime

// tributary-rollout: an inference worker. Takes a task, makes sure it holds a policy fresh enough for it
// (fetching and verifying the announced checkpoint), generates G completions with per-token log-probs,
// publishes the group. Any number of workers can join or leave during a run.
exit(await ServiceProcess.main(RolloutWorker.self, name: "rollout", abstract: "Inference worker: generates rollout groups with a fresh enough policy.",
                               specs: SettingsCatalog.rollout, throughputUnit: "tokens/s"))
