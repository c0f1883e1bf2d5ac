#!/usr/bin/env bash
# Benchmark scenarios S1-S5 of the "Performance" issue, side by side, in one run, plus the
# capacity scenario S7 and the burst check (planetmint-streams only); results and their reading
# in docs/benchmarks.md.
#
#   scripts/bench.sh                      every scenario against every server
#   BENCH_SERVERS="streams limit" BENCH_SCENARIOS="S1 S2" scripts/bench.sh
#   BENCH_SERVERS=streams BENCH_SCENARIOS=burst scripts/bench.sh   memory after connection bursts
#   BENCH_SERVERS=streams BENCH_SCENARIOS=S7 scripts/bench.sh      as many subscribers as fit
#   BENCH_SERVERS=streams BENCH_SCENARIOS=RPC100 scripts/bench.sh  one JSON-RPC connection with
#                                         100 subscriptions vs 100 URL connections (same filters)
#   BENCH_SERVERS=streams BENCH_SCENARIOS=T scripts/bench.sh       S1/S2 with include=transaction
#   BENCH_SERVERS=streams BENCH_SCENARIOS=CAPS scripts/bench.sh    one address at its caps on the
#                                         JSON-RPC channel and on URL streams, a bystander timing
#                                         each block; a close storm; empty-continuation floods
#   BENCH_SERVERS=streams BENCH_SCENARIOS=GROUP scripts/bench.sh   a stream-sea consumer group
#                                         of 100 against 100 URL subscribers
#   BENCH_SSE=0 ...                       S1 and S2 without their Server-Sent Events variant
#   BENCH_QUICK=1 scripts/bench.sh        tiny sizes: checks the script end to end (not results)
#   BENCH_BUILD=0 NODE_BIN=... scripts/bench.sh   runs binaries already built (no cargo build)
#
# Servers:
#   streams     planetmint-streams (target/release/planetmint-streams, its RSS measured), fed
#               through a real Tarantool (Planetmint's schema) by target/release/benchwriter
#   limit       target/release/limitserver: pre-encoded frames from memory (the limit baseline)
#   planetmint  Planetmint 2.5.3's own server: bench/planetmint/run_server.sh (see run_planetmint)
#
# Everything listens on 127.0.0.1 only; every process is bounded in time and is stopped by PID.
# Output: target/bench/results.json (machine, parameters, every tool's JSON line), a markdown
# table on stdout (also target/bench/results.md), logs in target/bench/logs/.
# Needs: cargo, tarantool (installed by scripts/ensure-deps.sh), python3; S3 needs about 20,500
# file descriptors (`ulimit -Hn` >= 20500 for the client and the server side together is not
# needed: they are separate processes, each needs ~10,300).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"

quick="${BENCH_QUICK:-0}"
servers="${BENCH_SERVERS:-streams limit planetmint}"
scenarios="${BENCH_SCENARIOS:-S1 S2 S3 S4 S5 H T S7 burst RPC100 CAPS GROUP}"
# S1 and S2 against planetmint-streams also run with Server-Sent Events readers (`wsload` on the
# http:// URL), right after the WebSocket run, each on a fresh Tarantool and node.
sse="${BENCH_SSE:-1}"
out="${BENCH_OUT:-$root/target/bench}"   # BENCH_OUT: another directory, for runs side by side
logs="$out/logs"
runs="$out/runs.jsonl"
bin="$root/target/release"
# The node's binary: NODE_BIN runs another build of it (e.g. one with another allocator for the
# burst check: `cargo build --release -p planetmint-streams --no-default-features`).
node_bin="${NODE_BIN:-$bin/planetmint-streams}"

# Scenario parameters (the issue's); BENCH_QUICK shrinks them to check the script.
if [ "$quick" = 1 ]; then
    : "${S1_SUBS:=5}" "${S1_BLOCKS:=20}" "${S1_TXS:=10}" "${S1_RATE:=20}"
    : "${S2_SUBS:=50}" "${S2_BLOCKS:=4}" "${S2_TXS:=50}"
    : "${S3_SUBS:=500}" "${S3_HOLD:=3}"
    : "${S4_SUBS:=20}" "${S4_STALLED:=2}" "${S4_BLOCKS:=300}" "${S4_TXS:=20}" "${S4_RATE:=100}"
    : "${S5_BLOCKS:=50}" "${S5_TXS:=100}"
    : "${H_SUBS:=20}" "${H_PREFILL:=50}" "${H_BLOCKS:=40}" "${H_TXS:=20}" "${H_RATE:=20}"
    : "${S7_SUBS:=500}" "${S7_BLOCKS:=5}" "${S7_TXS:=10}" "${S7_RATE:=1}"
    : "${BURST_SUBS:=500}" "${BURST_COUNT:=2}" "${BURST_HOLD:=2}" "${BURST_SETTLE:=5}" "${BURST_REST:=3}"
    : "${RPC_SUBS:=10}" "${RPC_BLOCKS:=20}" "${RPC_TXS:=10}" "${RPC_RATE:=20}" "${RPC_ROUNDS:=1}"
    : "${CAPS_RPC_CONNECTIONS:=4}" "${CAPS_URL_CONNECTIONS:=16}" "${CAPS_BLOCKS:=40}" "${CAPS_TXS:=20}" "${CAPS_RATE:=20}"
    : "${CAPS_STORM_CONNECTIONS:=8}" "${CAPS_FLOOD:=2}"
    : "${GROUP_MEMBERS:=10}" "${GROUP_BLOCKS:=10}" "${GROUP_TXS:=20}" "${GROUP_RATE:=0}"
else
    # S1 latency: 10 subscribers, 200 blocks x 10 txs at 20 blocks/s.
    : "${S1_SUBS:=10}" "${S1_BLOCKS:=200}" "${S1_TXS:=10}" "${S1_RATE:=20}"
    # S2 fan-out: 1000 subscribers, 12 blocks x 100 txs as fast as accepted.
    : "${S2_SUBS:=1000}" "${S2_BLOCKS:=12}" "${S2_TXS:=100}"
    # S3 memory: 10,000 idle subscribers held S3_HOLD s (> one 15 s ping round of ours).
    : "${S3_SUBS:=10000}" "${S3_HOLD:=20}"
    # S4 isolation: 100 subscribers + 5 never reading. Each never-reading client must be sent
    # more than the kernel buffers (~3 MB on loopback here) plus the server's queue limit
    # (256 blocks) for the limit to matter: 1500 x 20 txs is ~7.8 MB each, over 20 s.
    : "${S4_SUBS:=100}" "${S4_STALLED:=5}" "${S4_BLOCKS:=1500}" "${S4_TXS:=20}" "${S4_RATE:=75}"
    # S5 replay: from_height=0 over 100k transactions already in Tarantool.
    : "${S5_BLOCKS:=1000}" "${S5_TXS:=100}"
    # H replay herd: 500 subscribers resume with from_height=0 over 1,000 stored blocks x 20
    # txs while a writer commits 20 blocks/s (600 blocks: 30 s); against the same run with one
    # live subscriber and no herd. Planetmint's Tarantool CPU and the writer's commit latency.
    : "${H_SUBS:=500}" "${H_PREFILL:=1000}" "${H_BLOCKS:=600}" "${H_TXS:=20}" "${H_RATE:=20}"
    # S7 capacity: as many subscribers as this machine's 20,000 open files per process allow
    # (the node and wsload each need one descriptor per connection plus some), one block of
    # 10 transactions a second for a minute; every subscriber must get every block.
    : "${S7_SUBS:=19000}" "${S7_BLOCKS:=60}" "${S7_TXS:=10}" "${S7_RATE:=1}"
    # burst: BURST_COUNT times, BURST_SUBS idle subscribers connect, stay BURST_HOLD s and
    # leave; the node's RSS is then followed for BURST_SETTLE s (target: back within 20 % of
    # the level before the first burst within a minute, no ratchet from burst to burst).
    : "${BURST_SUBS:=15000}" "${BURST_COUNT:=3}" "${BURST_HOLD:=5}" "${BURST_SETTLE:=60}"
    # RPC100: the same RPC_SUBS subscriptions (valid_transactions, partition=i/RPC_SUBS: together
    # every transaction once) carried by RPC_SUBS URL connections, then by one JSON-RPC
    # connection; RPC_BLOCKS x RPC_TXS at RPC_RATE blocks/s each time, a fresh node each time.
    # RPC_ROUNDS rounds in the order url rpc, rpc url, ... so drift of a noisy machine evens out.
    : "${RPC_SUBS:=100}" "${RPC_BLOCKS:=600}" "${RPC_TXS:=20}" "${RPC_RATE:=20}" "${RPC_ROUNDS:=2}"
    # CAPS (issue 25), the node with its default limits: from 127.0.0.1, CAPS_RPC_CONNECTIONS
    # JSON-RPC connections x 256 subscriptions (batch=block, include=transaction) that never
    # read, then the URL equivalent (CAPS_URL_CONNECTIONS never-reading URL connections, the
    # per-address cap), then neither (baseline); each while CAPS_BLOCKS x CAPS_TXS are written
    # at CAPS_RATE blocks/s and a bystander on 127.0.0.2 times each block. Then the close
    # storm: CAPS_STORM_CONNECTIONS x 256 subscriptions on 4 shared public keys from 4
    # addresses (64 connections x 256 = the per-address cap of 16,384 each) closed at once
    # while a prober on 127.0.0.5 opens connections; and CAPS_FLOOD s of empty continuation
    # frames from one connection, on each kind of way in.
    : "${CAPS_RPC_CONNECTIONS:=64}" "${CAPS_URL_CONNECTIONS:=256}" "${CAPS_BLOCKS:=600}" "${CAPS_TXS:=20}" "${CAPS_RATE:=20}"
    : "${CAPS_STORM_CONNECTIONS:=256}" "${CAPS_FLOOD:=10}"
    # GROUP (issue 27): a stream-sea consumer group of GROUP_MEMBERS members, against the same
    # stream to GROUP_MEMBERS URL subscribers each getting every event, and split over them with
    # partition=i/n; GROUP_BLOCKS x GROUP_TXS written at GROUP_RATE blocks/s (0: back to back).
    : "${GROUP_MEMBERS:=100}" "${GROUP_BLOCKS:=200}" "${GROUP_TXS:=100}" "${GROUP_RATE:=0}"
