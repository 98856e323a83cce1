#!/bin/sh
# Renders configuration templates that hold secrets: every ${NAME} in a template is replaced by the
# environment variable NAME, so passwords live only in the env file (compose/.env), never in the repository.
#
#   render-secrets.sh [--owner USER] TEMPLATE OUTPUT [TEMPLATE OUTPUT ...] [-- COMMAND ARGS...]
#
# Lines starting with # are comments of the template and are dropped (Redis ACL files allow none).
# Fails when a variable is unset, empty, or holds characters other than A-Z a-z 0-9 . _ ~ -
# (values go into JSON, Redis ACL lines and amqp:// / redis:// URLs unescaped). Outputs are mode 0600,
# owned by USER when run as root. With `-- COMMAND`, execs it afterwards (a container entrypoint).
# POSIX sh and awk only: it runs in the rabbitmq and redis images and in the tests.
set -eu
owner=""
if [ "${1:-}" = "--owner" ]; then owner="$2"; shift 2; fi
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
    template="$1"; output="${2:?render-secrets: $template has no output path}"; shift 2
    mkdir -p "$(dirname "$output")"
    umask 077
    awk '
        /^#/ { next }
        {
            line = $0; out = ""
            while (match(line, /\$\{[A-Za-z_][A-Za-z0-9_]*\}/)) {
                name = substr(line, RSTART + 2, RLENGTH - 3)
                if (!(name in ENVIRON) || ENVIRON[name] == "") {
                    printf "render-secrets: %s:%d needs %s, which is not set (see compose/.env.example)\n", FILENAME, NR, name > "/dev/stderr"; failed = 1; exit 1
                }
                value = ENVIRON[name]
                if (value ~ /[^A-Za-z0-9._~-]/) {
                    printf "render-secrets: %s may only hold A-Z a-z 0-9 . _ ~ -\n", name > "/dev/stderr"; failed = 1; exit 1
                }
                out = out substr(line, 1, RSTART - 1) value
                line = substr(line, RSTART + RLENGTH)
            }
            print out line
        }
        END { if (failed) exit 1 }
    ' "$template" >"$output.tmp" || { rm -f "$output.tmp"; exit 1; }
    mv "$output.tmp" "$output"
    chmod 600 "$output"
    if [ -n "$owner" ] && [ "$(id -u)" = 0 ]; then chown "$owner" "$output"; fi
done
if [ "${1:-}" = "--" ]; then shift; exec "$@"; fi
