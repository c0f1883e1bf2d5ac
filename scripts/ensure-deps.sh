#!/usr/bin/env bash
# Installs what building, testing and the demo need when it is missing:
# - Tarantool (Debian's package);
# - for the tests: nginx (the load balancer of tests/e2e/tarantool/scaleout.rs), Chromium (Debian's
#   package; tests/e2e/explorer.rs drives the live page in it headless) and, in a venv under target/py, implementations that are not ours to check our
#   WebSocket server with: Python's `websockets` (an independent client) and `kosoku` (runs the
#   Autobahn test suite's RFC 6455 cases).
# `--no-python` (what `make demo` uses): Tarantool only. Safe to run again; quick when
# everything is there.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

apt_updated=
apt_install() {
    if [ -z "$apt_updated" ]; then
        as_root apt-get update -qq
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

if ! command -v tarantool >/dev/null 2>&1; then
    echo "==> installing tarantool (Debian package)"
    apt_install tarantool
fi
tarantool --version | head -1

if [ "${1:-}" = "--no-python" ]; then
    exit 0
fi

if ! command -v nginx >/dev/null 2>&1; then
    echo "==> installing nginx (Debian package, the load balancer of the scale-out tests)"
    apt_install nginx-light
fi
nginx -v 2>&1 | head -1

if ! command -v chromium >/dev/null 2>&1; then
    echo "==> installing chromium (Debian package, for the live page's browser test)"
    apt_install chromium
fi
chromium --version 2>/dev/null | head -1

if ! target/py/bin/python3 -c 'import websockets, kosoku' >/dev/null 2>&1 \
    || [ ! -x target/py/bin/kosoku ]; then
    echo "==> installing Python websockets and kosoku into target/py"
    if ! python3 -m venv target/py >/dev/null 2>&1; then
        apt_install python3-venv
        python3 -m venv target/py
    fi
    # kosoku needs Python >= 3.10 (Debian 12 has 3.11). Pinned: the conformance test expects
    # the exact case list of this version.
    target/py/bin/pip install --quiet --disable-pip-version-check 'websockets>=12' 'kosoku==0.1.0'
fi
target/py/bin/python3 -c 'import websockets; print("python websockets", websockets.__version__)'
target/py/bin/pip show kosoku 2>/dev/null | sed -n 's/^Version: /kosoku /p'
