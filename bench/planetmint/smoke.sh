#!/usr/bin/env bash
# Smoke run of the Planetmint baseline: setup.sh (idempotent), then smoke.py with the venv's
# Python. Default: 3 subscribers, 5 blocks x 10 txs at 4 blocks/s; pass smoke.py options through.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${PM_VENV:-$(cd "$here/../.." && pwd)/target/planetmint-venv}"
"$here/setup.sh" >&2
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec timeout 600 "$venv/bin/python" "$here/smoke.py" "$@"
