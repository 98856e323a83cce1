#!/usr/bin/env bash
# Tributary's tests: installs what is missing, starts private brokers, runs every test (release build:
# the end-to-end tests train a real model), and stops the brokers it started, passing or failing.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PATH="/opt/swift/usr/bin:$PATH"
scripts/install-deps.sh
started_brokers=0
if ! scripts/brokers.sh status >/dev/null 2>&1; then
    scripts/brokers.sh start
    started_brokers=1
fi
cleanup() { if ((started_brokers)); then scripts/brokers.sh stop || true; fi; }
trap cleanup EXIT
# One release build of everything (executables for the end-to-end tests included), then the tests on it.
swift build -c release --build-tests -Xswiftc -enable-testing
swift test -c release --skip-build "$@"
