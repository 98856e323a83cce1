#!/bin/bash
# Health of a Tributary service container: its heartbeat in Redis is fresh. Each service writes
# tributary:RUN:hb:ROLE:INSTANCE every 2 s with a 10 s expiry once it is connected to RabbitMQ and Redis
# (and, for the learner, once the run's queues are declared), so an existing key means "up and connected".
# Without TRIBUTARY_REDIS_URL in the environment it falls back to the Prometheus endpoint (process alive).
# A container running the CLI is always healthy.
set -uo pipefail
[[ -r /tmp/tributary-command ]] || exit 0
mapfile -d '' command </tmp/tributary-command
role="$(basename "${command[0]}")"
role="${role#tributary-}"
export TRIBUTARY_SERVICE_INSTANCE
TRIBUTARY_SERVICE_INSTANCE="$(cat /tmp/tributary-instance)"
# The effective run id and instance, whatever mix of file, environment and flags set them.
effective="$("${command[@]}" --dry-run 2>/dev/null)" || { echo "configuration check failed"; exit 1; }
setting() { awk -v key="$1" '$1 == key { print $2; exit }' <<<"$effective"; }
run="$(setting run.id)"
instance="$(setting service.instance)"
port="$(setting metrics.port)"
if [[ -n "${TRIBUTARY_REDIS_URL:-}" ]]; then
    key="tributary:$run:hb:$role:$instance"
    found="$(redis-cli -u "$TRIBUTARY_REDIS_URL" --no-auth-warning EXISTS "$key" 2>&1)"
    [[ "$found" == 1 ]] && exit 0
    echo "no fresh heartbeat at $key: $found"
    exit 1
fi
if [[ "$port" =~ ^[1-9][0-9]*$ ]]; then
    exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
    printf 'GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3
    read -r status <&3
    [[ "$status" == *" 200 "* ]] && exit 0
    echo "metrics endpoint answered: $status"
fi
exit 1
