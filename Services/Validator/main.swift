import Config
import Foundation
import Runtime

// tributary-validator: re-runs a share of the scored groups through the policy version they claim and lets through to
// the learner only those that pass (or were not drawn); failures count against the worker's key, up to a ban.
exit(await ServiceProcess.main(Validator.self, name: "validator", abstract: "Validator: checks that workers ran the claimed policy on the claimed prompt.",
                               specs: SettingsCatalog.validator, throughputUnit: "groups/s"))
