#!/usr/bin/env bash
# The JetStream tier's benchmarks, side by side with the WebSocket stream in one run (results and
# their reading in docs/benchmarks.md, "JetStream tier"):
#
#   JS-L  latency: JS_L_SUBS WebSocket subscribers and JS_L_SUBS JetStream consumers at the
#         same time, JS_L_BLOCKS x JS_L_TXS committed at JS_L_RATE blocks/s: commit -> received,
#         p50/p99, for each.
#   JS-F  fan-out: JS_F_SUBS WebSocket subscribers, then (same node, same NATS) JS_F_SUBS
#         JetStream consumers, each time JS_F_BLOCKS x JS_F_TXS committed back to back: time to
#         deliver every event to every client, latency, CPU of the node and of nats-server.
#   JS-B  backfill: JS_B_BLOCKS x JS_B_TXS stored in Tarantool before the node starts with an
#         empty JetStream: events/s until JetStream holds all of it; then one JetStream consumer
#         and one WebSocket subscriber (from_height=0) read that history back.
#
#   scripts/bench-jetstream.sh
#   JS_QUICK=1 scripts/bench-jetstream.sh   tiny sizes: checks the script end to end (not results)
#   JS_BUILD=0 scripts/bench-jetstream.sh   binaries already built (target/release)
#
# Needs tarantool and nats-server (scripts/ensure-deps.sh installs both). Everything listens on
# 127.0.0.1 only; every process is bounded in time and stopped by PID. Output:
# target/bench-jetstream/results.json (every tool's JSON line), results.md, logs/.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
out="${JS_OUT:-$root/target/bench-jetstream}"
logs="$out/logs"
bin="$root/target/release"

if [ "${JS_QUICK:-0}" = 1 ]; then
    : "${JS_L_SUBS:=3}" "${JS_L_BLOCKS:=20}" "${JS_L_TXS:=10}" "${JS_L_RATE:=20}"
    : "${JS_F_SUBS:=20}" "${JS_F_BLOCKS:=3}" "${JS_F_TXS:=20}"
    : "${JS_B_BLOCKS:=50}" "${JS_B_TXS:=20}"
else
    # The shapes of bench.sh's S1 (latency), S2 (fan-out) and S5 (history).
    : "${JS_L_SUBS:=10}" "${JS_L_BLOCKS:=200}" "${JS_L_TXS:=10}" "${JS_L_RATE:=20}"
    : "${JS_F_SUBS:=1000}" "${JS_F_BLOCKS:=12}" "${JS_F_TXS:=100}"
    : "${JS_B_BLOCKS:=1000}" "${JS_B_TXS:=100}"
fi

log() { printf '==> %s\n' "$*" >&2; }

if [ "${JS_BUILD:-1}" = 1 ]; then
    log "building (release)"
    cargo build --release --locked -p planetmint-streams -p planetmint-streams-bench --bins
fi
rm -rf "$out" && mkdir -p "$logs"
: >"$out/results.jsonl"

pids=()
cleanup() {
    trap - EXIT INT TERM
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT INT TERM

stop_pid() { # SIGTERM, then SIGKILL after 10 s, reap
    local pid="$1" i
    kill "$pid" 2>/dev/null || true
    for i in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
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

record() { # record SCENARIO ROLE FILE: the tool's last JSON line, tagged
    python3 - "$1" "$2" "$3" >>"$out/results.jsonl" <<'PY'
import json, sys
scenario, role, path = sys.argv[1:4]
lines = [json.loads(l) for l in open(path) if l.strip().startswith("{")]
print(json.dumps({"scenario": scenario, "role": role,
                  "result": lines[-1] if lines else {"error": "no JSON output (see logs)"}}))
PY
}

metric() { # metric API_PORT NAME: a value of the node's /metrics (summed over labels)
    python3 - "$1" "$2" <<'PY'
import sys, urllib.request
text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=5).read().decode()
name = sys.argv[2]
print(sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines()
          if l.startswith(name) and (l[len(name)] in " {")))
PY
}

# --- the processes of one scenario ------------------------------------------------------------
tt_pid="" tt_port="" nats_pid="" nats_port="" node_pid="" node_port="" api_port=""

start_tarantool() { # start_tarantool NAME: Planetmint's schema (deploy/dev/tarantool.sh), 1 GiB
    local dir="$out/tarantool-$1"
    tt_port="$(free_port)"
    MEMTX_MEMORY=1073741824 deploy/dev/tarantool.sh "$tt_port" "$dir" >"$logs/tarantool-$1.out" 2>&1 &
    tt_pid=$!
    pids+=("$tt_pid")
    wait_port "$tt_port" 30
    local i
    for i in $(seq 300); do [ -f "$dir/ready" ] && return 0; sleep 0.1; done
    echo "Tarantool did not load the schema" >&2
    return 1
}

