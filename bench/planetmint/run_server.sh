#!/usr/bin/env bash
# Starts Planetmint 2.5.3's own WebSocket server with the benchmark feeder (see run_server.py
# --help), from the venv setup.sh made. stdout: JSON lines (ready, start, fed, ..., exit).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${PM_VENV:-$(cd "$here/../.." && pwd)/target/planetmint-venv}"
if [ ! -x "$venv/bin/python" ]; then
    echo "run_server.sh: no venv at $venv; run bench/planetmint/setup.sh first" >&2
    exit 2
fi
# 10,000 idle subscribers need more descriptors than the usual soft limit of 1024.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec "$venv/bin/python" "$here/run_server.py" "$@"
