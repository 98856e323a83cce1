#!/usr/bin/env bash
# Private RabbitMQ and Redis for Tributary's tests, benchmarks and quickstart.
#
#   scripts/brokers.sh start|stop|status|restart [rabbitmq|redis]
#
# Installs rabbitmq-server and redis-server from Debian when missing, runs them on ports of
# their own under a state folder (never the system services), waits until each answers.
# Settings (environment):
#   TRIBUTARY_STATE_DIR   state folder            (default: <repo>/.state)
#   TRIBUTARY_AMQP_PORT   RabbitMQ AMQP port      (default: 5682)
#   TRIBUTARY_REDIS_PORT  Redis port              (default: 6389)
#   TRIBUTARY_EPMD_PORT, TRIBUTARY_AMQP_DIST_PORT, TRIBUTARY_AMQP_NODENAME  for a second RabbitMQ beside the first
#   TRIBUTARY_REDIS_APPENDFSYNC  always (default: a write is on disk before Redis answers it) or everysec (faster, loses up to 1 s on a crash)
#   TRIBUTARY_AMQP_MANAGEMENT_PORT  when set, the management HTTP API on 127.0.0.1 there (`tributary users` needs it)
#   TRIBUTARY_AMQP_CONF_EXTRA       lines appended to rabbitmq.conf (a harness's extra listener)
#   TRIBUTARY_AMQP_ADVANCED_CONFIG  advanced.config's content (default: [].)
#   TRIBUTARY_REDIS_BIND            Redis's bind addresses (default: 127.0.0.1)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${TRIBUTARY_STATE_DIR:-$ROOT/.state}"
AMQP_PORT="${TRIBUTARY_AMQP_PORT:-5682}"
REDIS_PORT="${TRIBUTARY_REDIS_PORT:-6389}"
# Erlang's port mapper and distribution port, private too, so a system RabbitMQ cannot clash.
EPMD_PORT="${TRIBUTARY_EPMD_PORT:-4380}"
DIST_PORT="${TRIBUTARY_AMQP_DIST_PORT:-25682}"
RABBIT_BIN=/usr/lib/rabbitmq/bin
RABBIT_DIR="$STATE/rabbitmq"
REDIS_DIR="$STATE/redis"

log() { echo "brokers: $*" >&2; }

ensure_installed() {
    # The same Debian packages (and the policy that keeps their system services from starting) as everything else.
    "$ROOT/scripts/install-deps.sh"
}

rabbit_env() {
    export HOME="$RABBIT_DIR"  # the Erlang cookie lives here
    export RABBITMQ_NODENAME="${TRIBUTARY_AMQP_NODENAME:-tributary@localhost}"
    export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
    export RABBITMQ_NODE_PORT="$AMQP_PORT"
    export RABBITMQ_DIST_PORT="$DIST_PORT"
    export ERL_EPMD_PORT="$EPMD_PORT"
    export ERL_EPMD_ADDRESS=127.0.0.1
    export RABBITMQ_MNESIA_BASE="$RABBIT_DIR/mnesia"
    export RABBITMQ_LOG_BASE="$RABBIT_DIR/log"
    export RABBITMQ_PID_FILE="$RABBIT_DIR/rabbitmq.pid"
    export RABBITMQ_CONFIG_FILE="$RABBIT_DIR/rabbitmq.conf"
    export RABBITMQ_ENABLED_PLUGINS_FILE="$RABBIT_DIR/enabled_plugins"
    export RABBITMQ_ADVANCED_CONFIG_FILE="$RABBIT_DIR/advanced.config"
    export ERL_CRASH_DUMP="$RABBIT_DIR/erl_crash.dump"  # not in the caller's folder
}

rabbit_up() { rabbit_env; timeout 20 "$RABBIT_BIN/rabbitmqctl" -q status >/dev/null 2>&1; }
redis_up() { redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; }

