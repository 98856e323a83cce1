#!/usr/bin/env bash
# Tributary's main job: a local asynchronous RL run on one machine.
#
#   scripts/quickstart.sh [--out DIR] [--config RUN.toml] [--rollouts N] [--rewards N] [--validators N]
#
# Installs what is missing, starts private brokers, builds in release, launches the broadcaster, the learner,
# rollout workers, reward scorers and validators as separate processes, starts the run (warm start, then asynchronous GRPO),
# shows its progress, and ends with held-out accuracy before and after, a plot, the checkpoints, and
# OUT/summary.json. It leaves no process behind.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PATH="/opt/swift/usr/bin:$PATH"

OUT="$ROOT/out/quickstart"
CONFIG="$ROOT/scripts/runs/quickstart.toml"
ROLLOUTS=3
REWARDS=2
VALIDATORS=1
while (($#)); do
    case "$1" in
        --out) OUT="$2"; shift 2 ;;
        --config) CONFIG="$2"; shift 2 ;;
        --rollouts) ROLLOUTS="$2"; shift 2 ;;
        --rewards) REWARDS="$2"; shift 2 ;;
        --validators) VALIDATORS="$2"; shift 2 ;;
        -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
        *) echo "quickstart: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
[[ -f "$CONFIG" ]] || { echo "quickstart: run file '$CONFIG' not found" >&2; exit 2; }
mkdir -p "$OUT/logs" "$OUT/checkpoints"
OUT="$(cd "$OUT" && pwd)"
RUN="$(sed -n 's/^id *= *"\(.*\)".*/\1/p' "$CONFIG" | head -1)"
RUN="${RUN:-default}"
started_at=$(date +%s)