fi
# The burst check's wait between the node's start and the first burst (its RSS before is the
# reference): longer than jemalloc's 10 s decay of what start-up freed.
: "${BURST_REST:=30}"
# S7's node limit (19,500 + 256 for the rest fits 20,000 open files) and its connect rate
# (above what 2 busy cores accept, so "time to accept all" is the node's; at 20,000/s a loaded
# machine's node answered part of them 408 after actix's 5 s request timeout).
: "${S7_MAX_CONNECTIONS:=19500}" "${S7_CONNECT_RATE:=3000}"
# Connect ramp (connections/s) and handshakes in flight; Planetmint listens with backlog 128.
: "${CONNECT_RATE:=2000}" "${CONNECT_CONCURRENCY:=256}"
: "${PM_CONNECT_RATE:=500}" "${PM_CONNECT_CONCURRENCY:=64}"
# Planetmint's S4 rate: its bench README finds 100-tx blocks sustainable only at ~2 blocks/s;
# by default it gets the same load as the others (set PM_S4_* to give it its own).
: "${PM_S4_BLOCKS:=$S4_BLOCKS}" "${PM_S4_TXS:=$S4_TXS}" "${PM_S4_RATE:=$S4_RATE}"

log() { printf '==> %s\n' "$*" >&2; }

