#!/usr/bin/env bash
# `make demo`: a local Tarantool with Planetmint's schema, the blocks Planetmint 2.5.3 wrote with
# every operation kind (tests/fixtures/planetmint-2.5.3-all-ops) and then a new demo block of
# mixed kinds every second, and planetmint-streams serving them on Planetmint's ports (API 9984,
# streams 9985). When nats-server is installed (Debian: apt-get install nats-server) it runs too
# (JetStream, WebSocket; ports 4222 and 8080) and the node publishes both streams into it
# (docs/jetstream.md). Ctrl-C (or one SIGTERM to the process group) stops everything;
# subscribers get close 1001 with their last height.
#
# The demo chain is the same on every start and every machine (crates/devchain/src/demo.rs):
# the same keys, assets and blocks, so the key and asset the README names always show events.
# Tarantool's data stays in $DEMO_DIR between runs; a new run continues the same chain.
#
# Environment: DEMO_TARANTOOL_PORT (3303), DEMO_API_PORT (9984), DEMO_STREAMS_PORT (9985),
# DEMO_BIND_HOST (0.0.0.0), DEMO_BLOCKS_PER_SECOND (1), DEMO_DIR (.demo), DEMO_BIN_DIR (use
# the binaries in that directory instead of building release ones; the tests do),
# DEMO_NATS (auto: with nats-server when installed; off), DEMO_NATS_PORT (4222),
# DEMO_NATS_WEBSOCKET_PORT (8080).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-deps.sh --no-python
port="${DEMO_TARANTOOL_PORT:-3303}"
api_port="${DEMO_API_PORT:-9984}"
streams_port="${DEMO_STREAMS_PORT:-9985}"
bind_host="${DEMO_BIND_HOST:-0.0.0.0}"
rate="${DEMO_BLOCKS_PER_SECOND:-1}"
dir="${DEMO_DIR:-.demo}"
nats_port="${DEMO_NATS_PORT:-4222}"
nats_ws_port="${DEMO_NATS_WEBSOCKET_PORT:-8080}"
if [ -n "${DEMO_BIN_DIR:-}" ]; then
    bin="$DEMO_BIN_DIR"
else
    echo "==> building (release)"
    cargo build --release --locked --workspace --bins
    bin=target/release
fi
mkdir -p "$dir"
pids=()
node=
cleanup() {
    trap - EXIT INT TERM
    # The node first, and wait for it: it closes every subscriber with 1001 and drains. A stop
    # signal it got from the terminal or the process group as well changes nothing (more
    # SIGTERMs never cut its drain, see src/main.rs). Then the block writer and Tarantool.
    if [ -n "$node" ]; then
        kill -TERM "$node" 2>/dev/null || true
        wait "$node" 2>/dev/null || true
    fi
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM

if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port is already in use: set DEMO_TARANTOOL_PORT to a free port" >&2
    exit 1
fi
deploy/dev/tarantool.sh "$port" "$dir/tarantool" >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 300); do
    [ -f "$dir/tarantool/ready" ] && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
done
api="http://localhost:$api_port"
nats_env=()
nats_msg="
JetStream tier: off (install nats-server to see it: apt-get install nats-server)"
if [ "${DEMO_NATS:-auto}" != off ] && command -v nats-server >/dev/null 2>&1; then
    mkdir -p "$dir/nats"
    cat >"$dir/nats/nats.conf" <<CONF
listen: 127.0.0.1:$nats_port
jetstream { store_dir: "$(cd "$dir" && pwd)/nats/data" }
websocket { listen: "127.0.0.1:$nats_ws_port", no_tls: true }
CONF
    nats-server -c "$dir/nats/nats.conf" >"$dir/nats/nats-server.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$nats_port") 2>/dev/null && break
        sleep 0.1
    done
    nats_env=(env "PLANETMINT_STREAMS_NATS__URL=nats://127.0.0.1:$nats_port"
        "PLANETMINT_STREAMS_NATS__WEBSOCKET_URL=ws://127.0.0.1:$nats_ws_port")
    nats_msg="
JetStream tier: nats-server on nats://localhost:$nats_port (WebSocket ws://localhost:$nats_ws_port),
streams valid_transactions and valid_blocks (log: $dir/nats/nats-server.log). Watch them with
any NATS client (docs/jetstream.md): the \`nats\` CLI (github.com/nats-io/natscli, not in
Debian) or the Python example of docs/jetstream.md:
  nats --server nats://localhost:$nats_port sub valid_blocks
  nats --server nats://localhost:$nats_port stream info valid_transactions
  target/py/bin/pip install nats-py
  target/py/bin/python3 jetstream_follow.py $api --height 1
  curl -s '$api/api/v1/streams/valid_blocks/jetstream?height=5'
  speedracer: Connection('$api', cert=(any .crt, its .key)).subscribe('valid_blocks')"
fi
"${nats_env[@]}" "$bin/planetmint-streams" --tarantool "127.0.0.1:$port" \
    --api-bind "$bind_host:$api_port" --streams-bind "$bind_host:$streams_port" &
node=$!
"$bin/planetmint-streams-devchain" --tarantool "127.0.0.1:$port" --with-fixtures \
    --blocks-per-second "$rate" >"$dir/devchain.log" 2>&1 &
pids+=($!)
cat <<MSG

planetmint-streams is running:
  live page   $api/explorer
  discovery   curl -s $api/api/v1/
  health      curl -s $api/ready
  stream      ws://localhost:$streams_port/api/v1/streams/valid_transactions
              ws://localhost:$streams_port/api/v1/streams/valid_blocks

Watch it with the Python client in this repo (discovers the stream from the API):
  python3 -m venv target/py && target/py/bin/pip install websockets
  target/py/bin/python3 scripts/watch.py $api
or resume from the start of the chain:
  target/py/bin/python3 scripts/watch.py $api --from-height 0

Filters to try (the demo chain is the same on every start):
  a wallet key   7ZBF7dJLnaUJRWFizhBzwF4itCi6re6rL5vVoYSgJstg  (in most blocks)
  an asset id    dc0918a9e6a5c4225de6037c3a69cdfdf02eb44da7377c0097386e80a218b059
                 (created at height 13, transferred again and again; replay from height 0)
  e.g. ws://localhost:$streams_port/api/v1/streams/valid_transactions?public_key=7ZBF7dJLnaUJRWFizhBzwF4itCi6re6rL5vVoYSgJstg

A new block is committed every $(awk "BEGIN{print 1/$rate}")s (log: $dir/devchain.log). Ctrl-C stops it all.
$nats_msg
MSG
wait -n "$node" "${pids[@]}" || true
echo "a component stopped (see above and $dir/devchain.log); stopping the demo" >&2
