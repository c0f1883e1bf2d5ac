#!/usr/bin/env bash
# Installs what building, testing and the demo need when it is missing: Tarantool (Debian's
# package) and, for the tests' independent WebSocket client, Python's `websockets` in a venv
# under target/py. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

if ! command -v tarantool >/dev/null 2>&1; then
    echo "==> installing tarantool (Debian package)"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq tarantool >/dev/null
fi
tarantool --version | head -1

if [ "${1:-}" != "--no-python" ]; then
    if ! target/py/bin/python3 -c 'import websockets' >/dev/null 2>&1; then
        echo "==> installing Python websockets into target/py"
        if ! python3 -m venv target/py >/dev/null 2>&1; then
            as_root apt-get update -qq
            DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq python3-venv >/dev/null
            python3 -m venv target/py
        fi
        target/py/bin/pip install --quiet --disable-pip-version-check 'websockets>=12'
    fi
    target/py/bin/python3 -c 'import websockets; print("python websockets", websockets.__version__)'
fi
