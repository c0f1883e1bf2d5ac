#!/usr/bin/env bash
# Creates the venv Planetmint 2.5.3's own WebSocket server runs from, installing planetmint from
# PyPI (nothing of Planetmint's code lives in this repository). Idempotent: a venv that already
# imports planetmint 2.5.3's websocket server is left alone.
#
#   PYTHON=python3            interpreter for the venv (planetmint 2.5.3 wants >=3.9,<4)
#   PM_VENV=<repo>/target/planetmint-venv
#   PM_CONSTRAINTS=<this dir>/constraints.txt   ("none" lets pip pick the newest allowed deps)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${PM_VENV:-$root/target/planetmint-venv}"
python="${PYTHON:-python3}"
constraints="${PM_CONSTRAINTS:-$here/constraints.txt}"

check() {
    "$venv/bin/python" - <<'EOF'
import importlib.metadata, planetmint.web.websocket_server, aiohttp
# The distribution's version: the 2.5.3 wheel's planetmint/version.py still says "2.5.1".
assert importlib.metadata.version("planetmint") == "2.5.3", importlib.metadata.version("planetmint")
EOF
}

if [ -x "$venv/bin/python" ] && check 2>/dev/null; then
    echo "setup: $venv already has planetmint 2.5.3" >&2
else
    echo "setup: creating $venv and installing planetmint==2.5.3 from PyPI" >&2
    mkdir -p "$(dirname "$venv")"
    "$python" -m venv "$venv"
    pip=("$venv/bin/python" -m pip --disable-pip-version-check)
    cflag=()
    [ "$constraints" != none ] && cflag=(-c "$constraints")
    "${pip[@]}" install -q "${cflag[@]}" planetmint==2.5.3
    check
fi

"$venv/bin/python" - <<'EOF'
import json, sys, importlib.metadata as md
v = {"python": sys.version.split()[0], "executable": sys.executable}
for d in ("planetmint", "aiohttp", "planetmint-transactions", "setproctitle"):
    v[d] = md.version(d)
import planetmint.version
v["planetmint.version.__version__"] = planetmint.version.__version__
# As shipped, websocket_server only does `import aiohttp`, which does not load aiohttp.web, so its
# start()/init_app() die at aiohttp.web.Application(). run_server.py imports aiohttp.web first.
import aiohttp, planetmint.web.websocket_server as ws
try:
    ws.init_app(None)
    v["as_shipped"] = "init_app ran (aiohttp.web was already loaded)"
except AttributeError as e:
    v["as_shipped"] = f"AttributeError: {e}"
print(json.dumps(v))
EOF
