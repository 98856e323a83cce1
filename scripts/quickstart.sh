#!/usr/bin/env bash
# Tributary's main job: a local asynchronous RL run on one machine.
#
#   scripts/quickstart.sh [--out DIR] [--config RUN.toml] [--rollouts N] [--rewards N]
#
# Installs what is missing, starts private brokers, builds in release, launches the broadcaster, the learner,
# rollout workers and reward scorers as separate processes, starts the run (warm start, then asynchronous GRPO),
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
while (($#)); do
    case "$1" in
        --out) OUT="$2"; shift 2 ;;
        --config) CONFIG="$2"; shift 2 ;;
        --rollouts) ROLLOUTS="$2"; shift 2 ;;
        --rewards) REWARDS="$2"; shift 2 ;;
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

scripts/install-deps.sh
started_brokers=0
if ! scripts/brokers.sh status >/dev/null 2>&1; then
    scripts/brokers.sh start
    started_brokers=1
fi

pids=()
cleanup() {
    # Ask politely (SIGTERM: drain and exit 0), then make sure.
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for _ in $(seq 1 100); do
        alive=0
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if ((started_brokers)); then scripts/brokers.sh stop || true; fi
}
trap cleanup EXIT

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
for i in $(seq 0 $((ROLLOUTS - 1))); do launch rollout "rollout-$i"; done
echo "quickstart: launched broadcaster, learner, $REWARDS reward scorer(s), $ROLLOUTS rollout worker(s); logs in $OUT/logs"

CLI="$BIN/tributary"
# The learner needs a moment to connect and listen for control commands. --fresh: a finished earlier quickstart's
# run id starts its next epoch. An interrupted one is resumed by the learner itself (it finds the run in progress).
started=""
for _ in $(seq 1 100); do
    if reply="$("$CLI" run start --run.id "$RUN" --config "$CONFIG" --fresh 2>&1)"; then started="started from $CONFIG"; break; fi
    if [[ "$reply" == *"is already"* ]]; then started="resumed: an interrupted quickstart left it in progress"; break; fi
    sleep 0.3
done
echo "quickstart: run '$RUN' ${started:-not started (see $OUT/logs/learner-0.log)}"
"$CLI" watch --run.id "$RUN" --until-finished --wait-for-start

"$CLI" plot --run.id "$RUN" --out "$OUT/reward.svg"
latest="$("$CLI" checkpoint list --run.id "$RUN" --json | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["latest"])')"
"$CLI" checkpoint export "$latest" "$OUT/checkpoints/policy-v$latest.safetensors" --run.id "$RUN"
before="$(redis-cli -p "$REDIS_PORT" hget "tributary:$RUN:state" accuracy_before)"
after="$(redis-cli -p "$REDIS_PORT" hget "tributary:$RUN:state" accuracy_after)"
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
json.dump(summary, open(f"{out}/summary.json", "w"), indent=2)
print()
print(f"held-out accuracy: {float(before):.1%} before GRPO -> {float(after):.1%} after  ({int(wall)} s in all)")
print(f"plot:        {summary['plot']}")
print(f"checkpoint:  {summary['checkpoints']['exported']} (and every kept version in Redis)")
print(f"summary:     {out}/summary.json")
EOF
"$CLI" shutdown all --run.id "$RUN" --wait --timeout 30 >/dev/null || true