start_nats() { # start_nats NAME: JetStream on, WebSocket on, an empty store
    local dir="$out/nats-$1"
    mkdir -p "$dir"
    nats_port="$(free_port)"
    cat >"$dir/nats.conf" <<CONF
listen: 127.0.0.1:$nats_port
jetstream { store_dir: "$dir/data" }
websocket { listen: "127.0.0.1:$(free_port)", no_tls: true }
CONF
    nats-server -c "$dir/nats.conf" >"$logs/nats-$1.log" 2>&1 &
    nats_pid=$!
    pids+=("$nats_pid")
    wait_port "$nats_port" 30
}

start_node() { # start_node NAME: the node publishing into JetStream
    node_port="$(free_port)"
    api_port="$(free_port)"
    PLANETMINT_STREAMS_LOG__LEVEL=warn \
        PLANETMINT_STREAMS_STREAMS__MAX_CONNECTIONS_PER_IP=100000 \
        PLANETMINT_STREAMS_STREAMS__MAX_CONNECTIONS=20000 \
        PLANETMINT_STREAMS_NATS__URL="nats://127.0.0.1:$nats_port" \
        "$bin/planetmint-streams" --tarantool "127.0.0.1:$tt_port" \
        --streams-bind "127.0.0.1:$node_port" --api-bind "127.0.0.1:$api_port" \
        --advertised-host 127.0.0.1 >"$logs/node-$1.log" 2>&1 &
    node_pid=$!
    pids+=("$node_pid")
    local i
    for i in $(seq 300); do
        if [ "$(metric "$api_port" planetmint_streams_jetstream_up 2>/dev/null || echo 0)" = 1.0 ]; then
            return 0
        fi
        sleep 0.1
    done
    echo "the node did not connect to NATS (see $logs/node-$1.log)" >&2
    return 1
}

stop_all() {
    local pid
    for pid in "$node_pid" "$nats_pid" "$tt_pid"; do [ -n "$pid" ] && stop_pid "$pid"; done
    node_pid="" nats_pid="" tt_pid=""
}

writer() { # writer NAME BLOCKS TXS RATE READY_FILE SEED: commits in the background
    timeout 900 "$bin/benchwriter" --tarantool "127.0.0.1:$tt_port" --blocks "$2" --txs "$3" \
        --rate "$4" --wait-file "$5" --wait-timeout 600 --seed "$6" --label "$1" \
        >"$logs/$1-writer.json" 2>"$logs/$1-writer.log" &
    writer_pid=$!
    pids+=("$writer_pid")
}

wsload() { # wsload SCENARIO ROLE ARGS...
    local scenario="$1" role="$2"
    shift 2
    timeout 900 "$bin/wsload" --label "$scenario/$role" "$@" >"$logs/$scenario-$role.json" \
        2>"$logs/$scenario-$role.log" || true
    grep '^wsload\[' "$logs/$scenario-$role.log" | grep -v 'connected in' >&2 || true
    record "$scenario" "$role" "$logs/$scenario-$role.json"
}

jsload() { # jsload SCENARIO ROLE ARGS...
    local scenario="$1" role="$2"
    shift 2
    timeout 900 "$bin/jsload" --label "$scenario/$role" --nats "nats://127.0.0.1:$nats_port" "$@" \
        >"$logs/$scenario-$role.json" 2>"$logs/$scenario-$role.log" || true
    grep '^jsload\[' "$logs/$scenario-$role.log" >&2 || true
    record "$scenario" "$role" "$logs/$scenario-$role.json"
}

both_ready() { # both_ready A B OUT: OUT appears once A and B exist
    local i
    for i in $(seq 6000); do
        if [ -e "$1" ] && [ -e "$2" ]; then
            : >"$3"
            return 0
        fi
        sleep 0.1
    done
}

# --- JS-L ---------------------------------------------------------------------------------------
log "JS-L: $JS_L_SUBS WebSocket subscribers and $JS_L_SUBS JetStream consumers, ${JS_L_BLOCKS} x ${JS_L_TXS} at ${JS_L_RATE}/s"
start_tarantool L && start_nats L && start_node L
expect=$((JS_L_BLOCKS * JS_L_TXS))
rm -f "$out/L-ws" "$out/L-js" "$out/L-go"
writer JS-L "$JS_L_BLOCKS" "$JS_L_TXS" "$JS_L_RATE" "$out/L-go" 11
both_ready "$out/L-ws" "$out/L-js" "$out/L-go" &
pids+=($!)
wsload JS-L websocket --url "ws://127.0.0.1:$node_port/api/v1/streams/valid_transactions" \
    -n "$JS_L_SUBS" --expect "$expect" --ready-file "$out/L-ws" --duration 300 --server-pid "$node_pid" &