# --- processes we start: stopped by PID on exit -----------------------------------------------
pids=()
cleanup() {
    trap - EXIT INT TERM
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT INT TERM

forget() { # forget PID: once reaped, a PID may be reused by another process
    local keep=() p
    for p in "${pids[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    pids=("${keep[@]}")
}

exited() { # exited PID: gone or a zombie waiting to be reaped
    local state
    state="$(ps -o stat= -p "$1" 2>/dev/null || true)"
    [ -z "$state" ] || [ "${state#Z}" != "$state" ]
}

stop_pid() { # stop_pid PID: SIGTERM (unless it already ended), SIGKILL after 10 s, reap
    local pid="$1" i
    if ! exited "$pid"; then
        kill "$pid" 2>/dev/null || true
        for i in $(seq 100); do
            exited "$pid" && break
            sleep 0.1
        done
        exited "$pid" || kill -9 "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    forget "$pid"
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_port() { # wait_port PORT SECONDS
    local i
    for i in $(seq $(($2 * 10))); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on 127.0.0.1:$1 after $2 s" >&2
    return 1
}

wait_file() { # wait_file PATH SECONDS
    local i
    for i in $(seq $(($2 * 10))); do
        [ -s "$1" ] && return 0
        sleep 0.1
    done
    echo "$1 did not appear within $2 s" >&2
    return 1
}

# record SERVER SCENARIO ROLE FILE: appends the tool's JSON line, tagged, to runs.jsonl.
record() {
    python3 - "$1" "$2" "$3" "$4" >>"$runs" <<'PY'
import json, sys
server, scenario, role, path = sys.argv[1:5]
try:
    lines = [json.loads(l) for l in open(path) if l.strip().startswith("{")]
except (OSError, ValueError) as err:
    lines = [{"error": f"unreadable output: {err}"}]
record = {"server": server, "scenario": scenario, "role": role,
          "result": lines[-1] if lines else {"error": "no JSON output (see logs)"}}
if len(lines) > 1:
    record["lines"] = lines
print(json.dumps(record))
PY
}

skip() { # skip SERVER SCENARIO REASON
    python3 -c 'import json,sys; print(json.dumps({"server":sys.argv[1],"scenario":sys.argv[2],"role":"skipped","result":{"reason":sys.argv[3]}}))' \
        "$1" "$2" "$3" >>"$runs"
    log "$1 $2 skipped: $3"
}

# wsload SERVER SCENARIO ROLE ARGS...: runs the load client (bounded by its own flags and by
# `timeout`), records its JSON line.
wsload() {
    local server="$1" scenario="$2" role="$3"
    shift 3
    local file="$logs/$server-$scenario-$role.json"
    timeout 900 "$bin/wsload" --label "$server/$scenario/$role" "$@" \
        >"$file" 2>"$logs/$server-$scenario-$role.log" || true
    sed -n '/^wsload\[/,$p' "$logs/$server-$scenario-$role.log" | grep -v '^wsload\[.*connected in' >&2 || true
    record "$server" "$scenario" "$role" "$file"
}

# --- planetmint-streams, fed through Tarantool ------------------------------------------------
tt_pid="" tt_port="" node_pid="" node_port=""

start_tarantool() { # start_tarantool NAME
    local dir="$out/tarantool-$1"
    rm -rf "$dir" && mkdir -p "$dir"
    tt_port="$(free_port)"
    cp deploy/tarantool/planetmint-schema.lua "$dir/"
    cat >"$dir/init.lua" <<LUA
box.cfg{ listen = '127.0.0.1:${tt_port}', work_dir = '${dir}', log = 'tarantool.log',
         memtx_memory = 1024 * 1024 * 1024 }
box.once('grant-guest', function()
    box.schema.user.grant('guest', 'read,write,execute,create,drop,alter', 'universe', nil, { if_not_exists = true })
end)
dofile('planetmint-schema.lua')
local ready = io.open('ready', 'w') ready:write('ok') ready:close()
LUA
    (cd "$dir" && exec tarantool init.lua) >"$logs/tarantool-$1.out" 2>&1 &
    tt_pid=$!
    pids+=("$tt_pid")
    wait_port "$tt_port" 30
    # The port opens before the schema is loaded: wait for init.lua's marker.
    local tries=0
    until [ -f "$dir/ready" ]; do
        tries=$((tries + 1))
        if [ "$tries" -gt 300 ]; then
            echo "Tarantool did not load the schema (see $dir/tarantool.log)" >&2
            return 1
        fi
        sleep 0.1
    done
}

start_node() { # start_node NAME (after start_tarantool)
    node_port="$(free_port)"
    local api_port
    api_port="$(free_port)"
    node_api_port="$api_port"
    # Every load client connects from loopback: lift the per-address limit (default 256) and
    # leave room for S3's 10,000 subscribers, unless NODE_DEFAULT_LIMITS=1 (CAPS: every
    # limit at its default). NODE_NICE: the node's CPU priority (as a systemd `Nice=` beside
    # Planetmint would set it).
    local limits=(PLANETMINT_STREAMS_STREAMS__MAX_CONNECTIONS_PER_IP=100000
        PLANETMINT_STREAMS_STREAMS__MAX_CONNECTIONS="${NODE_MAX_CONNECTIONS:-20000}")
    [ "${NODE_DEFAULT_LIMITS:-0}" = 1 ] && limits=()
    env PLANETMINT_STREAMS_LOG__LEVEL="${NODE_LOG_LEVEL:-warn}" "${limits[@]}" \
        nice -n "${NODE_NICE:-0}" "$node_bin" --tarantool "127.0.0.1:$tt_port" \
        --streams-bind "127.0.0.1:$node_port" --api-bind "127.0.0.1:$api_port" \
        --advertised-host 127.0.0.1 >"$logs/node-$1.log" 2>&1 &
    node_pid=$!
    pids+=("$node_pid")
    if python3 - "$api_port" <<'PY'; then return 0; fi
import sys, time, urllib.request
for _ in range(200):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/ready", timeout=1) as r:
            if r.status == 200:
                sys.exit(0)
    except Exception:
        pass
    time.sleep(0.1)
sys.exit(1)
PY
    echo "planetmint-streams did not become ready (see $logs/node-$1.log)" >&2
    return 1
}

cpu_seconds() { # cpu_seconds PID: user + system CPU seconds of a process so far (/proc)
    python3 - "$1" <<'PY'
import os, sys
fields = open(f"/proc/{sys.argv[1]}/stat").read().rsplit(")", 1)[1].split()
print((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"))
PY
}

# herd_measure ROLE: the replay herd scenario (H) with the herd (ROLE=herd) or without it
# (ROLE=baseline: one live subscriber). Records the writer's JSON, the load's JSON and the
# Tarantool CPU seconds spent from the first commit to the last delivery.
herd_measure() {
    local role="$1"
    start_tarantool "H-$role"
    timeout 900 "$bin/benchwriter" --tarantool "127.0.0.1:$tt_port" --prefill \
        --blocks "$H_PREFILL" --txs "$H_TXS" --seed 7 --label "streams/H/$role-prefill" \
        >"$logs/streams-H-$role-prefill.json" 2>"$logs/streams-H-$role-prefill.log"
    # Started after the prefill: its memory ring is empty, every replay reads Tarantool. Every
    # load client connects from 127.0.0.1, so the per-address replay limit is lifted; the
    # global read budget and concurrency limit keep their defaults.
    PLANETMINT_STREAMS_STREAMS__REPLAY_MAX_PER_IP=100000 start_node "H-$role"
    local ready="$out/ready-H-$role" url subs expect
    rm -f "$ready"
    if [ "$role" = herd ]; then
        url="ws://127.0.0.1:$node_port/api/v1/streams/valid_transactions?from_height=0"
        subs="$H_SUBS" expect=$(((H_PREFILL + H_BLOCKS) * H_TXS))
    else
        url="ws://127.0.0.1:$node_port/api/v1/streams/valid_transactions"
        subs=1 expect=$((H_BLOCKS * H_TXS))
    fi
    local cpu_before
    cpu_before="$(cpu_seconds "$tt_pid")"
    timeout 900 "$bin/benchwriter" --tarantool "127.0.0.1:$tt_port" --blocks "$H_BLOCKS" \
        --txs "$H_TXS" --rate "$H_RATE" --seed 8 --wait-file "$ready" --wait-timeout 300 \
        --label "streams/H/$role-writer" >"$logs/streams-H-$role-writer.json" \
        2>"$logs/streams-H-$role-writer.log" &
    local writer=$!
    pids+=("$writer")
    wsload streams H "$role" --url "$url" -n "$subs" --expect "$expect" --ready-file "$ready" \
        --server-pid "$node_pid" --connect-rate "$CONNECT_RATE" \
        --connect-concurrency "$CONNECT_CONCURRENCY" --duration 300
    wait "$writer" || true
    forget "$writer"
    local cpu_after
    cpu_after="$(cpu_seconds "$tt_pid")"
    cat "$logs/streams-H-$role-writer.log" >&2
    record streams H "$role-writer" "$logs/streams-H-$role-writer.json"
    python3 -c 'import json,sys; print(json.dumps({"tarantool_cpu_s": float(sys.argv[2]) - float(sys.argv[1])}))' \
        "$cpu_before" "$cpu_after" >"$logs/streams-H-$role-tarantool.json"
    record streams H "$role-tarantool" "$logs/streams-H-$role-tarantool.json"
    curl -s "http://127.0.0.1:$node_api_port/metrics" 2>/dev/null \
        | grep -E '^planetmint_streams_replay_(source_reads|source_blocks|cache_hits|waits)' \
        >"$logs/streams-H-$role-metrics.txt" || true
    stop_streams
}

stop_streams() {
    [ -n "$node_pid" ] && stop_pid "$node_pid"
    [ -n "$tt_pid" ] && stop_pid "$tt_pid"
    node_pid="" tt_pid=""
}

# start_writer SCENARIO ROLE BLOCKS TXS RATE: benchwriter in the background, waiting for the
# ready file $out/ready-SCENARIO-ROLE (removed first); its PID in $writer, its JSON in the logs.
start_writer() {
    local scenario="$1" role="$2"
    rm -f "$out/ready-$scenario-$role"
    timeout 900 "$bin/benchwriter" --tarantool "127.0.0.1:$tt_port" --blocks "$3" \
        --txs "$4" --rate "$5" --wait-file "$out/ready-$scenario-$role" --wait-timeout 300 \
        --label "streams/$scenario/$role" >"$logs/streams-$scenario-$role-writer.json" \
        2>"$logs/streams-$scenario-$role-writer.log" &
    writer=$!
    pids+=("$writer")
}

# finish_writer SCENARIO ROLE: waits for the writer started by start_writer, records its line.
finish_writer() {
    wait "$writer" || true
    forget "$writer"
    cat "$logs/streams-$1-$2-writer.log" >&2
    record streams "$1" "$2-writer" "$logs/streams-$1-$2-writer.json"
}

# streams_measure SCENARIO ROLE SUBS STALLED BLOCKS TXS RATE [WSLOAD ARGS...]: fresh Tarantool
# and node; wsload connects, then benchwriter commits the blocks. STREAM_SCHEME=http: the
# subscribers read Server-Sent Events instead of WebSockets; STREAM_QUERY: options.
streams_measure() {
    local scenario="$1" role="$2" subs="$3" stalled="$4" blocks="$5" txs="$6" rate="$7"
    shift 7
    start_tarantool "$scenario-$role"
    start_node "$scenario-$role"
    local ready="$out/ready-$scenario-$role" writer
    start_writer "$scenario" "$role" "$blocks" "$txs" "$rate"
    wsload streams "$scenario" "$role" \
        --url "${STREAM_SCHEME:-ws}://127.0.0.1:$node_port/api/v1/streams/valid_transactions${STREAM_QUERY:-}" \
        -n "$subs" --stalled "$stalled" --expect $((blocks * txs)) --ready-file "$ready" \
        --server-pid "$node_pid" --connect-rate "$CONNECT_RATE" \
        --connect-concurrency "$CONNECT_CONCURRENCY" "$@"
    finish_writer "$scenario" "$role"
    # What the node wrote per event (frame bytes, from its own counters).
    curl -s "http://127.0.0.1:$node_api_port/metrics" 2>/dev/null | python3 -c '
import json, re, sys
v = {}
for line in sys.stdin:
    m = re.match(r"planetmint_streams_(bytes|events)_sent_total\{stream=\"valid_transactions\"\} (\S+)", line)
    if m:
        v[m.group(1)] = float(m.group(2))
print(json.dumps({"bytes_sent": v.get("bytes", 0), "events_sent": v.get("events", 0),
                  "bytes_per_event": v.get("bytes", 0) / v["events"] if v.get("events") else None}))
' >"$logs/streams-$scenario-$role-bytes.json" || true
    record streams "$scenario" "$role-bytes" "$logs/streams-$scenario-$role-bytes.json"
    stop_streams
}

# channel_measure SCENARIO ROLE BLOCKS TXS RATE [RPCLOAD ARGS...]: fresh Tarantool and node;
# rpcload opens its subscriptions, then benchwriter commits BLOCKS x TXS at RATE blocks/s and
# rpcload counts them (expecting each once over all subscriptions): the server's RSS and CPU
# per delivered event.
channel_measure() {
    local scenario="$1" role="$2" blocks="$3" txs="$4" rate="$5" writer
    shift 5
    start_tarantool "$scenario-$role"
    start_node "$scenario-$role"
    start_writer "$scenario" "$role" "$blocks" "$txs" "$rate"
    channel "$scenario" "$role" --expect $((blocks * txs)) --ready-file "$out/ready-$scenario-$role" "$@"
    finish_writer "$scenario" "$role"
    stop_streams
}

# rpc_measure CARRIER ROUND: RPC_SUBS partitioned subscriptions over RPC_SUBS URL connections
# (url) or one JSON-RPC connection (rpc).
rpc_measure() {
    channel_measure RPC100 "$1-$2" "$RPC_BLOCKS" "$RPC_TXS" "$RPC_RATE" \
        --carrier "$1" -n "$RPC_SUBS" --duration 300
}

# channel RUN SCENARIO ROLE ARGS...: runs rpcload (bounded by `timeout`), records its JSON line.
channel() {
    local scenario="$1" role="$2"
    shift 2
    local file="$logs/streams-$scenario-$role.json"
    timeout 900 "$bin/rpcload" --label "streams/$scenario/$role" --base "ws://127.0.0.1:$node_port" \
        --server-pid "$node_pid" "$@" >"$file" 2>"$logs/streams-$scenario-$role.log" || true
    cat "$logs/streams-$scenario-$role.log" >&2
    record streams "$scenario" "$role" "$file"
}

# node_metrics SCENARIO ROLE: the node's refusal and disconnect counters, as a JSON line.
node_metrics() {
    curl -s "http://127.0.0.1:$node_api_port/metrics" 2>/dev/null | python3 -c '
import json, re, sys
out = {}
for line in sys.stdin:
    m = re.match(r"planetmint_streams_(disconnects_total|address_limit_refusals_total|rejected_connections_total)\{(.*)\} (\S+)", line)
    if m and float(m.group(3)):
        out[m.group(1) + "{" + m.group(2) + "}"] = float(m.group(3))
print(json.dumps({"metrics": out}))
' >"$logs/streams-$1-$2-metrics.json" || true
    record streams "$1" "$2-metrics" "$logs/streams-$1-$2-metrics.json"
}

# rss_now PID: VmRSS in KiB.
rss_now() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# caps_measure ROLE: fresh Tarantool and node with every default limit. ROLE rpc: from
# 127.0.0.1, CAPS_RPC_CONNECTIONS JSON-RPC connections x 256 subscriptions (batch=block,
# include=transaction) that never read; url: CAPS_URL_CONNECTIONS URL connections with the
# same options that never read; baseline: neither. Then a bystander on 127.0.0.2 with the same
# options connects, the writer commits CAPS_BLOCKS x CAPS_TXS at CAPS_RATE blocks/s, and the
# bystander times every block; the hostile connections are held until the writer is done and
# a little more, then closed at once, and the node's RSS read `settle` later.
caps_measure() {
    local role="$1" options="batch=block&include=transaction"
    start_tarantool "CAPS-$role"
    NODE_DEFAULT_LIMITS=1 start_node "CAPS-$role"
    local hold=$((CAPS_BLOCKS / (CAPS_RATE > 0 ? CAPS_RATE : 1) + 15))
    local ready="$out/ready-CAPS-$role" bystander_ready="$out/ready-CAPS-$role-bystander" hostile=""
    rm -f "$ready"
    local rss_before
    rss_before="$(rss_now "$node_pid")"
    case "$role" in
    rpc)
        channel CAPS "$role" --carrier rpc -n $((CAPS_RPC_CONNECTIONS * 256)) \
            --connections "$CAPS_RPC_CONNECTIONS" --split none --query "$options" --unread \
            --duration "$hold" --ready-file "$ready" --settle 5 &
        hostile=$!
        ;;
    url)
        channel CAPS "$role" --carrier url -n "$CAPS_URL_CONNECTIONS" --split none \
            --query "$options" --unread --duration "$hold" --ready-file "$ready" --settle 5 &
        hostile=$!
        ;;
    esac
    if [ -n "$hostile" ]; then
        pids+=("$hostile")
        # Until every hostile subscription is confirmed (or rpcload gave up).
        local i
        for i in $(seq 3000); do
            [ -s "$ready" ] && break
            exited "$hostile" && break
            sleep 0.1
        done
    fi
    local writer
    start_writer CAPS "$role-bystander" "$CAPS_BLOCKS" "$CAPS_TXS" "$CAPS_RATE"
    wsload streams CAPS "$role-bystander" \
        --url "ws://127.0.0.1:$node_port/api/v1/streams/valid_transactions?$options" \
        --source-ip 127.0.0.2 -n 1 --expect $((CAPS_BLOCKS * CAPS_TXS)) \
        --ready-file "$bystander_ready" --duration $((hold + 60)) --quiet 10
    finish_writer CAPS "$role-bystander"
    if [ -n "$hostile" ]; then
        wait "$hostile" || true
        forget "$hostile"
    else
        # No hostile client: the node's RSS before, at the end and 5 s later, for comparison.
        local rss_end
        rss_end="$(rss_now "$node_pid")"
        sleep 5
        printf '{"server_rss": {"before_kib": %s, "end_kib": %s, "after_kib": %s}}\n' \
            "$rss_before" "$rss_end" "$(rss_now "$node_pid")" >"$logs/streams-CAPS-$role.json"
        record streams CAPS "$role" "$logs/streams-CAPS-$role.json"
    fi
    node_metrics CAPS "$role"
    stop_streams
}

# caps_storm: 4 x CAPS_STORM_CONNECTIONS/4 JSON-RPC connections from 127.0.0.1-4, 256
# subscriptions each on 4 shared public keys, closed at once while a prober on 127.0.0.5
# connects and subscribes again and again (from 2 s before to 10 s after); no blocks.
caps_storm() {
    start_tarantool CAPS-storm
    NODE_DEFAULT_LIMITS=1 start_node CAPS-storm
    channel CAPS storm --carrier rpc -n $((CAPS_STORM_CONNECTIONS * 256)) \
        --connections "$CAPS_STORM_CONNECTIONS" --source-ips 4 --split none --public-keys 4 \
        --unread --duration 3 --probe-source 127.0.0.5 --probe-after 10 --settle 3
    node_metrics CAPS storm
    stop_streams
}

# caps_flood CARRIER: one connection (a JSON-RPC or a URL stream connection) sends a text
# frame that never ends and empty continuation frames for CAPS_FLOOD s; the node's CPU.
caps_flood() {
    start_tarantool "CAPS-flood-$1"
    NODE_DEFAULT_LIMITS=1 start_node "CAPS-flood-$1"
    channel CAPS "flood-$1" --carrier "$1" --flood "$CAPS_FLOOD" --settle 3
    node_metrics CAPS "flood-$1"
    stop_streams
}

# group_measure ROLE: ROLE group: GROUP_MEMBERS stream-sea connections in one consumer group;
# partition: as many URL connections with partition=i/n; all: as many URL subscribers each
# getting everything (wsload). Fresh Tarantool and node each time, then the writer commits.
group_measure() {
    case "$1" in
    all)
        streams_measure GROUP all "$GROUP_MEMBERS" 0 "$GROUP_BLOCKS" "$GROUP_TXS" "$GROUP_RATE" \
            --duration 300 --quiet 10
        ;;
    group | partition)
        local split=partition carrier=url
        if [ "$1" = group ]; then split=none carrier=group; fi
        channel_measure GROUP "$1" "$GROUP_BLOCKS" "$GROUP_TXS" "$GROUP_RATE" \
            --carrier "$carrier" -n "$GROUP_MEMBERS" --split "$split" --duration 300 --quiet 10
        ;;
    esac
}

