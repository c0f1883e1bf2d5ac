#!/usr/bin/env bash
# Installs what building, testing and the demo need when it is missing: Tarantool (Debian's
# package) and, in a venv under target/py, what the tests use to check our WebSocket server
# with implementations that are not ours: Python's `websockets` (an independent client) and
# `kosoku` (runs the Autobahn test suite's RFC 6455 cases). Safe to run again; quick when
# everything is there.
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
    if ! target/py/bin/python3 -c 'import websockets, kosoku' >/dev/null 2>&1 \
        || [ ! -x target/py/bin/kosoku ]; then
        echo "==> installing Python websockets and kosoku into target/py"
        if ! python3 -m venv target/py >/dev/null 2>&1; then
            as_root apt-get update -qq
            DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq python3-venv >/dev/null
            python3 -m venv target/py
        fi
        # kosoku needs Python >= 3.10 (Debian 12 has 3.11). Pinned: the conformance test
        # expects the exact case list of this version.
        target/py/bin/pip install --quiet --disable-pip-version-check 'websockets>=12' 'kosoku==0.1.0'
    fi
    target/py/bin/python3 -c 'import websockets; print("python websockets", websockets.__version__)'
    target/py/bin/pip show kosoku 2>/dev/null | sed -n 's/^Version: /kosoku /p'
fi
