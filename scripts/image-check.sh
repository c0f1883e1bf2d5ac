#!/usr/bin/env bash
# `make image-check`: runs the image `make image` built under podman-compose with the compose
# file (stream-only mode; Tarantool replaced by a stand-in where no registry serves the real
# one), and checks from the host: /health, the HEALTHCHECK, /ready, both streams replayed over
# the published port, and close 1001 plus exit 0 on `podman stop` (deploy/image-check.py says
# each step). Takes about a minute once the images exist. Not part of `make test`.
# Usage: scripts/image-check.sh [TAG]        (default planetmint-streams:latest)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-deps.sh --image
scripts/ensure-deps.sh >/dev/null   # the venv with `websockets` (target/py)
echo "==> building planetmint-streams-devchain (writes Planetmint-shaped blocks)"
cargo build --locked -p planetmint-streams-devchain --bin planetmint-streams-devchain
exec target/py/bin/python3 deploy/image-check.py --image "${1:-planetmint-streams:latest}" \
    --devchain target/debug/planetmint-streams-devchain
