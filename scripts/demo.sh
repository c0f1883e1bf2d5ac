#!/usr/bin/env bash
# `make demo`: a local Tarantool with Planetmint's schema, the blocks Planetmint 2.5.3 wrote with
# every operation kind (tests/fixtures/planetmint-2.5.3-all-ops) and then a new demo block of
# mixed kinds every second, and planetmint-streams serving them
# on Planetmint's ports (API 9984, streams 9985). Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-deps.sh --no-python
port="${DEMO_TARANTOOL_PORT:-3303}"
rate="${DEMO_BLOCKS_PER_SECOND:-1}"
echo "==> building (release)"
cargo build --release --locked --workspace --bins
mkdir -p .demo
pids=()
cleanup() {
    trap - EXIT INT TERM
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port is already in use: set DEMO_TARANTOOL_PORT to a free port" >&2
    exit 1
fi
deploy/dev/tarantool.sh "$port" .demo/tarantool >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 300); do
    [ -f .demo/tarantool/ready ] && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
done
target/release/planetmint-streams --tarantool "127.0.0.1:$port" &
pids+=($!)
sleep 1
target/release/planetmint-streams-devchain --tarantool "127.0.0.1:$port" --with-fixtures \
    --blocks-per-second "$rate" --transactions 5 >.demo/devchain.log 2>&1 &
pids+=($!)
cat <<MSG

planetmint-streams is running:
  live page   http://localhost:9984/explorer
  discovery   curl -s http://localhost:9984/api/v1/
  health      curl -s http://localhost:9984/ready
  stream      ws://localhost:9985/api/v1/streams/valid_transactions
              ws://localhost:9985/api/v1/streams/valid_blocks

Watch it with the Python client in this repo (discovers the stream from the API):
  python3 -m venv target/py && target/py/bin/pip install websockets
  target/py/bin/python3 scripts/watch.py http://localhost:9984
or resume from the start of the chain:
  target/py/bin/python3 scripts/watch.py http://localhost:9984 --from-height 0

A new block is committed every $(awk "BEGIN{print 1/$rate}")s (log: .demo/devchain.log). Ctrl-C stops it all.
MSG
wait -n "${pids[@]}" || true
echo "a component stopped (see above and .demo/devchain.log); stopping the demo" >&2