run_streams() { # run_streams SCENARIO
    case "$1" in
    S1)
        streams_measure S1 load "$S1_SUBS" 0 "$S1_BLOCKS" "$S1_TXS" "$S1_RATE" --duration 120
        if [ "$sse" = 1 ]; then
            STREAM_SCHEME=http streams_measure S1 sse "$S1_SUBS" 0 "$S1_BLOCKS" "$S1_TXS" "$S1_RATE" --duration 120
        fi
        ;;
    S2)
        streams_measure S2 load "$S2_SUBS" 0 "$S2_BLOCKS" "$S2_TXS" 0 --duration 120
        if [ "$sse" = 1 ]; then
            STREAM_SCHEME=http streams_measure S2 sse "$S2_SUBS" 0 "$S2_BLOCKS" "$S2_TXS" 0 --duration 120
        fi
        ;;
    CAPS)
        caps_measure rpc
        caps_measure url
        caps_measure baseline
        caps_storm
        caps_flood rpc
        caps_flood url
        ;;
    GROUP)
        group_measure group
        group_measure partition
        group_measure all
        ;;
    T) # include=transaction: the S1 and S2 shapes without and with whole transactions.
        STREAM_QUERY="" streams_measure T S1-plain "$S1_SUBS" 0 "$S1_BLOCKS" "$S1_TXS" "$S1_RATE" --duration 120
        STREAM_QUERY="?include=transaction" streams_measure T S1-include "$S1_SUBS" 0 "$S1_BLOCKS" "$S1_TXS" "$S1_RATE" --duration 120
        STREAM_QUERY="" streams_measure T S2-plain "$S2_SUBS" 0 "$S2_BLOCKS" "$S2_TXS" 0 --duration 120
        STREAM_QUERY="?include=transaction" streams_measure T S2-include "$S2_SUBS" 0 "$S2_BLOCKS" "$S2_TXS" 0 --duration 120
        ;;
    S3)
        start_tarantool S3
        start_node S3
        wsload streams S3 idle --url "ws://127.0.0.1:$node_port/api/v1/streams/valid_transactions" \
            -n "$S3_SUBS" --mode idle --duration "$S3_HOLD" --server-pid "$node_pid" --settle 3 \
            --connect-rate "$CONNECT_RATE" --connect-concurrency "$CONNECT_CONCURRENCY"
        stop_streams
        ;;
    S4)
        streams_measure S4 load "$S4_SUBS" "$S4_STALLED" "$S4_BLOCKS" "$S4_TXS" "$S4_RATE" --duration 300
        streams_measure S4 baseline "$S4_SUBS" 0 "$S4_BLOCKS" "$S4_TXS" "$S4_RATE" --duration 300
        ;;
    S7)
        NODE_MAX_CONNECTIONS="$S7_MAX_CONNECTIONS" CONNECT_RATE="$S7_CONNECT_RATE" \
            streams_measure S7 load "$S7_SUBS" 0 "$S7_BLOCKS" "$S7_TXS" "$S7_RATE" \
            --duration $((S7_BLOCKS / (S7_RATE > 0 ? S7_RATE : 1) + 120)) --read-buffer 4096 --quiet 10
        ;;
    burst) streams_burst ;;
    RPC100)
        local round
        for round in $(seq "$RPC_ROUNDS"); do
            if [ $((round % 2)) = 1 ]; then
                rpc_measure url "$round"
                rpc_measure rpc "$round"
            else
                rpc_measure rpc "$round"
                rpc_measure url "$round"
            fi
        done
        ;;
    S5)
        start_tarantool S5
        timeout 900 "$bin/benchwriter" --tarantool "127.0.0.1:$tt_port" --prefill \
            --blocks "$S5_BLOCKS" --txs "$S5_TXS" --label streams/S5/prefill \
            >"$logs/streams-S5-prefill.json" 2>"$logs/streams-S5-prefill.log"
        record streams S5 prefill "$logs/streams-S5-prefill.json"
        # Started after the prefill: nothing is in its memory ring, the replay reads Tarantool.
        start_node S5
        wsload streams S5 load \
            --url "ws://127.0.0.1:$node_port/api/v1/streams/valid_transactions?from_height=0" \
            -n 1 --expect $((S5_BLOCKS * S5_TXS)) --duration 300 --server-pid "$node_pid"
        stop_streams
        ;;
    H)
        herd_measure herd
        herd_measure baseline
        ;;
    esac
}

