#!/usr/bin/env bash
# Remote worker hosts on this machine, for tests and benchmarks of Tributary across distance. Test equipment.
#
#   scripts/netlab.sh [options] [-- COMMAND ARGS...]
#   scripts/netlab.sh down --name TAG        # removes what a killed netlab of that name left behind
#
# Builds --hosts network namespaces ("remote hosts"), each joined to this host (the central one) by a veth pair
# shaped with tc tbf to --rate in both directions. The brokers stay on loopback; for each --forward PORT[:TARGET],
# a delay proxy (scripts/netlab-proxy.py) listens on the central end of every link and forwards to 127.0.0.1:TARGET,
# holding each chunk for half of --rtt in each direction (the kernel here has no netem). So a process in a remote
# namespace reaches the brokers at the link's central address (NETLAB_CENTRAL_i) with the profile's round trip and rate.
#
# With --relays, each remote host also runs a Redis relay: a replica of the origin (replicaof through the link,
# logging in as user `replica` with REDIS_REPLICA_PASSWORD), with compose/redis/relay.conf and relay-users.acl
# (REDIS_ROLLOUT_PASSWORD, REDIS_ADMIN_PASSWORD), listening on 127.0.0.1:6379 inside its namespace. The origin's
# `replica` user must exist (compose/redis/users.acl; a test adds it with ACL SETUSER).
#
# Options:
#   --name TAG            names: namespaces tnl-TAG-1..N, links tnlTAGi (default: netlab); TAG is [a-z0-9], <= 6 chars
#   --hosts N             remote hosts (default 1, at most 60)
#   --rtt 150ms           round trip added by the proxy (default 0ms); also accepts s and us
#   --rate 50mbit         tbf rate of each link, both directions (default: none); tc units (kbit, mbit, gbit)
#   --net A.B.C           the /24 the links use: host i gets A.B.C.(4i+1) central, A.B.C.(4i+2) remote (default 10.231.0)
#   --forward P[:T]       proxy the link's central address port P to 127.0.0.1:T (T defaults to P); repeatable
#   --relays ORIGINPORT   run a relay per remote host, replicating 127.0.0.1:ORIGINPORT through a proxied port of its own
#   --state DIR           where the proxy's stats, relays and ready file go (default: /tmp/netlab-TAG)
#
# Once everything is up it writes DIR/ready (shell assignments: NETLAB_NAMESPACE_i, NETLAB_CENTRAL_i, NETLAB_REMOTE_i,
# NETLAB_LINK_i, NETLAB_RELAY_PORT, NETLAB_STATS) and prints it. Without a COMMAND it then waits until interrupted; with
# one it runs it with those variables exported and exits with its status. Everything is torn down on exit, SIGINT or
# SIGTERM. DIR/links.json holds the proxy's byte counts per forwarded port (rewritten every second).
# Traffic stays on this machine: loopback and the links' private addresses only. Needs root, ip, tc, python3.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
log() { echo "netlab: $*" >&2; }
die() { log "$*"; exit 2; }

name=netlab hosts=1 rtt=0ms rate="" net=10.231.0 state="" relays_origin=""
forwards=()
command=()

if [[ "${1:-}" == down ]]; then
    shift
    [[ "${1:-}" == --name && -n "${2:-}" ]] || die "usage: $0 down --name TAG"
    name="$2"
    mode=down
else
    mode=up
fi
while (($#)); do
    case "$1" in
        --name) name="${2:?--name needs a value}"; shift 2 ;;
        --hosts) hosts="${2:?--hosts needs a value}"; shift 2 ;;
        --rtt) rtt="${2:?--rtt needs a value}"; shift 2 ;;
        --rate) rate="${2:?--rate needs a value}"; shift 2 ;;
        --net) net="${2:?--net needs a value}"; shift 2 ;;
        --forward) forwards+=("${2:?--forward needs a value}"); shift 2 ;;
        --relays) relays_origin="${2:?--relays needs the origin Redis port}"; shift 2 ;;
        --state) state="${2:?--state needs a value}"; shift 2 ;;
        --) shift; command=("$@"); break ;;
        *) die "unknown option '$1' (see the header of $0)" ;;
    esac
done

