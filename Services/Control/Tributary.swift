import ArgumentParser

// tributary: the control CLI. Commands that change something publish to the control exchange;
// everything else reads run state, metrics, heartbeats and checkpoints from Redis and queue depths from RabbitMQ.
@main
struct Tributary: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tributary",
        abstract: "Steer and watch a Tributary run: start, pause, resume, stop, set, status, watch, plot, eval, checkpoints, dead letters, per-run users.",
        discussion: """
        Every command takes --run (default: TRIBUTARY_RUN_ID, else "default"), --amqp-url (TRIBUTARY_AMQP_URL) and \
        --redis-url (TRIBUTARY_REDIS_URL). Commands that change something publish to the tributary.control exchange.

        Typical session:
          tributary run start --config run.toml
          tributary watch --until-finished
          tributary plot --out run.svg
          tributary eval --version latest
        """,
        subcommands: [RunCommand.self, SetCommand.self, StatusCommand.self, WatchCommand.self, PlotCommand.self, EvalCommand.self,
                      CheckpointCommand.self, WorkersCommand.self, UsersCommand.self, DeadLettersCommand.self, DrainCommand.self, ShutdownCommand.self])
}