# rss_follow PID SECONDS BASELINE_KIB [API_PORT]: the node's VmRSS every second for SECONDS
# (JSON line): when it first came within 20 % of BASELINE_KIB, where it ended, relative to the
# baseline; with API_PORT, also jemalloc's statistics from /metrics at the start and the end
# (planetmint_streams_allocator_bytes: what our structures hold against what jemalloc keeps).
rss_follow() {
    python3 - "$@" <<'PY'
import json, sys, time
pid, seconds, baseline = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
api = sys.argv[4] if len(sys.argv) > 4 else None
def rss():
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
def allocator():
    if api is None:
        return None
    import urllib.request
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{api}/metrics", timeout=5) as r:
            text = r.read().decode()
    except Exception:
        return None
    out = {}
    for line in text.splitlines():
        if line.startswith("planetmint_streams_allocator_bytes{"):
            kind = line.split('kind="', 1)[1].split('"', 1)[0]
            out[kind] = int(float(line.rsplit(" ", 1)[1]))
    return out or None
samples, start = [], time.monotonic()
alloc_start = allocator()
for i in range(seconds + 1):
    time.sleep(max(0.0, start + i - time.monotonic()))
    samples.append(rss())
alloc_end = allocator()
good = [i for i, v in enumerate(samples) if v is not None and v <= baseline * 1.2]
end = samples[-1]
print(json.dumps({"tool": "rss_follow", "pid": pid, "baseline_kib": baseline,
                  "start_kib": samples[0], "end_kib": end, "seconds": seconds,
                  "within_20pct_after_s": good[0] if good else None,
                  "end_over_baseline": end / baseline if end and baseline else None,
                  "allocator_start": alloc_start, "allocator_end": alloc_end,
                  "samples_kib": samples}))
PY
}

# memory_sampler PID API_PORT FILE: every second, the node's VmRSS (RssAnon, RssFile) and
# jemalloc's statistics (from /metrics) as one JSON line in FILE, until stopped (the burst check's timeline: before,
# during and after each burst).
memory_sampler() {
    python3 - "$@" <<'PY' &
import json, sys, time, urllib.request
pid, api, path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
start = time.monotonic()
with open(path, "w", buffering=1) as out:
    while True:
        row = {"t": round(time.monotonic() - start, 1)}
        try:
            for line in open(f"/proc/{pid}/status"):
                for field in ("VmRSS", "RssAnon", "RssFile"):
                    if line.startswith(field + ":"):
                        row[field] = int(line.split()[1])
        except OSError:
            break
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{api}/metrics", timeout=2) as r:
                for line in r.read().decode().splitlines():
                    if line.startswith("planetmint_streams_allocator_bytes{"):
                        kind = line.split('kind="', 1)[1].split('"', 1)[0]
                        row[kind] = int(float(line.rsplit(" ", 1)[1]))
                    elif line.startswith("planetmint_streams_subscribers{"):
                        row["subscribers"] = row.get("subscribers", 0) + int(float(line.rsplit(" ", 1)[1]))
        except Exception:
            pass
        out.write(json.dumps(row) + "\n")
        time.sleep(max(0.0, 1.0 - (time.monotonic() - start) % 1.0))
PY
    pids+=("$!")
}