[[ "$name" =~ ^[a-z0-9]{1,6}$ ]] || die "--name '$name' must be 1 to 6 characters of a-z and 0-9"
[[ "$hosts" =~ ^[0-9]+$ ]] && ((hosts >= 1 && hosts <= 60)) || die "--hosts '$hosts' must be a number from 1 to 60"
[[ "$net" =~ ^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$ ]] || die "--net '$net' must be three octets, like 10.231.0"
state="${state:-/tmp/netlab-$name}"

# The round trip in microseconds, from 150ms, 0.15s or 150000us.
rtt_us() {
    local value="$1"
    if [[ "$value" =~ ^([0-9]+(\.[0-9]+)?)(ms|s|us)$ ]]; then
        python3 -c "import sys; n, unit = float(sys.argv[1]), sys.argv[2]; print(int(n * {'s': 1e6, 'ms': 1e3, 'us': 1}[unit]))" \
            "${BASH_REMATCH[1]}" "${BASH_REMATCH[3]}"
    else
        die "--rtt '$value' must be a number with ms, s or us, like 150ms"
    fi
}
if [[ -n "$rate" && ! "$rate" =~ ^[0-9]+(\.[0-9]+)?(bit|kbit|mbit|gbit)$ ]]; then
    die "--rate '$rate' must be a tc rate such as 50mbit, 10mbit or 500kbit"
fi

namespace() { echo "tnl-$name-$1"; }
central_link() { echo "tnl${name}$1"; }
remote_link() { echo "tnr${name}$1"; }
central_address() { echo "$net.$((4 * $1 + 1))"; }
remote_address() { echo "$net.$((4 * $1 + 2))"; }

