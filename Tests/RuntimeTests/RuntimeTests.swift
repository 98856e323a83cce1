import Config
import Messaging
import Runtime
import Synchronization
import Testing

/// The runtime's pieces that need no broker: how a stop reaches the work in hand, and the run-state record.
@Suite("Runtime")
struct RuntimeTests {
    @Test func connectingRetriesWhatTheLearnerWillFixAndNothingElse() {
        // the run's queues not declared yet (the learner is coming up), or no broker yet: retried
        #expect(!Fabric.isPermanent(AMQPError.declarationFailed(what: "queue 'tributary.r.tasks' passively", code: 404, text: "NOT_FOUND")))
        #expect(!Fabric.isPermanent(AMQPError.connectionRefused(host: "127.0.0.1", port: 5672)))
        // refused by permissions, a conflicting declaration, a wrong password: final
        #expect(Fabric.isPermanent(AMQPError.declarationFailed(what: "queue 'tributary.r.tasks'", code: 403, text: "ACCESS_REFUSED")))
        #expect(Fabric.isPermanent(AMQPError.declarationFailed(what: "queue 'tributary.r.tasks'", code: 406, text: "PRECONDITION_FAILED")))
        #expect(Fabric.isPermanent(AMQPError.authenticationRefused(user: "rollout", vhost: "tributary", reason: "403")))
    }

    @Test func aPerRunUserNamesItsRun() {
        #expect(RunUser.run(ofUser: "r-7.rollout") == "r-7")
        #expect(RunUser.run(ofUser: "r_7.control") == "r_7")
        for shared in ["rollout", "learner", "admin", "guest", "r7.learner", ".rollout", "a.b.rollout"] {
            #expect(RunUser.run(ofUser: shared) == nil, "\(shared)")
        }
    }

    @Test func workInHandFinishesWhenNothingAsksForItBack() async throws {
        let stop = StopRequest()
        let handedBack = Atomic<Int>(0)
        let finished = try await stop.holding({ try await Task.sleep(for: .milliseconds(20)) }, handBack: { handedBack.add(1, ordering: .relaxed) })
        #expect(finished && handedBack.load(ordering: .relaxed) == 0)
    }

    @Test(.timeLimit(.minutes(1)))
    func aHandBackReachesTheWorkInHandAtOnceAndCancelsIt() async throws {
        let stop = StopRequest()
        let handedBack = Atomic<Int>(0)
        let sawCancellation = Atomic<Bool>(false)
        // an hour of work: only the hand-back's cancellation ends it within the test's time limit
        async let outcome = stop.holding({
            do { try await Task.sleep(for: .seconds(3600)) } catch { sawCancellation.store(true, ordering: .relaxed); throw error }
        }, handBack: { handedBack.add(1, ordering: .relaxed) })
        try await Task.sleep(for: .milliseconds(50))
        await stop.handBack("test")
        let finished = try await outcome
        #expect(!finished && handedBack.load(ordering: .relaxed) == 1 && sawCancellation.load(ordering: .relaxed))
        #expect(stop.mode == .handingBack && stop.isStopping && stop.reason == "test")
    }

    @Test func drainLetsTheWorkInHandFinish() async throws {
        let stop = StopRequest()
        async let outcome = stop.holding({ try await Task.sleep(for: .milliseconds(100)) }, handBack: {})
        await stop.drain("test")
        #expect(try await outcome)
        #expect(stop.mode == .draining && !stop.isHandingBack)
        // a later shutdown still wins over a drain, once
        await stop.handBack("later")
        #expect(stop.mode == .handingBack && stop.reason == "later")
    }

    @Test func runStateRoundTripsThroughItsHashAndWritesOnlyWhatIsSet() {
        let state = RunState(status: .failed, step: 3, version: 3, reason: "model.path missing", accuracyBefore: 0.25, other: ["eos_token": "257"])
        #expect(RunState(hash: state.hash) == state)
        #expect(RunState(status: .running).hash == ["status": "running"])
        #expect(RunState(hash: ["status": "exploded"]).status == nil)
    }

    @Test func everyProcessSettingIsKnownToTheCatalog() {
        #expect(Set(Fabric.settings.map(\.key)) == SettingsCatalog.processKeys)
    }

    @Test func stepMetricsOfADivergedStepStillRoundTrip() {
        let diverged = StepMetrics(step: 4, version: 4, loss: .nan, gradNorm: .infinity, learningRate: 0.001)
        let fields = diverged.streamFields
        #expect(fields["loss"] == "nan" && fields["grad_norm"] == "inf")
        let read = StepMetrics(fields: fields)
        #expect(read?.loss.isNaN == true && read?.gradNorm == .infinity && read?.step == 4)
    }

    @Test func onlyStartingRunningAndPausedAreActive() {
        #expect(RunStatus.allCases.filter(\.isActive) == [.starting, .running, .paused])
        #expect(RunStatus.allCases.filter(\.isFinal) == [.finished, .stopped, .failed])
        #expect(!RunStatus.lost.isActive && !RunStatus.lost.isFinal)
    }
}