# streams_burst: one node; BURST_COUNT bursts of BURST_SUBS idle subscribers, each followed by
# BURST_SETTLE s of RSS readings.
streams_burst() {
    start_tarantool burst
    start_node burst
    local i baseline="" url="ws://127.0.0.1:$node_port/api/v1/streams/valid_transactions"
    memory_sampler "$node_pid" "$node_api_port" "$logs/streams-burst-memory.jsonl"
    local sampler="${pids[-1]}"
    # The node at rest: memory freed at start (configuration, documents) purged first, so the
    # level the bursts are compared with is the idle node's, not its start-up's.
    sleep "$BURST_REST"
    for i in $(seq "$BURST_COUNT"); do
        wsload streams burst "idle-$i" --url "$url" -n "$BURST_SUBS" --mode idle \
            --duration "$BURST_HOLD" --server-pid "$node_pid" --settle 2 \
            --connect-rate "$CONNECT_RATE" --connect-concurrency "$CONNECT_CONCURRENCY"
        if [ -z "$baseline" ]; then
            baseline="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["server_rss"]["before_kib"])' \
                "$logs/streams-burst-idle-$i.json" 2>/dev/null || true)"
            [ -n "$baseline" ] || baseline="$(awk '/^VmRSS:/ {print $2}' "/proc/$node_pid/status")"
        fi
        rss_follow "$node_pid" "$BURST_SETTLE" "$baseline" "$node_api_port" >"$logs/streams-burst-after-$i.json"
        record streams burst "after-$i" "$logs/streams-burst-after-$i.json"
        python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("burst %s: RSS %s KiB right after, %s KiB after %s s (%.2fx the %s KiB before the first burst; within 20 %% after %s s)" % (sys.argv[2], r["start_kib"], r["end_kib"], r["seconds"], r["end_over_baseline"] or 0, r["baseline_kib"], r["within_20pct_after_s"]))' \
            "$logs/streams-burst-after-$i.json" "$i" >&2 || true
    done
    stop_pid "$sampler"
    stop_streams
}

# --- the limit baseline -----------------------------------------------------------------------
# limit_measure SCENARIO ROLE SUBS STALLED BLOCKS TXS RATE [WSLOAD ARGS...]
limit_measure() {
    local scenario="$1" role="$2" subs="$3" stalled="$4" blocks="$5" txs="$6" rate="$7"
    shift 7
    local addr="$out/limit-$scenario-$role.addr"
    rm -f "$addr"
    # Not wrapped in `timeout`: its PID must be the server's (RSS); --max-run bounds it.
    "$bin/limitserver" --bind 127.0.0.1:0 --addr-file "$addr" \
        --subscribers $((subs + stalled)) --blocks "$blocks" --txs "$txs" --rate "$rate" \
        --max-run 900 >"$logs/limit-$scenario-$role-server.json" 2>"$logs/limit-$scenario-$role-server.log" &
    local server=$!
    pids+=("$server")
    wait_file "$addr" 30
    wsload limit "$scenario" "$role" --url "ws://$(cat "$addr")/api/v1/streams/valid_transactions" \
        -n "$subs" --stalled "$stalled" --server-pid "$server" --connect-rate "$CONNECT_RATE" \
        --connect-concurrency "$CONNECT_CONCURRENCY" "$@"
    stop_pid "$server"
    record limit "$scenario" "$role-server" "$logs/limit-$scenario-$role-server.json"
}

run_limit() { # run_limit SCENARIO
    case "$1" in
    S1) limit_measure S1 load "$S1_SUBS" 0 "$S1_BLOCKS" "$S1_TXS" "$S1_RATE" --expect $((S1_BLOCKS * S1_TXS)) --duration 120 ;;
    S2) limit_measure S2 load "$S2_SUBS" 0 "$S2_BLOCKS" "$S2_TXS" 0 --expect $((S2_BLOCKS * S2_TXS)) --duration 120 ;;
    S3) limit_measure S3 idle "$S3_SUBS" 0 0 1 0 --mode idle --duration "$S3_HOLD" --settle 3 ;;
    S4)
        limit_measure S4 load "$S4_SUBS" "$S4_STALLED" "$S4_BLOCKS" "$S4_TXS" "$S4_RATE" --expect $((S4_BLOCKS * S4_TXS)) --duration 300
        limit_measure S4 baseline "$S4_SUBS" 0 "$S4_BLOCKS" "$S4_TXS" "$S4_RATE" --expect $((S4_BLOCKS * S4_TXS)) --duration 300
        ;;
    S7 | burst | T | RPC100 | CAPS | GROUP) skip limit "$1" "planetmint-streams only" ;;
    S5) limit_measure S5 load 1 0 "$S5_BLOCKS" "$S5_TXS" 0 --expect $((S5_BLOCKS * S5_TXS)) --duration 300 ;;
    H) skip limit H "the limit server reads no database" ;;
    esac
}

# --- Planetmint 2.5.3's own server -------------------------------------------------------------
# The harness (bench/planetmint/README.md):
# run_server.sh --host H --port P --subscribers N --blocks B --txs T --rate R [--exit-after S]
# [--max-seconds S] [--start-timeout S] prints JSON lines on stdout; {"event":"ready","pid":...}
# names the planetmint_ws process whose RSS is measured. It starts feeding once N clients are
# subscribed to the transactions stream, like limitserver. Transaction ids are the same
# commit-time encoding (time_ns + index in block, 64 hex), so wsload measures it the same way.
pm_setup_done=0
planetmint_measure() { # planetmint_measure SCENARIO ROLE SUBS STALLED BLOCKS TXS RATE [WSLOAD ARGS...]
    local scenario="$1" role="$2" subs="$3" stalled="$4" blocks="$5" txs="$6" rate="$7"
    shift 7
    local script="$root/bench/planetmint/run_server.sh"
    if [ ! -x "$script" ]; then
        skip planetmint "$scenario" "bench/planetmint/run_server.sh not found (Planetmint harness not merged)"
        return 0
    fi
    if [ "$pm_setup_done" = 0 ]; then
        "$root/bench/planetmint/setup.sh" >&2
        pm_setup_done=1
    fi
    local port lines="$logs/planetmint-$scenario-$role-server.jsonl"
    port="$(free_port)"
    local extra=(--exit-after 600 --max-seconds 1200 --start-timeout 600)
    "$script" --host 127.0.0.1 --port "$port" --subscribers $((subs + stalled)) \
        --blocks "$blocks" --txs "$txs" --rate "$rate" "${extra[@]}" \
        >"$lines" 2>"$logs/planetmint-$scenario-$role-server.log" &
    local server=$!
    pids+=("$server")
    local i pm_pid=""
    for i in $(seq 600); do
        pm_pid="$(python3 -c 'import json,sys
for l in open(sys.argv[1]):
    try: e=json.loads(l)
    except ValueError: continue
    if e.get("event")=="ready": print(e["pid"]); break' "$lines" 2>/dev/null || true)"
        [ -n "$pm_pid" ] && break
        sleep 0.1
    done
    if [ -z "$pm_pid" ]; then
        stop_pid "$server"
        skip planetmint "$scenario" "run_server.sh did not print its ready line (see logs)"
        return 0
    fi
    wsload planetmint "$scenario" "$role" --url "ws://127.0.0.1:$port/api/v1/streams/valid_transactions" \
        -n "$subs" --stalled "$stalled" --server-pid "$pm_pid" --connect-rate "$PM_CONNECT_RATE" \
        --connect-concurrency "$PM_CONNECT_CONCURRENCY" "$@"
    stop_pid "$server"
    record planetmint "$scenario" "$role-server" "$lines"
}

