#!/usr/bin/env bash
# Checks the deployment (compose/) against the code without a Docker engine: installs Debian's docker-compose
# when missing, then runs compose/check-compose.py with the built executables (default: .build/release).
#   scripts/deploy-check.sh [BIN_DIR]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN_DIR="${1:-${TRIBUTARY_BIN_DIR:-$ROOT/.build/release}}"
if ! command -v docker-compose >/dev/null 2>&1; then
    echo "deploy-check: installing docker-compose (Debian)" >&2
    sudo=""
    [[ "$(id -u)" == 0 ]] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq docker-compose >/dev/null
fi
# Debian's python3 (docker-compose's own) has PyYAML.
exec /usr/bin/python3 "$ROOT/compose/check-compose.py" --root "$ROOT" --bin-dir "$BIN_DIR"