ws_job=$!
jsload JS-L jetstream -n "$JS_L_SUBS" --expect "$expect" --ready-file "$out/L-js" --duration 300 \
    --pid "node=$node_pid" --pid "nats-server=$nats_pid"
wait "$ws_job" || true
wait "$writer_pid" || true
record JS-L writer "$logs/JS-L-writer.json"
curl -s "http://127.0.0.1:$api_port/metrics" | grep '^planetmint_streams_jetstream_commit_to_ack' \
    >"$logs/JS-L-node-commit-to-ack.txt" || true
stop_all

# --- JS-F ---------------------------------------------------------------------------------------
log "JS-F: $JS_F_SUBS WebSocket subscribers, then $JS_F_SUBS JetStream consumers, ${JS_F_BLOCKS} x ${JS_F_TXS} each"
start_tarantool F && start_nats F && start_node F
expect=$((JS_F_BLOCKS * JS_F_TXS))
rm -f "$out/F-ws" "$out/F-js"
writer JS-F-websocket "$JS_F_BLOCKS" "$JS_F_TXS" 0 "$out/F-ws" 21
wsload JS-F websocket --url "ws://127.0.0.1:$node_port/api/v1/streams/valid_transactions" \
    -n "$JS_F_SUBS" --expect "$expect" --ready-file "$out/F-ws" --duration 300 --server-pid "$node_pid"
wait "$writer_pid" || true
writer JS-F-jetstream "$JS_F_BLOCKS" "$JS_F_TXS" 0 "$out/F-js" 22
jsload JS-F jetstream -n "$JS_F_SUBS" --expect "$expect" --ready-file "$out/F-js" --duration 300 \
    --pid "node=$node_pid" --pid "nats-server=$nats_pid"
wait "$writer_pid" || true
stop_all

# --- JS-B ---------------------------------------------------------------------------------------
log "JS-B: ${JS_B_BLOCKS} x ${JS_B_TXS} of stored history into an empty JetStream"
start_tarantool B
timeout 900 "$bin/benchwriter" --tarantool "127.0.0.1:$tt_port" --prefill --blocks "$JS_B_BLOCKS" \
    --txs "$JS_B_TXS" --seed 31 --label JS-B-prefill >"$logs/JS-B-prefill.json" 2>"$logs/JS-B-prefill.log"
start_nats B
events=$((JS_B_BLOCKS * JS_B_TXS + JS_B_BLOCKS))
start_node B
# The publishing window from JetStream's own clock: the first message's time to the last's, over
# both streams (nats-py from target/py, which scripts/ensure-deps.sh installs).
"$root/target/py/bin/python3" - "$nats_port" "$events" "$api_port" >"$logs/JS-B-backfill.json" <<'PY'
import asyncio, datetime, json, re, sys, time, urllib.request
import nats
port, events, api = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
def parse(ts):  # RFC 3339 in UTC with up to nanoseconds (Go trims trailing zeros)
    whole, fraction = re.fullmatch(r"(.+T\d\d:\d\d:\d\d)(?:\.(\d+))?Z", ts).groups()
    seconds = datetime.datetime.fromisoformat(whole).replace(tzinfo=datetime.timezone.utc).timestamp()
    return seconds + float("0." + (fraction or "0"))
async def main():
    nc = await nats.connect(f"nats://127.0.0.1:{port}")
    js = nc.jetstream()
    deadline = time.time() + 600
    while True:
        infos = [await js.stream_info(s) for s in ("valid_transactions", "valid_blocks")]
        held = sum(i.state.messages for i in infos)
        if held >= events or time.time() > deadline:
            break
        await asyncio.sleep(0.1)
    # first_ts/last_ts as JetStream reports them (RFC 3339, nanoseconds).
    raw = [await nc.request(f"$JS.API.STREAM.INFO.{s}", b"") for s in ("valid_transactions", "valid_blocks")]
    states = [json.loads(r.data)["state"] for r in raw]
    first = min(parse(s["first_ts"]) for s in states)
    last = max(parse(s["last_ts"]) for s in states)
    text = urllib.request.urlopen(f"http://127.0.0.1:{api}/metrics", timeout=5).read().decode()
    catchup = sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines()
                  if l.startswith("planetmint_streams_jetstream_catchup_blocks_total"))
    print(json.dumps({"tool": "backfill", "events": held, "expected": events,
                      "seconds": last - first, "events_per_s": held / (last - first),
                      "catchup_blocks": catchup}))
    await nc.close()