run_planetmint() { # run_planetmint SCENARIO: the same parameters as the other servers
    case "$1" in
    S1) planetmint_measure S1 load "$S1_SUBS" 0 "$S1_BLOCKS" "$S1_TXS" "$S1_RATE" --expect $((S1_BLOCKS * S1_TXS)) --duration 120 ;;
    S2) planetmint_measure S2 load "$S2_SUBS" 0 "$S2_BLOCKS" "$S2_TXS" 0 --expect $((S2_BLOCKS * S2_TXS)) --duration 300 --quiet 10 ;;
    S3) planetmint_measure S3 idle "$S3_SUBS" 0 0 1 0 --mode idle --duration "$S3_HOLD" --settle 3 ;;
    S4)
        planetmint_measure S4 load "$S4_SUBS" "$S4_STALLED" "$PM_S4_BLOCKS" "$PM_S4_TXS" "$PM_S4_RATE" \
            --expect $((PM_S4_BLOCKS * PM_S4_TXS)) --duration 300 --quiet 10
        planetmint_measure S4 baseline "$S4_SUBS" 0 "$PM_S4_BLOCKS" "$PM_S4_TXS" "$PM_S4_RATE" \
            --expect $((PM_S4_BLOCKS * PM_S4_TXS)) --duration 300 --quiet 10
        ;;
    S5) skip planetmint S5 "Planetmint's server has no replay (from_height)" ;;
    H) skip planetmint H "Planetmint's server has no replay (from_height)" ;;
    T) skip planetmint T "Planetmint's server has no include=transaction" ;;
    S7 | burst) skip planetmint "$1" "planetmint-streams only" ;;
    RPC100 | CAPS) skip planetmint "$1" "Planetmint's server has no JSON-RPC channel" ;;
    GROUP) skip planetmint GROUP "Planetmint's server has no consumer groups" ;;
    esac
}

