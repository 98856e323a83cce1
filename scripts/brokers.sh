#!/usr/bin/env bash
# Private RabbitMQ and Redis for Tributary's tests, benchmarks and quickstart.
#
#   scripts/brokers.sh start|stop|status|restart [rabbitmq|redis]
#   scripts/brokers.sh cluster start|stop|status|restart [rabbitmq|redis]
#
# Installs rabbitmq-server and redis-server from Debian when missing, runs them on ports of
# their own under a state folder (never the system services), waits until each answers.
#
# `cluster` runs RabbitMQ as a cluster of nodes on this machine instead of one node (Redis is the same one either way):
# node I is TRIBUTARY_CLUSTER_NODENAME-I@localhost with the I-th AMQP and distribution port of the lists below and its
# own state under $TRIBUTARY_STATE_DIR/cluster/node-I. All share one Erlang cookie and the one private epmd
# (TRIBUTARY_EPMD_PORT); nodes 2.. join node 1 with `rabbitmqctl join_cluster`. Clients take every node's URL,
# comma-separated (amqp.url, TRIBUTARY_AMQP_URL); `cluster status` prints that list. Use queue.type = quorum on it.
#   TRIBUTARY_CLUSTER_AMQP_PORTS   AMQP ports, one per node   (default: 5691,5692,5693: three nodes)
#   TRIBUTARY_CLUSTER_DIST_PORTS   distribution ports, as many (default: 25691,25692,25693)
#   TRIBUTARY_CLUSTER_NODENAME     node name prefix           (default: tributary-cluster)
# `cluster stop` stops every node; a node's pid is in cluster/node-I/rabbitmq/rabbitmq.pid (tests kill -9 one there).
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
NODENAME="${TRIBUTARY_AMQP_NODENAME:-tributary@localhost}"
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
    export RABBITMQ_NODENAME="$NODENAME"
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

# Nothing on the node's distribution port means no node (rabbitmqctl would take its whole timeout to say so).
rabbit_up() { port_listening "$DIST_PORT" && { rabbit_env; timeout 20 "$RABBIT_BIN/rabbitmqctl" -q status >/dev/null 2>&1; }; }
port_listening() { ss -ltnH "sport = :$1" 2>/dev/null | grep -q .; }
redis_up() { redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; }

start_rabbitmq() {
    if rabbit_up; then log "rabbitmq already running on $AMQP_PORT"; return; fi
    launch_rabbitmq
    await_rabbitmq
}

# Writes the node's configuration and starts it in the background; await_rabbitmq waits for it.
launch_rabbitmq() {
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
}

