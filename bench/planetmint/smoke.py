#!/usr/bin/env python3
"""Smoke run: start Planetmint 2.5.3's own WebSocket server (run_server.py), subscribe, check.

Connects one client to the blocks stream and N to the transactions stream, lets run_server.py's
feeder push B blocks of T transactions at R blocks/s, and checks that every subscriber got every
transaction once, with Planetmint's message shape ({"height", "asset_ids", "transaction_id"}),
then prints commit-to-client latency (the transaction id is the commit time in ns, hex) and how
the messages arrived in bursts. With --slow K it also holds K clients that never read (to look at
isolation) and reports what the normal subscribers got instead of failing on loss.

Run it with the venv's Python (it uses aiohttp's client), e.g. via smoke.sh. Loopback only,
bounded in time: every wait has a deadline.
"""

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import sys
import time

import aiohttp

HERE = os.path.dirname(os.path.abspath(__file__))
HEX64 = re.compile(r"^[0-9a-f]{64}$")


def pct(sorted_values, p):
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return None
    k = max(0, min(len(sorted_values) - 1, int(round(p / 100.0 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None


class Server:
    """run_server.py as a child; its stdout JSON lines are collected as events."""

    def __init__(self, args):
        self.args = args
        self.events = []
        self.changed = asyncio.Event()

    async def start(self):
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, os.path.join(HERE, "run_server.py"), *self.args,
            stdout=asyncio.subprocess.PIPE)
        self.reader = asyncio.create_task(self._read())

    async def _read(self):
        async for line in self.proc.stdout:
            line = line.decode().strip()
            print(f"server: {line}", flush=True)
            try:
                self.events.append(json.loads(line))
            except ValueError:
                continue
            self.changed.set()

    async def wait_event(self, name, timeout):
        deadline = time.monotonic() + timeout
        while True:
            for e in self.events:
                if e.get("event") == name:
                    return e
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.returncode is not None:
                return None
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), left)
            except asyncio.TimeoutError:
                return None

    async def stop(self, timeout):
        try:
            await asyncio.wait_for(self.proc.wait(), timeout)
        except asyncio.TimeoutError:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except asyncio.TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        await self.reader
        return self.proc.returncode


def never_reading_client(host, port, path):
    """Upgrades to WebSocket, then never reads again (the kernel buffers fill, then the server's)."""
    s = socket.create_connection((host, port), timeout=5)
    s.sendall((f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head and len(head) < 4096:
        chunk = s.recv(1)  # byte by byte: take nothing past the handshake
        if not chunk:
            break
        head += chunk
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(f"upgrade refused: {head[:80]!r}")
    return s


async def subscriber(session, url, expected, deadline, out):
    got = []  # (recv_ns, text)
    async with session.ws_connect(url, autoping=True, max_msg_size=0) as ws:
        out["connected"] = True
        while len(got) < expected:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                msg = await asyncio.wait_for(ws.receive(), left)
            except asyncio.TimeoutError:
                break
            if msg.type != aiohttp.WSMsgType.TEXT:
                out["closed"] = f"{msg.type.name} {msg.data!r}"
                break
            got.append((time.time_ns(), msg.data))
    out["got"] = got


def check_tx_messages(got, expected_ids):
    """Problems with one subscriber's transaction messages, and its latencies in ms."""
    problems, lat, ids, heights = [], [], [], []
    for recv_ns, text in got:
        m = json.loads(text)
        if set(m) != {"height", "asset_ids", "transaction_id"}:
            problems.append(f"keys {sorted(m)}")
            continue
        txid = m["transaction_id"]
        if not HEX64.match(txid):
            problems.append(f"id {txid!r}")
            continue
        if m["asset_ids"] != [txid]:  # CREATE: Planetmint reports the tx's own id as the asset
            problems.append(f"asset_ids {m['asset_ids']!r} for {txid}")
        ids.append(txid)
        heights.append(m["height"])
        lat.append((recv_ns - int(txid, 16)) / 1e6)
    if len(set(ids)) != len(ids):
        problems.append(f"{len(ids) - len(set(ids))} duplicates")
    if expected_ids is not None:
        missing = expected_ids - set(ids)
        if missing:
            problems.append(f"{len(missing)} missing")
    in_order = ids == sorted(ids) and heights == sorted(heights)
    return problems, lat, in_order


def bursts(times_ns, gap_ms=200):
    """Sizes of runs of arrivals separated by more than gap_ms."""
    out, prev = [], None
    for t in sorted(times_ns):
        if prev is None or (t - prev) / 1e6 > gap_ms:
            out.append(0)
        out[-1] += 1
        prev = t
    return out


async def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, default=9995)
    p.add_argument("--subscribers", type=int, default=3)
    p.add_argument("--slow", type=int, default=0, help="clients that never read (0)")
    p.add_argument("--slow-close-after", type=float, metavar="S",
                   help="close the never-reading clients S s after the feed starts")
    p.add_argument("--blocks", type=int, default=5)
    p.add_argument("--txs", type=int, default=10)
    p.add_argument("--rate", type=float, default=4.0)
    p.add_argument("--path", choices=("exchange", "direct"), default="exchange")
    p.add_argument("--timeout", type=float, default=20.0,
                   help="seconds, after the feed ends, to wait for messages (20)")
    a = p.parse_args()
    host = "127.0.0.1"
    expected = a.blocks * a.txs
    feed_s = (a.blocks / a.rate) if a.rate > 0 else 1.0

    server = Server(["--port", str(a.port), "--subscribers", str(a.subscribers + a.slow),
                     "--blocks", str(a.blocks), "--txs", str(a.txs), "--rate", str(a.rate),
                     "--path", a.path, "--start-timeout", "30",
                     "--max-seconds", str(int(60 + feed_s + a.timeout))])
    await server.start()
    ready = await server.wait_event("ready", 30)
    if ready is None:
        print("smoke: server never became ready", file=sys.stderr)
        await server.stop(5)
        return 2
    pid = ready["pid"]
    rss_ready = rss_kib(pid)
    deadline = time.monotonic() + 30 + feed_s + a.timeout
    slow = []
    async with aiohttp.ClientSession() as session:
        blk_out = {}
        blk_task = asyncio.create_task(
            subscriber(session, ready["blocks_url"], a.blocks, deadline, blk_out))
        outs = [{} for _ in range(a.subscribers)]
        tasks = [asyncio.create_task(subscriber(session, ready["url"], expected, deadline, o))
                 for o in outs]
        for _ in range(a.slow):
            slow.append(await asyncio.get_running_loop().run_in_executor(
                None, never_reading_client, host, a.port,
                "/api/v1/streams/valid_transactions"))
        start = await server.wait_event("start", 30)
        rss_start = rss_kib(pid)
        if a.slow and a.slow_close_after is not None:
            await asyncio.sleep(a.slow_close_after)
            for s in slow:
                s.close()
            print(f"smoke: closed {len(slow)} never-reading clients", flush=True)
            slow = []
        await asyncio.gather(*tasks, blk_task)
    rss_end = rss_kib(pid)
    for s in slow:
        s.close()
    fed = await server.wait_event("fed", 5)
    server.proc.send_signal(signal.SIGTERM)
    code = await server.stop(15)

    ok = start is not None and fed is not None
    all_lat, all_times = [], []
    print(f"\nsmoke: {a.subscribers} subscribers (+{a.slow} never reading), {a.blocks} blocks x "
          f"{a.txs} txs at {a.rate} blocks/s, path {a.path}; server pid {pid}")
    expected_ids = None
    for i, o in enumerate(outs):
        got = o.get("got", [])
        problems, lat, in_order = check_tx_messages(got, None)
        if expected_ids is None and len(got) == expected:
            expected_ids = {json.loads(t)["transaction_id"] for _, t in got}
        if len(got) != expected:
            problems.append(f"got {len(got)} of {expected}")
        all_lat += lat
        all_times += [t for t, _ in got]
        lat.sort()
        print(f"  sub {i}: {len(got)}/{expected} msgs, in order {in_order}, latency ms "
              f"p50 {pct(lat, 50) or 0:.1f} max {lat[-1] if lat else 0:.1f}"
              + (f"  PROBLEMS: {problems}" if problems else ""))
        if problems and not a.slow:
            ok = False
    for i, o in enumerate(outs):  # same set everywhere
        ids = {json.loads(t)["transaction_id"] for _, t in o.get("got", [])}
        if expected_ids is not None and ids != expected_ids and not a.slow:
            print(f"  sub {i}: different transaction set")
            ok = False
    if outs and outs[0].get("got"):
        print(f"  sample tx message: {outs[0]['got'][0][1]}")
    blk = blk_out.get("got", [])
    if blk:
        m = json.loads(blk[0][1])
        print(f"  blocks stream: {len(blk)}/{a.blocks} msgs, keys {sorted(m)}, "
              f"first has {len(m.get('transaction_ids', []))} ids")
        if set(m) != {"height", "hash", "transaction_ids"}:
            ok = False
    all_lat.sort()
    if all_lat:
        print(f"  latency ms over {len(all_lat)} msgs: min {all_lat[0]:.1f} "
              f"p50 {pct(all_lat, 50):.1f} p99 {pct(all_lat, 99):.1f} max {all_lat[-1]:.1f}")
    print(f"  arrival bursts (>200 ms apart), msgs per burst: {bursts(all_times)}")
    print(f"  server RSS KiB: ready {rss_ready}, start {rss_start}, end {rss_end}")
    died = [e for e in server.events if e.get("event") == "planetmint_task_ended"]
    if died:
        print(f"  Planetmint tasks ended: {died}")
        if not a.slow:
            ok = False
    verdict = ("report only (never-reading clients: loss is the finding, not a failure)"
               if a.slow else "PASS" if ok else "FAIL")
    print(f"  server exit code {code}; smoke {verdict}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