exec 3>&2      # the terminal's stderr: a trap can run inside a command whose output goes elsewhere
started_brokers=0
pids=()        # the services
foreground=""  # the CLI command the script is waiting on (run start, watch, plot, ...)
cleanup() {
    # Ask politely (SIGTERM: drain and exit 0), then make sure.
    local all=("${pids[@]}" ${foreground:+"$foreground"})
    for pid in "${all[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for _ in $(seq 1 100); do
        alive=0
        for pid in "${all[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    for pid in "${all[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if ((started_brokers)); then scripts/brokers.sh stop || true; fi
}
# Ctrl-C or SIGTERM: stop everything started here, then end by that signal (130 or 143 if it cannot be re-raised).
interrupted() {
    trap '' INT TERM  # a second Ctrl-C must not cut the cleanup short
    trap - EXIT
    echo "quickstart: interrupted (SIG$1); stopping what it started" >&3
    cleanup >&3 2>&3
    trap - INT TERM
    kill -s "$1" $$ 2>/dev/null
    exit $((128 + $2))
}
trap cleanup EXIT
trap 'interrupted INT 2' INT
trap 'interrupted TERM 15' TERM

# Runs a CLI command in the background and waits for it. Bash runs a trap only once the foreground command ends, so a
# foreground `tributary watch` would outlive an interrupt; `wait` returns at once and the trap stops the command too.
run() {
    "$@" &
    foreground=$!
    local status=0
    wait "$foreground" || status=$?
    foreground=""
    return "$status"
}

# Brokers and the build run in the foreground: an interrupt sent to this script alone waits for them to end (Ctrl-C
# reaches them directly), then stops everything.
scripts/install-deps.sh
if ! scripts/brokers.sh status >/dev/null 2>&1; then
    started_brokers=1  # before they start: an interrupt mid-start stops whatever came up
    scripts/brokers.sh start
fi

echo "quickstart: building (release)"
swift build -c release 2>&1 | grep -E "error|warning: unre|Compiling|Build" | tail -3
BIN="$ROOT/.build/release"

launch() {
    local role="$1" name="$2"
    shift 2
    TRIBUTARY_RUN_ID="$RUN" TRIBUTARY_BLAS_THREADS=1 "$BIN/tributary-$role" --service.instance "$name" "$@" >"$OUT/logs/$name.log" 2>&1 &
    pids+=($!)
}
REDIS_PORT="${TRIBUTARY_REDIS_PORT:-6389}"

launch broadcaster broadcaster-0
launch learner learner-0
for i in $(seq 0 $((REWARDS - 1))); do launch reward "reward-$i"; done
# validators wait idle unless the run file sets validation.enabled (the quickstart's does, checking 10% of the groups)
for i in $(seq 0 $((VALIDATORS - 1))); do launch validator "validator-$i"; done
for i in $(seq 0 $((ROLLOUTS - 1))); do launch rollout "rollout-$i"; done
echo "quickstart: launched broadcaster, learner, $REWARDS reward scorer(s), $VALIDATORS validator(s), $ROLLOUTS rollout worker(s); logs in $OUT/logs"

CLI="$BIN/tributary"
# The learner needs a moment to connect and listen for control commands. --fresh: a finished earlier quickstart's
# run id starts its next epoch. An interrupted one is resumed by the learner itself (it finds the run in progress).
started=""
for _ in $(seq 1 100); do
    if run "$CLI" run start --run.id "$RUN" --config "$CONFIG" --fresh >"$OUT/logs/run-start.txt" 2>&1; then started="started from $CONFIG"; break; fi
    if grep -q "is already" "$OUT/logs/run-start.txt"; then started="resumed: an interrupted quickstart left it in progress"; break; fi
    sleep 0.3
done
echo "quickstart: run '$RUN' ${started:-not started (see $OUT/logs/learner-0.log)}"
run "$CLI" watch --run.id "$RUN" --until-finished --wait-for-start

run "$CLI" plot --run.id "$RUN" --out "$OUT/reward.svg"
latest="$("$CLI" checkpoint list --run.id "$RUN" --json | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["latest"])')"
run "$CLI" checkpoint export "$latest" "$OUT/checkpoints/policy-v$latest.safetensors" --run.id "$RUN"
before="$(redis-cli -p "$REDIS_PORT" hget "tributary:$RUN:state" accuracy_before)"
after="$(redis-cli -p "$REDIS_PORT" hget "tributary:$RUN:state" accuracy_after)"
"$CLI" workers list --run.id "$RUN" --json >"$OUT/workers.json"
wall=$(( $(date +%s) - started_at ))

python3 - "$OUT" "$before" "$after" "$wall" "$latest" "$RUN" <<'EOF'
import json, sys
out, before, after, wall, latest, run = sys.argv[1:]
summary = {
    "run": run,
    "accuracy_before": float(before),
    "accuracy_after": float(after),
    "wall_seconds": int(wall),
    "plot": f"{out}/reward.svg",
    "checkpoints": {"exported": f"{out}/checkpoints/policy-v{latest}.safetensors", "latest_version": int(latest),
                    "redis": f"tributary:{run}:ckpt:<version>:manifest (and :shard:<i>)"},
}
workers = json.load(open(f"{out}/workers.json"))["workers"]
summary["validation"] = {name: sum(w.get("reputation", {}).get(name, 0) for w in workers) for name in ["passed", "failed", "unchecked"]}
summary["validation"]["banned_keys"] = sum(1 for w in workers if "banned" in w)
json.dump(summary, open(f"{out}/summary.json", "w"), indent=2)
print()
print(f"held-out accuracy: {float(before):.1%} before GRPO -> {float(after):.1%} after  ({int(wall)} s in all)")
v = summary["validation"]
print(f"validation:  {v['passed']} groups checked and passed, {v['failed']} failed, {v['unchecked']} not sampled; {v['banned_keys']} keys banned")
print(f"plot:        {summary['plot']}")
print(f"checkpoint:  {summary['checkpoints']['exported']} (and every kept version in Redis)")
print(f"summary:     {out}/summary.json")
EOF
run "$CLI" shutdown all --run.id "$RUN" --wait --timeout 30 >/dev/null || true