start_rabbitmq() {
    if rabbit_up; then log "rabbitmq already running on $AMQP_PORT"; return; fi
    mkdir -p "$RABBIT_DIR/log" "$RABBIT_DIR/mnesia"
    cat >"$RABBIT_DIR/rabbitmq.conf" <<EOF
listeners.tcp.local = 127.0.0.1:$AMQP_PORT
loopback_users.guest = true
max_message_size = 16777216
disk_free_limit.absolute = 50MB
log.file.level = warning
EOF
    if [[ -n "${TRIBUTARY_AMQP_MANAGEMENT_PORT:-}" ]]; then
        printf 'management.tcp.ip = 127.0.0.1\nmanagement.tcp.port = %s\n' "$TRIBUTARY_AMQP_MANAGEMENT_PORT" >>"$RABBIT_DIR/rabbitmq.conf"
        echo '[rabbitmq_management].' >"$RABBIT_DIR/enabled_plugins"
    else
        echo '[].' >"$RABBIT_DIR/enabled_plugins"
    fi
    if [[ -n "${TRIBUTARY_AMQP_CONF_EXTRA:-}" ]]; then printf '%s\n' "$TRIBUTARY_AMQP_CONF_EXTRA" >>"$RABBIT_DIR/rabbitmq.conf"; fi
    printf '%s\n' "${TRIBUTARY_AMQP_ADVANCED_CONFIG:-[].}" >"$RABBIT_DIR/advanced.config"
    rabbit_env
    log "starting rabbitmq on 127.0.0.1:$AMQP_PORT (state in $RABBIT_DIR)"
    nohup "$RABBIT_BIN/rabbitmq-server" >"$RABBIT_DIR/log/startup.log" 2>&1 &
    # await_startup returns once the node accepts clients, or fails if it died.
    local deadline=$((SECONDS + 120))
    until "$RABBIT_BIN/rabbitmqctl" -q await_startup --timeout 10 >/dev/null 2>&1; do
        if ((SECONDS > deadline)); then
            log "rabbitmq did not come up; last log lines:"; tail -20 "$RABBIT_DIR/log/startup.log" >&2; exit 1
        fi
        sleep 1
    done
    log "rabbitmq up"
}

listener_pid() { ss -ltnpH "sport = :$1" 2>/dev/null | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2; }

stop_rabbitmq() {
    rabbit_env
    if rabbit_up; then
        log "stopping rabbitmq"
        "$RABBIT_BIN/rabbitmqctl" -q stop "$RABBITMQ_PID_FILE" >/dev/null 2>&1 || true
    fi
    # A node whose state folder is gone cannot be reached by rabbitmqctl: stop whatever holds the port.
    local pid
    for pid in "$(cat "$RABBIT_DIR/rabbitmq.pid" 2>/dev/null || true)" "$(listener_pid "$AMQP_PORT")" "$(listener_pid "$DIST_PORT")"; do
        [[ -n "$pid" ]] && kill -9 "$pid" 2>/dev/null || true
    done
    rm -f "$RABBIT_DIR/rabbitmq.pid"
    # The private epmd outlives the node; stop it so nothing is left behind.
    ERL_EPMD_PORT="$EPMD_PORT" epmd -kill >/dev/null 2>&1 || true
}

start_redis() {
    if redis_up; then log "redis already running on $REDIS_PORT"; return; fi
    mkdir -p "$REDIS_DIR"
    log "starting redis on 127.0.0.1:$REDIS_PORT (state in $REDIS_DIR)"
    # shellcheck disable=SC2086  # several addresses, one word each
    redis-server --bind ${TRIBUTARY_REDIS_BIND:-127.0.0.1} --port "$REDIS_PORT" --dir "$REDIS_DIR" \
        --daemonize yes --pidfile "$REDIS_DIR/redis.pid" --logfile "$REDIS_DIR/redis.log" \
        --appendonly yes --appendfsync "${TRIBUTARY_REDIS_APPENDFSYNC:-always}" --maxmemory-policy noeviction --save "" \
        --protected-mode yes
    local deadline=$((SECONDS + 30))
    until redis_up; do
        if ((SECONDS > deadline)); then log "redis did not come up"; tail -20 "$REDIS_DIR/redis.log" >&2; exit 1; fi
        sleep 0.2
    done
    log "redis up"
}

stop_redis() {
    if redis_up; then
        log "stopping redis"
        redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
    fi
    local deadline=$((SECONDS + 10))
    while redis_up && ((SECONDS < deadline)); do sleep 0.1; done
}

cmd="${1:-status}"
which="${2:-all}"
case "$which" in all|rabbitmq|redis) ;; *) log "unknown broker '$which' (rabbitmq, redis or all)"; exit 2 ;; esac
case "$cmd" in
    start)
        ensure_installed
        [[ "$which" == redis ]] || start_rabbitmq
        [[ "$which" == rabbitmq ]] || start_redis
        ;;
    stop)
        [[ "$which" == redis ]] || stop_rabbitmq
        [[ "$which" == rabbitmq ]] || stop_redis
        ;;
    restart)
        "$0" stop "$which"
        "$0" start "$which"
        ;;
    status)
        rc=0
        if [[ "$which" != redis ]]; then
            if rabbit_up; then echo "rabbitmq: up on 127.0.0.1:$AMQP_PORT"; else echo "rabbitmq: down"; rc=1; fi
        fi
        if [[ "$which" != rabbitmq ]]; then
            if redis_up; then echo "redis: up on 127.0.0.1:$REDIS_PORT"; else echo "redis: down"; rc=1; fi
        fi
        exit $rc
        ;;
    *) log "usage: $0 start|stop|status|restart [rabbitmq|redis]"; exit 2 ;;
esac
