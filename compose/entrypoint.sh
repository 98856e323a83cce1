#!/bin/bash
# Entry point of the Tributary image: the command chooses the role (tributary-rollout, tributary-reward,
# tributary-learner, tributary-broadcaster, or the `tributary` CLI). A service without TRIBUTARY_SERVICE_INSTANCE
# is named ROLE-HOSTNAME (the container's id, unique per replica), so its heartbeat key is known to the health check.
set -euo pipefail
if (($# == 0)); then set -- tributary --help; fi
case "$(basename "$1")" in
    tributary-rollout | tributary-reward | tributary-validator | tributary-learner | tributary-broadcaster)
        role="$(basename "$1")"
        role="${role#tributary-}"
        export TRIBUTARY_SERVICE_INSTANCE="${TRIBUTARY_SERVICE_INSTANCE:-$role-${HOSTNAME:-$(cat /etc/hostname)}}"
        # The health check re-reads the effective settings with the same command line.
        printf '%s\0' "$@" >/tmp/tributary-command
        printf '%s' "$TRIBUTARY_SERVICE_INSTANCE" >/tmp/tributary-instance
        ;;
esac
exec "$@"
