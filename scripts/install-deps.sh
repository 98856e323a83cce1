#!/usr/bin/env bash
# Installs the Debian packages Tributary builds and runs against, when missing. Swift itself is expected at /opt/swift or on PATH.
set -euo pipefail
packages=(librabbitmq-dev libhiredis-dev libzstd-dev libopenblas-dev libsodium-dev rabbitmq-server redis-server redis-tools python3 iproute2 prometheus)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
    echo "install-deps: installing ${missing[*]}" >&2
    sudo=""
    [[ "$(id -u)" == 0 ]] || sudo="sudo"
    # Keep Debian from starting the system RabbitMQ and Redis: Tributary runs private ones (scripts/brokers.sh).
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
        $sudo chmod +x /usr/sbin/policy-rc.d
    fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! command -v swift >/dev/null 2>&1; then
    if [[ -x /opt/swift/usr/bin/swift ]]; then
        echo "install-deps: swift is at /opt/swift/usr/bin; add it to PATH" >&2
    else
        echo "install-deps: Swift 6.3 is required (https://swift.org/install)" >&2
        exit 1
    fi
fi