# --- the run ----------------------------------------------------------------------------------
mkdir -p "$logs"
: >"$runs"
scripts/ensure-deps.sh --no-python >&2
command -v python3 >/dev/null || { echo "python3 is needed (apt-get install -y python3)" >&2; exit 1; }
if [ "${BENCH_BUILD:-1}" = 1 ]; then
    log "building the tools (release)"
    cargo build --release --locked -p planetmint-streams -p planetmint-streams-bench --bins >&2
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
for need in "S3:$S3_SUBS" "S7:$S7_SUBS" "burst:$BURST_SUBS"; do
    case " $scenarios " in *" ${need%%:*} "*) ;; *) continue ;; esac
    if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((${need#*:} + 300)) ]; then
        log "warning: open-file limit $(ulimit -n) is below ${need%%:*}'s ${need#*:} connections; raise ulimit -Hn"
    fi
done

for scenario in $scenarios; do
    for server in $servers; do
        log "$scenario against $server"
        "run_$server" "$scenario"
    done
done

log "results: $out/results.json"
python3 - "$runs" "$out" "$quick" <<'PY'
import json, os, platform, subprocess, sys

runs_path, out, quick = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
runs = [json.loads(l) for l in open(runs_path) if l.strip()]

def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception:
        return ""

machine = {
    "cpu": sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip(),
    "cpus": os.cpu_count(),
    "memory": sh("grep MemTotal /proc/meminfo | awk '{print $2\" kB\"}'"),
    "kernel": platform.release(),
    "tarantool": sh("tarantool --version | head -1"),
    "rustc": sh("rustc --version"),
    "commit": sh("git rev-parse --short HEAD"),
    "quick": quick,
}
params = {k: v for k, v in os.environ.items() if k[:3] in ("S1_", "S2_", "S3_", "S4_", "S5_", "S7_") or k.startswith(("PM_S4_", "BURST_", "H_", "RPC_", "CAPS_", "GROUP_", "BENCH_SSE"))}
json.dump({"machine": machine, "params": params, "runs": runs}, open(f"{out}/results.json", "w"), indent=1)

def get(server, scenario, role):
    for r in runs:
        if (r["server"], r["scenario"], r["role"]) == (server, scenario, role):
            return r["result"]
    for r in runs:
        if (r["server"], r["scenario"], r["role"]) == (server, scenario, "skipped"):
            return {"skipped": r["result"]["reason"]}
    return None

servers = ["streams", "limit", "planetmint"]
rows = []  # (scenario, metric, fn(result_by_role) -> number or None, higher_is_better)

def load(s, sc, role="load"):
    return get(s, sc, role)

def metric(sc, name, role, fn):
    rows.append((sc, name, role, fn))

for role, prefix in (("load", ""), ("sse", "SSE: ")):  # WebSocket subscribers, then SSE readers
    metric("S1", f"{prefix}p50 latency ms", role, lambda r: r["latency"]["p50_ms"])
    metric("S1", f"{prefix}p99 latency ms", role, lambda r: r["latency"]["p99_ms"])
    metric("S1", f"{prefix}lost events", role, lambda r: r["lost"])
for role, prefix in (("load", ""), ("sse", "SSE: ")):
    metric("S2", f"{prefix}delivered events/s (first to last arrival)", role, lambda r: r["events_per_s"])
    metric("S2", f"{prefix}delivered events/s (first commit to last arrival)", role, lambda r: r["events_per_s_since_first_commit"])
    metric("S2", f"{prefix}complete subscribers", role, lambda r: r["complete"])
metric("S2", "SSE: p50 / p99 latency ms", "sse", lambda r: f'{r["latency"]["p50_ms"]:.0f} / {r["latency"]["p99_ms"]:.0f}')
metric("S2", "bytes per event (WebSocket)", "load-bytes", lambda r: r["bytes_per_event"])
metric("S2", "bytes per event (SSE)", "sse-bytes", lambda r: r["bytes_per_event"])
for shape, include in (("S1", "plain"), ("S1", "include"), ("S2", "plain"), ("S2", "include")):
    role = f"{shape}-{include}"
    label = f"{shape} {'with' if include == 'include' else 'without'} include=transaction"
    metric("T", f"{label}: p50 latency ms", role, lambda r: r["latency"]["p50_ms"])
    metric("T", f"{label}: p99 latency ms", role, lambda r: r["latency"]["p99_ms"])
    metric("T", f"{label}: delivered events/s", role, lambda r: r["events_per_s"])
    metric("T", f"{label}: lost events", role, lambda r: r["lost"])
    metric("T", f"{label}: bytes per event", f"{role}-bytes", lambda r: r["bytes_per_event"])
metric("S3", "open at end", "idle", lambda r: r["open_at_end"])
metric("S3", "RSS bytes per idle connection", "idle", lambda r: r["server_rss"]["per_connection_bytes"])
metric("S4", "complete subscribers (with slow)", "load", lambda r: r["complete"])
metric("S4", "lost events (with slow)", "load", lambda r: r["lost"])
metric("S4", "p99 ms with slow", "load", lambda r: r["latency"]["p99_ms"])
metric("S4", "p99 ms without slow", "baseline", lambda r: r["latency"]["p99_ms"])
metric("S4", "slow clients closed by server", "load", lambda r: r["stalled_closed_by_server"])
metric("S4", "peak server RSS MiB (with slow)", "load", lambda r: r["server_rss"]["peak_kib"] / 1024)
metric("S5", "replayed tx/s (since connect)", "load", lambda r: r["events_per_s_since_connect"])
metric("S5", "lost events", "load", lambda r: r["lost"])
metric("H", "complete subscribers (herd)", "herd", lambda r: f'{r["complete"]}/{r["subscribers"]}')
metric("H", "lost events (herd)", "herd", lambda r: r["lost"])
metric("H", "Tarantool CPU s (herd)", "herd-tarantool", lambda r: r["tarantool_cpu_s"])
metric("H", "Tarantool CPU s (no herd)", "baseline-tarantool", lambda r: r["tarantool_cpu_s"])
metric("H", "writer commit p50 ms (herd)", "herd-writer", lambda r: r["stamp_to_ack"]["p50_ms"])
metric("H", "writer commit p50 ms (no herd)", "baseline-writer", lambda r: r["stamp_to_ack"]["p50_ms"])
metric("H", "writer commit p99 ms (herd)", "herd-writer", lambda r: r["stamp_to_ack"]["p99_ms"])
metric("H", "writer commit p99 ms (no herd)", "baseline-writer", lambda r: r["stamp_to_ack"]["p99_ms"])
metric("S7", "subscribers connected", "load", lambda r: r["connected"])
metric("S7", "time to accept all s", "load", lambda r: r["connect_s"])
metric("S7", "complete subscribers", "load", lambda r: r["complete"])
metric("S7", "lost events", "load", lambda r: r["lost"])
metric("S7", "delivered events", "load", lambda r: r["events"])
metric("S7", "p50 latency ms", "load", lambda r: r["latency"]["p50_ms"])
metric("S7", "p99 latency ms", "load", lambda r: r["latency"]["p99_ms"])
metric("S7", "server RSS MiB connected", "load", lambda r: r["server_rss"]["connected_kib"] / 1024)
metric("S7", "server RSS MiB peak", "load", lambda r: r["server_rss"]["peak_kib"] / 1024)
metric("S7", "RSS bytes per connection", "load", lambda r: r["server_rss"]["per_connection_bytes"])
metric("S7", "server CPU s (run)", "load", lambda r: r["server_cpu"]["run_s"])
metric("S7", "server CPU us per delivered event", "load", lambda r: r["server_cpu"]["per_event_us"])
for i in range(1, 10):
    metric("burst", f"burst {i}: RSS MiB before", f"idle-{i}", lambda r: r["server_rss"]["before_kib"] / 1024)
    metric("burst", f"burst {i}: RSS MiB connected", f"idle-{i}", lambda r: r["server_rss"]["connected_kib"] / 1024)
    metric("burst", f"burst {i}: RSS MiB right after", f"after-{i}", lambda r: r["start_kib"] / 1024)
    metric("burst", f"burst {i}: RSS MiB at the end of the wait", f"after-{i}", lambda r: r["end_kib"] / 1024)
    metric("burst", f"burst {i}: end / before first burst", f"after-{i}", lambda r: r["end_over_baseline"])
    metric("burst", f"burst {i}: s until within 20 %", f"after-{i}", lambda r: r["within_20pct_after_s"])
    metric("burst", f"burst {i}: jemalloc allocated / active / metadata (edata, rtree) / resident MiB at the end", f"after-{i}",
           lambda r: "{} / {} / {} ({}, {}) / {}".format(*(f'{r["allocator_end"].get(k, 0) / 1048576:.2f}' for k in (
               "allocated", "active", "metadata", "metadata_edata", "metadata_rtree", "resident"))))

for i in range(1, 10):
    for carrier, what in (("url", "URL connections (one per subscription)"), ("rpc", "one JSON-RPC connection")):
        role = f"{carrier}-{i}"
        metric("RPC100", f"round {i}, {what}: events delivered (unique)", role, lambda r: f'{r["events"]} ({r["unique"]})')
        metric("RPC100", f"round {i}, {what}: server RSS MiB subscribed", role, lambda r: r["server_rss"]["connected_kib"] / 1024)
        metric("RPC100", f"round {i}, {what}: server RSS KiB added by subscribing", role, lambda r: r["server_rss"]["connected_over_before_kib"])
        metric("RPC100", f"round {i}, {what}: server RSS MiB peak", role, lambda r: r["server_rss"]["peak_kib"] / 1024)
        metric("RPC100", f"round {i}, {what}: server CPU s (delivery)", role, lambda r: r["server_cpu"]["run_s"])
        metric("RPC100", f"round {i}, {what}: server CPU us per delivered event", role, lambda r: r["server_cpu"]["per_event_us"])

def mib(kib):
    return f"{kib / 1024:.1f}" if isinstance(kib, (int, float)) else "-"

for role, what in (("rpc", "JSON-RPC, unread subscriptions at the caps"), ("url", "URL streams, unread connections at the cap"), ("baseline", "no hostile client")):
    metric("CAPS", f"{what}: node RSS MiB before / peak / after", role,
           lambda r: f'{mib(r["server_rss"]["before_kib"])} / {mib(r["server_rss"].get("peak_kib", r["server_rss"].get("end_kib")))} / {mib(r["server_rss"]["after_kib"])}')
    metric("CAPS", f"{what}: node RSS growth MiB (peak - before)", role,
           lambda r: (r["server_rss"].get("peak_kib", r["server_rss"].get("end_kib", 0)) - r["server_rss"]["before_kib"]) / 1024)
    metric("CAPS", f"{what}: subscriptions / connections", role, lambda r: f'{r["subscriptions"]} / {r["connections"]}')
    metric("CAPS", f"{what}: bystander block latency p50 / p90 / p99 ms", f"{role}-bystander",
           lambda r: f'{r["block_latency"]["p50_ms"]:.1f} / {r["block_latency"]["p90_ms"]:.1f} / {r["block_latency"]["p99_ms"]:.1f}')
    metric("CAPS", f"{what}: bystander blocks timed, lost events", f"{role}-bystander",
           lambda r: f'{r["block_latency"]["samples"]}, {r["lost"]}')
    metric("CAPS", f"{what}: node counters", f"{role}-metrics", lambda r: json.dumps(r["metrics"]) if r["metrics"] else "none")
metric("CAPS", "close storm: subscriptions closed at once (connections)", "storm", lambda r: f'{r["subscriptions"]} ({r["connections"]})')
metric("CAPS", "close storm: probe connect-to-answer ms, longest before the close", "storm", lambda r: r["probe"]["before_max_ms"])
metric("CAPS", "close storm: probe connect-to-answer ms, longest after the close", "storm", lambda r: r["probe"]["after_max_ms"])
metric("CAPS", "close storm: probe handshake ms, longest after the close", "storm", lambda r: r["probe"]["after_max_handshake_ms"])
metric("CAPS", "close storm: probe connect-to-answer ms, median after the close", "storm", lambda r: r["probe"]["after_p50_ms"])
metric("CAPS", "close storm: probes after the close (failed)", "storm", lambda r: f'{r["probe"]["after"]} ({r["probe"]["failed"]})')
for carrier in ("rpc", "url"):
    metric("CAPS", f"empty-continuation flood on a {carrier} connection: frames sent, s", f"flood-{carrier}",
           lambda r: f'{r["flood"]["frames"]:,} in {r["flood"]["seconds"]:.1f} s ({r["flood"]["ended_by"]})')
    metric("CAPS", f"empty-continuation flood on a {carrier} connection: node CPU s (+ settle)", f"flood-{carrier}",
           lambda r: f'{r["flood"]["server_cpu_s"]:.2f} ({r["flood"]["server_cpu_with_settle_s"]:.2f})')

for role, what in (("group", "consumer group (stream-sea)"), ("partition", "URL, partition=i/n"), ("all", "URL, every event to each")):
    metric("GROUP", f"{what}: events delivered in all (unique)", role,
           lambda r: f'{r["events"]:,} ({r.get("unique", r["events"] - r["duplicates"]):,})')
    metric("GROUP", f"{what}: delivered events/s", role, lambda r: r["events_per_s"])
    metric("GROUP", f"{what}: node CPU us per delivered event", role, lambda r: r["server_cpu"]["per_event_us"])
    metric("GROUP", f"{what}: lost / duplicates", role, lambda r: f'{r["lost"]} / {r["duplicates"]}')
    metric("GROUP", f"{what}: events per member min / mean / max", role,
           lambda r: "{min} / {mean:.0f} / {max}".format(**r.get("per_connection_events", r.get("per_subscriber_events", {}))))

def fmt(v):
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.3g}" if isinstance(v, float) else str(v)

lines = ["| scenario | metric | planetmint-streams | limit baseline | Planetmint 2.5.3 | streams / limit | streams / Planetmint |",
         "|---|---|---|---|---|---|---|"]
for sc, name, role, fn in rows:
    vals = []
    for s in servers:
        r = get(s, sc, role)
        if r is None:
            vals.append(None)
        elif "skipped" in r:
            vals.append("skipped")
        else:
            try:
                vals.append(fn(r))
            except (KeyError, TypeError):
                vals.append(None)
    def ratio(a, b):
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b:
            return f"{a / b:.3g}x"
        return "-"
    if all(v is None or v == "skipped" for v in vals) and sc in ("S7", "burst", "RPC100", "CAPS", "GROUP"):
        continue  # planetmint-streams only; bursts past BURST_COUNT
    if all(v is None for v in vals):
        continue
    lines.append(f"| {sc} | {name} | " + " | ".join(fmt(v) for v in vals) + f" | {ratio(vals[0], vals[1])} | {ratio(vals[0], vals[2])} |")
table = "\n".join(lines) + "\n"
header = f"Machine: {machine['cpus']} CPUs ({machine['cpu']}), {machine['memory']}, kernel {machine['kernel']}, {machine['tarantool']}, commit {machine['commit']}" + (" — QUICK MODE, NOT RESULTS" if quick else "") + "\n\n"
open(f"{out}/results.md", "w").write(header + table)
print(header + table)
PY