await_rabbitmq() {
    rabbit_env
    # await_startup returns once the node accepts clients, or fails if it died.
    local deadline=$((SECONDS + 120))
    until "$RABBIT_BIN/rabbitmqctl" -q await_startup --timeout 10 >/dev/null 2>&1; do
        if ((SECONDS > deadline)); then
            log "rabbitmq $NODENAME did not come up; last log lines:"; tail -20 "$RABBIT_DIR/log/startup.log" >&2; exit 1
        fi
        sleep 1
    done
    log "rabbitmq $NODENAME up on 127.0.0.1:$AMQP_PORT"
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

# --- cluster mode ---------------------------------------------------------------------------------------------------
CLUSTER_DIR="$STATE/cluster"
IFS=, read -r -a CLUSTER_AMQP_PORTS <<<"${TRIBUTARY_CLUSTER_AMQP_PORTS:-5691,5692,5693}"
IFS=, read -r -a CLUSTER_DIST_PORTS <<<"${TRIBUTARY_CLUSTER_DIST_PORTS:-25691,25692,25693}"
CLUSTER_PREFIX="${TRIBUTARY_CLUSTER_NODENAME:-tributary-cluster}"

check_cluster_settings() {
    local size=${#CLUSTER_AMQP_PORTS[@]}
    if ((size < 2)); then log "TRIBUTARY_CLUSTER_AMQP_PORTS='${TRIBUTARY_CLUSTER_AMQP_PORTS:-}' names $size port: a cluster needs two nodes or more (three for quorum queues to outlive one)"; exit 2; fi
    if ((${#CLUSTER_DIST_PORTS[@]} != size)); then
        log "TRIBUTARY_CLUSTER_DIST_PORTS names ${#CLUSTER_DIST_PORTS[@]} ports, TRIBUTARY_CLUSTER_AMQP_PORTS $size: one of each per node"; exit 2
    fi
    local port
    for port in "${CLUSTER_AMQP_PORTS[@]}" "${CLUSTER_DIST_PORTS[@]}"; do
        [[ "$port" =~ ^[0-9]+$ ]] || { log "cluster port '$port' is not a number (TRIBUTARY_CLUSTER_AMQP_PORTS, TRIBUTARY_CLUSTER_DIST_PORTS)"; exit 2; }
    done
}

cluster_node_name() { echo "$CLUSTER_PREFIX-$1@localhost"; }

# Points the single-node functions at node I (1-based) of the cluster.
select_node() {
    local index=$1
    NODENAME="$(cluster_node_name "$index")"
    AMQP_PORT="${CLUSTER_AMQP_PORTS[index - 1]}"
    DIST_PORT="${CLUSTER_DIST_PORTS[index - 1]}"
    RABBIT_DIR="$CLUSTER_DIR/node-$index/rabbitmq"
}

cluster_urls() {
    local port urls=()
    for port in "${CLUSTER_AMQP_PORTS[@]}"; do urls+=("amqp://guest:guest@127.0.0.1:$port/"); done
    (IFS=,; echo "${urls[*]}")
}

# The nodes node I counts as its cluster's members (running or not).
cluster_members() { select_node "$1"; rabbit_env; timeout 20 "$RABBIT_BIN/rabbitmqctl" -q eval 'rabbit_nodes:all().' 2>/dev/null || true; }

start_cluster() {
    local size=${#CLUSTER_AMQP_PORTS[@]} index first
    first="$(cluster_node_name 1)"
    mkdir -p "$CLUSTER_DIR"
    # One Erlang cookie for every node: they authenticate to each other (and rabbitmqctl to them) with it.
    if [[ ! -s "$CLUSTER_DIR/erlang.cookie" ]]; then
        (umask 077; head -c 64 /dev/urandom | tr -dc 'A-Z' | head -c 20 >"$CLUSTER_DIR/erlang.cookie")
    fi
    # All nodes boot at once (a node restarted on old state waits for its peers, so they must come up together).
    local waiting=()
    for ((index = 1; index <= size; index++)); do
        select_node "$index"
        if rabbit_up; then log "rabbitmq $NODENAME already running on $AMQP_PORT"; continue; fi
        mkdir -p "$RABBIT_DIR"
        install -m 400 "$CLUSTER_DIR/erlang.cookie" "$RABBIT_DIR/.erlang.cookie"
        launch_rabbitmq
        waiting+=("$index")
    done
    for index in "${waiting[@]}"; do select_node "$index"; await_rabbitmq; done
    for ((index = 2; index <= size; index++)); do
        if cluster_members "$index" | grep -qF "$first"; then continue; fi
        select_node "$index"
        rabbit_env
        log "joining $NODENAME to $first"
        "$RABBIT_BIN/rabbitmqctl" -q stop_app >/dev/null
        if ! "$RABBIT_BIN/rabbitmqctl" -q join_cluster "$first" >&2; then log "$NODENAME could not join $first"; exit 1; fi
        "$RABBIT_BIN/rabbitmqctl" -q start_app >/dev/null
    done
    log "cluster of $size up: $(cluster_urls)"
}

# Every node at once (each stop takes seconds), then the shared epmd, which refuses to go while a node is registered.
stop_cluster() {
    local index
    for ((index = 1; index <= ${#CLUSTER_AMQP_PORTS[@]}; index++)); do (select_node "$index"; stop_rabbitmq) & done
    wait
    ERL_EPMD_PORT="$EPMD_PORT" epmd -kill >/dev/null 2>&1 || true
}

cluster_status() {
    local size=${#CLUSTER_AMQP_PORTS[@]} index rc=0
    for ((index = 1; index <= size; index++)); do
        select_node "$index"
        if rabbit_up; then echo "rabbitmq $NODENAME: up on 127.0.0.1:$AMQP_PORT"; else echo "rabbitmq $NODENAME: down"; rc=1; fi
    done
    echo "members (as node 1 sees them): $(cluster_members 1 | tr -d '\n')"
    echo "amqp.url: $(cluster_urls)"
    return $rc
}

cluster_command() {
    check_cluster_settings
    local cmd="${1:-status}" which="${2:-all}"
    case "$which" in all|rabbitmq|redis) ;; *) log "unknown broker '$which' (rabbitmq, redis or all)"; exit 2 ;; esac
    case "$cmd" in
        start)
            ensure_installed
            [[ "$which" == redis ]] || start_cluster
            [[ "$which" == rabbitmq ]] || start_redis
            ;;
        stop)
            [[ "$which" == redis ]] || stop_cluster
            [[ "$which" == rabbitmq ]] || stop_redis
            ;;
        restart)
            "$0" cluster stop "$which"
            "$0" cluster start "$which"
            ;;
        status)
            local rc=0
            if [[ "$which" != redis ]]; then cluster_status || rc=1; fi
            if [[ "$which" != rabbitmq ]]; then
                if redis_up; then echo "redis: up on 127.0.0.1:$REDIS_PORT"; else echo "redis: down"; rc=1; fi
            fi
            exit $rc
            ;;
        *) log "usage: $0 cluster start|stop|status|restart [rabbitmq|redis]"; exit 2 ;;
    esac
}

if [[ "${1:-}" == cluster ]]; then
    shift
    cluster_command "$@"
    exit 0
fi

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
    *) log "usage: $0 [cluster] start|stop|status|restart [rabbitmq|redis]"; exit 2 ;;
esac
