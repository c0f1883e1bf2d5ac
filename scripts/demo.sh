#!/usr/bin/env bash
# `make demo`: a local Tarantool with Planetmint's schema, the blocks Planetmint 2.5.3 wrote with
# every operation kind (tests/fixtures/planetmint-2.5.3-all-ops) and then a new demo block of
# mixed kinds every second, and planetmint-streams serving them
# on Planetmint's ports (API 9984, streams 9985). When nats-server is installed (Debian:
# apt-get install nats-server) it runs too (JetStream, WebSocket; ports 4222 and 8080) and the
# node publishes both streams into it (docs/jetstream.md). Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-deps.sh --no-python
port="${DEMO_TARANTOOL_PORT:-3303}"
rate="${DEMO_BLOCKS_PER_SECOND:-1}"
nats_port="${DEMO_NATS_PORT:-4222}"
nats_ws_port="${DEMO_NATS_WEBSOCKET_PORT:-8080}"
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
nats_env=()
nats_msg="
JetStream tier: off (install nats-server to see it: apt-get install nats-server)"
if command -v nats-server >/dev/null 2>&1; then
    mkdir -p .demo/nats
    cat >.demo/nats/nats.conf <<CONF
listen: 127.0.0.1:$nats_port
jetstream { store_dir: "$PWD/.demo/nats/data" }
websocket { listen: "127.0.0.1:$nats_ws_port", no_tls: true }
CONF
    nats-server -c .demo/nats/nats.conf >.demo/nats/nats-server.log 2>&1 &
    pids+=($!)
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$nats_port") 2>/dev/null && break
        sleep 0.1
    done
    nats_env=(env "PLANETMINT_STREAMS_NATS__URL=nats://127.0.0.1:$nats_port"
        "PLANETMINT_STREAMS_NATS__WEBSOCKET_URL=ws://127.0.0.1:$nats_ws_port")
    nats_msg="
JetStream tier: nats-server on nats://localhost:$nats_port (WebSocket ws://localhost:$nats_ws_port),
streams valid_transactions and valid_blocks (log: .demo/nats/nats-server.log). Watch them with
any NATS client (docs/jetstream.md): the \`nats\` CLI (github.com/nats-io/natscli, not in
Debian) or the Python example of docs/jetstream.md:
  nats --server nats://localhost:$nats_port sub valid_blocks
  nats --server nats://localhost:$nats_port stream info valid_transactions
  target/py/bin/pip install nats-py
  target/py/bin/python3 jetstream_follow.py http://localhost:9984 --height 1
  curl -s 'http://localhost:9984/api/v1/streams/valid_blocks/jetstream?height=5'
  speedracer: Connection('http://localhost:9984', cert=(any .crt, its .key)).subscribe('valid_blocks')"
fi
"${nats_env[@]}" target/release/planetmint-streams --tarantool "127.0.0.1:$port" &
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
$nats_msg
MSG
wait -n "${pids[@]}" || true
echo "a component stopped (see above and .demo/devchain.log); stopping the demo" >&2