asyncio.run(main())
PY
record JS-B backfill "$logs/JS-B-backfill.json"
cat "$logs/JS-B-backfill.json" >&2
jsload JS-B jetstream-history -n 1 --start all --stream valid_transactions \
    --expect $((JS_B_BLOCKS * JS_B_TXS)) --duration 300 --pid "nats-server=$nats_pid"
wsload JS-B websocket-history \
    --url "ws://127.0.0.1:$node_port/api/v1/streams/valid_transactions?from_height=0" -n 1 \
    --expect $((JS_B_BLOCKS * JS_B_TXS)) --duration 300 --server-pid "$node_pid"
stop_all

# --- the table ----------------------------------------------------------------------------------
python3 - "$out" <<'PY'
import json, os, platform, subprocess, sys
out = sys.argv[1]
runs = [json.loads(l) for l in open(f"{out}/results.jsonl")]
def get(scenario, role):
    for r in runs:
        if r["scenario"] == scenario and r["role"] == role:
            return r["result"]
    return {}
rows = []
def row(scenario, what, ws, js):
    rows.append(f"| {scenario} | {what} | {ws} | {js} |")
def f(v, digits=2):
    return "-" if v is None else (f"{v:,.{digits}f}" if isinstance(v, float) else str(v))
L_ws, L_js = get("JS-L", "websocket"), get("JS-L", "jetstream")
for q in ("p50", "p99", "max"):
    row("JS-L", f"commit -> received {q} ms", f(L_ws.get("latency", {}).get(f"{q}_ms")), f(L_js.get("latency", {}).get(f"{q}_ms")))
row("JS-L", "events received (lost, duplicates)", f'{L_ws.get("events")} ({L_ws.get("lost")}, {L_ws.get("duplicates")})',
    f'{L_js.get("events")} ({L_js.get("lost")}, {L_js.get("duplicates")})')
F_ws, F_js = get("JS-F", "websocket"), get("JS-F", "jetstream")
row("JS-F", "clients connected / consumers created", F_ws.get("connected"), F_js.get("created"))
row("JS-F", "time to set them up s", f(F_ws.get("connect_s")), f(F_js.get("create_s")))
row("JS-F", "events delivered (lost, duplicates)", f'{F_ws.get("events")} ({F_ws.get("lost")}, {F_ws.get("duplicates")})',
    f'{F_js.get("events")} ({F_js.get("lost")}, {F_js.get("duplicates")})')
row("JS-F", "first commit -> last delivery s", f(F_ws.get("since_first_commit_s")), f(F_js.get("since_first_commit_s")))
row("JS-F", "events/s (from the first commit)", f(F_ws.get("events_per_s_since_first_commit"), 0), f(F_js.get("events_per_s_since_first_commit"), 0))
for q in ("p50", "p99"):
    row("JS-F", f"commit -> received {q} ms", f(F_ws.get("latency", {}).get(f"{q}_ms")), f(F_js.get("latency", {}).get(f"{q}_ms")))
row("JS-F", "node CPU s (delivery)", f(F_ws.get("server_cpu", {}).get("run_s")), f(F_js.get("cpu", {}).get("node", {}).get("run_s")))
row("JS-F", "nats-server CPU s (delivery)", "-", f(F_js.get("cpu", {}).get("nats-server", {}).get("run_s")))
row("JS-F", "server RSS bytes per client (node / nats-server)", f(F_ws.get("server_rss", {}).get("per_connection_bytes"), 0),
    f(F_js.get("cpu", {}).get("nats-server", {}).get("rss_per_consumer_bytes"), 0))
B = get("JS-B", "backfill")
B_js, B_ws = get("JS-B", "jetstream-history"), get("JS-B", "websocket-history")
row("JS-B", "history into JetStream: events (s, first to last message)", "-", f'{B.get("events")} ({f(B.get("seconds"))})')
row("JS-B", "backfill events/s into JetStream", "-", f(B.get("events_per_s"), 0))
row("JS-B", "history read back by one client: events/s", f(B_ws.get("events_per_s_since_connect"), 0), f(B_js.get("events_per_s"), 0))
machine = f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), kernel {platform.release()}"
try:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    nats = subprocess.run(["nats-server", "--version"], capture_output=True, text=True).stdout.strip()
except OSError:
    commit = nats = "?"
table = (f"Machine: {machine}, {nats}, commit {commit}\n\n| scenario | metric | WebSocket stream | JetStream |\n|---|---|---|---|\n"
         + "\n".join(rows) + "\n")
open(f"{out}/results.md", "w").write(table)
json.dump(runs, open(f"{out}/results.json", "w"), indent=1)
print(table)
PY