teardown() {
    local i pid
    jobs -p | xargs -r kill 2>/dev/null || true
    for pid in "$state"/*.pid; do
        [[ -e "$pid" ]] || continue
        kill "$(cat "$pid")" 2>/dev/null || true
        rm -f "$pid"
    done
    for i in $(seq 1 60); do
        ip netns pids "$(namespace "$i")" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
        ip netns delete "$(namespace "$i")" 2>/dev/null || true
        ip link delete "$(central_link "$i")" 2>/dev/null || true
    done
    rm -f "$state/ready"
}

if [[ "$mode" == down ]]; then
    teardown
    log "removed netlab '$name'"
    exit 0
fi

[[ "$(id -u)" == 0 ]] || die "needs root (network namespaces, veth pairs, tc)"
for tool in ip tc python3; do command -v "$tool" >/dev/null || die "needs $tool (scripts/install-deps.sh installs it)"; done
if [[ -n "$relays_origin" ]]; then
    command -v redis-server >/dev/null || die "--relays needs redis-server"
    for variable in REDIS_REPLICA_PASSWORD REDIS_ROLLOUT_PASSWORD REDIS_ADMIN_PASSWORD; do
        [[ -n "${!variable:-}" ]] || die "--relays needs $variable in the environment"
    done
fi
delay_us=$(($(rtt_us "$rtt") / 2))

mkdir -p "$state"
teardown
trap 'teardown' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

run() { "$@" >/dev/null 2>&1 || { log "failed: $*"; "$@" >&2 || true; exit 1; }; }
listen=()
relay_port=""
if [[ -n "$relays_origin" ]]; then
    # the relays' own proxied port, so replication is counted apart from the workers' reads of the origin
    relay_port=$((relays_origin + 10000))
    ((relay_port <= 65535)) || die "--relays $relays_origin: the relay port $relay_port is out of range"
fi
{
    for i in $(seq 1 "$hosts"); do
        ns="$(namespace "$i")"
        run ip netns add "$ns"
        run ip link add "$(central_link "$i")" type veth peer name "$(remote_link "$i")"
        run ip link set "$(remote_link "$i")" netns "$ns"
        run ip addr add "$(central_address "$i")/30" dev "$(central_link "$i")"
        run ip link set "$(central_link "$i")" up
        run ip netns exec "$ns" ip addr add "$(remote_address "$i")/30" dev "$(remote_link "$i")"
        run ip netns exec "$ns" ip link set "$(remote_link "$i")" up
        run ip netns exec "$ns" ip link set lo up
        if [[ -n "$rate" ]]; then
            # both directions: the central end shapes what goes out to the remote host, the remote end what comes back
            run tc qdisc add dev "$(central_link "$i")" root tbf rate "$rate" burst 256kb latency 50ms
            run ip netns exec "$ns" tc qdisc add dev "$(remote_link "$i")" root tbf rate "$rate" burst 256kb latency 50ms
        fi
        for forward in "${forwards[@]}"; do
            [[ "$forward" =~ ^([0-9]+)(:([0-9]+))?$ ]] || die "--forward '$forward' must be PORT or PORT:TARGET"
            listen+=(--listen "$(central_address "$i"):${BASH_REMATCH[1]}=127.0.0.1:${BASH_REMATCH[3]:-${BASH_REMATCH[1]}}")
        done
        [[ -z "$relay_port" ]] || listen+=(--listen "$(central_address "$i"):$relay_port=127.0.0.1:$relays_origin")
    done

    if ((${#listen[@]})); then
        python3 "$ROOT/scripts/netlab-proxy.py" "${listen[@]}" --delay-ms "$(python3 -c "print($delay_us / 1000)")" \
            --stats "$state/links.json" >"$state/proxy.log" 2>&1 &
        echo $! >"$state/proxy.pid"
        # up once every listener accepts
        for spec in "${listen[@]}"; do
            [[ "$spec" == --listen ]] && continue
            address="${spec%%=*}"
            deadline=$((SECONDS + 20))
            until (exec 3<>"/dev/tcp/${address%:*}/${address##*:}") 2>/dev/null; do
                ((SECONDS < deadline)) || { log "the delay proxy did not listen on $address"; cat "$state/proxy.log" >&2; exit 1; }
                sleep 0.1
            done
        done
    fi

    if [[ -n "$relay_port" ]]; then
        for i in $(seq 1 "$hosts"); do
            dir="$state/relay-$i"
            mkdir -p "$dir"
            CENTRAL_HOST="$(central_address "$i")" CENTRAL_REDIS_PORT="$relay_port" \
                sh "$ROOT/compose/render-secrets.sh" "$ROOT/compose/redis/relay.conf" "$dir/relay.conf" \
                "$ROOT/compose/redis/relay-users.acl" "$dir/users.acl"
            sed -i "s|^include /etc/tributary/redis.conf|include $ROOT/compose/redis/redis.conf|" "$dir/relay.conf"
            run ip netns exec "$(namespace "$i")" redis-server "$dir/relay.conf" --bind 127.0.0.1 --port 6379 \
                --aclfile "$dir/users.acl" --dir "$dir" --appendonly no --maxmemory 0 \
                --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log"
            deadline=$((SECONDS + 30))
            until ip netns exec "$(namespace "$i")" env REDISCLI_AUTH="$REDIS_ADMIN_PASSWORD" redis-cli --user admin -p 6379 \
                    info replication 2>/dev/null | grep -q 'master_link_status:up'; do
                ((SECONDS < deadline)) || { log "relay $i did not link to the origin"; tail -20 "$dir/redis.log" >&2; exit 1; }
                sleep 0.2
            done
            cp "$dir/redis.pid" "$state/relay-$i.pid"
        done
    fi

    {
        echo "NETLAB_HOSTS=$hosts"
        echo "NETLAB_STATS=$state/links.json"
        echo "NETLAB_RELAY_PORT=$relay_port"
        for i in $(seq 1 "$hosts"); do
            echo "NETLAB_NAMESPACE_$i=$(namespace "$i")"
            echo "NETLAB_CENTRAL_$i=$(central_address "$i")"
            echo "NETLAB_REMOTE_$i=$(remote_address "$i")"
            echo "NETLAB_LINK_$i=$(central_link "$i")"
        done
    } >"$state/ready.tmp"
    mv "$state/ready.tmp" "$state/ready"
}
log "up: $hosts remote host(s), rtt $rtt, rate ${rate:-unlimited}, forwards ${forwards[*]:-none}${relay_port:+, relays}"
cat "$state/ready"

if ((${#command[@]})); then
    set -a
    # shellcheck disable=SC1091
    source "$state/ready"
    set +a
    status=0
    "${command[@]}" || status=$?
    exit "$status"
fi
# wait until interrupted, or until whoever started it is gone (a killed harness leaves nothing behind); the sleep runs
# in the background so that the traps run at once
parent=$PPID
while kill -0 "$parent" 2>/dev/null; do sleep 1 & wait $! || true; done
log "parent $parent is gone: tearing down"
