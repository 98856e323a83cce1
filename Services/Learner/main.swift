import Config
import Foundation
import Runtime

// tributary-learner: owns the run. Feeds tasks ahead by the async level, builds each batch from scored groups
// no older than k versions (dropping and counting stale ones), takes the GRPO step, saves the new policy for
// the broadcaster, and acknowledges what it consumed only once the step it fed is durable.
exit(await ServiceProcess.main(LearnerRole.self, name: "learner", abstract: "Trains the policy with GRPO from scored groups; owns the run state.",
                               specs: SettingsCatalog.learner, throughputUnit: "tokens/s",
                               runKeys: Set(RunConfig.settings.map(\.key)).subtracting(["run.id"])))
