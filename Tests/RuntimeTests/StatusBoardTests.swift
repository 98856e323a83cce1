import Config
import RL
@testable import Runtime
import Testing

/// What a heartbeat says: a caveat of the process (a weak sandbox) stays in every detail the role writes.
@Suite("StatusBoard")
struct StatusBoardTests {
    @Test func aCaveatOutlivesEveryDetailTheRoleSets() {
        let board = StatusBoard(identity: ServiceIdentity(role: "reward", instance: "reward-1"), throughputUnit: "groups/s")
        board.set(state: "scoring", detail: "task-1")
        #expect(board.current.detail == "task-1")
        let caveat = SandboxPolicy(isolation: .ownUserWithoutNamespaces, allowWeakIsolation: true, missing: "unshare failed").caveat
        #expect(caveat?.hasPrefix("sandbox WEAK (sandbox.allow_weak_isolation)") == true, "\(caveat ?? "nil")")
        board.addCaveat(caveat ?? "")
        board.set(state: "scoring", detail: "task-2")
        #expect(board.current.detail == "task-2; \(caveat ?? "")")
        board.update { $0.state = "waiting for rollouts"; $0.detail = "" }
        #expect(board.current.detail == caveat)
    }

    @Test func theRolesThatRunProgramsTakeTheSandboxSetting() {
        #expect(SettingsCatalog.reward.contains { $0.key == SandboxPolicy.allowWeakIsolationKey && $0.defaultValue == "false" })
        #expect(SettingsCatalog.learner.contains { $0.key == SandboxPolicy.allowWeakIsolationKey && $0.defaultValue == "false" })
        #expect(!SettingsCatalog.rollout.contains { $0.key == SandboxPolicy.allowWeakIsolationKey })
    }
}
