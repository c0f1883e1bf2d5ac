#!/usr/bin/env python3
"""Run Planetmint 2.5.3's own WebSocket event-stream server, fed by a benchmark feeder.

This is the baseline for the benchmark scenarios of issue 8. Nothing of Planetmint is copied or
changed: the server is `planetmint.web.websocket_server.init_app()` from the planetmint==2.5.3
wheel that setup.sh installs, run with `aiohttp.web.run_app()` on the `wsserver` host/port from
Planetmint's Config, exactly as `websocket_server.start()` does. The harness only

  * imports `aiohttp.web` first (as shipped, `start()` dies with
    `AttributeError: module aiohttp has no attribute web`);
  * passes run_app a `print` callback (to emit the ready line instead of aiohttp's banner) and a
    short shutdown_timeout (Planetmint uses the 60 s default);
  * appends its own on_startup hook that watches the subscriber count and Planetmint's three
    background tasks (it reads them, never replaces them);
  * feeds events the way a Planetmint node does: a feeder process plays the ABCI commit and puts
    `Event(EventTypes.BLOCK_VALID, {"height", "hash", "transactions"})` on the publisher queue of
    Planetmint's own `Exchange` (run in its own process, as in `planetmint.start`), whose
    subscriber queue is the `multiprocessing.Queue` the server's `access_queue` task reads.
    `--path direct` skips the Exchange and puts straight on that queue.

Transactions are real `transactions.common.transaction.Transaction` objects (the
planetmint-transactions class Planetmint's validator hands to commit): one signed CREATE,
cloned per transaction, whose id is replaced by the commit time, i.e. `time.time_ns()` when the
feeder pushes the block, plus the transaction's index in the block (so ids stay unique; the
offset is at most txs-1 ns), as 64 lowercase hex digits.

stdout carries one JSON object per line: ready, start, fed, planetmint_task_ended, exit (plus
start_timeout). Everything else goes to stderr.
"""

import argparse
import asyncio
import ctypes
import hashlib
import json
import multiprocessing
import os
import pickle
import resource
import signal
import sys
import time

# The fix for the shipped bug: planetmint.web.websocket_server only does `import aiohttp`, which
# does not load the aiohttp.web submodule that init_app()/start() use.
import aiohttp
import aiohttp.web  # noqa: F401  (must come before the server starts)

import importlib.metadata
import logging

from planetmint.config import Config
from planetmint.ipc.events import Event, EventTypes
from planetmint.ipc.exchange import Exchange
from planetmint.utils.processes import Process as PlanetmintProcess
from planetmint.web import websocket_server

log = logging.getLogger("pm_bench")


def emit(event, **fields):
    """One JSON line on stdout (small enough for one atomic write from any of our processes)."""
    fields = {"event": event, **fields}
    sys.stdout.write(json.dumps(fields, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def rss_kib(pid="self"):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def die_with_parent():
    """Children get SIGTERM if the server process dies (even by kill -9), so nothing lingers."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1", help="wsserver host (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=9995, help="wsserver port (default 9995)")
    p.add_argument("--subscribers", type=int, default=0, metavar="N",
                   help="start feeding once N clients are subscribed to the transactions stream")
    p.add_argument("--start-file", metavar="PATH",
                   help="also wait until PATH exists before feeding")
    p.add_argument("--start-timeout", type=float, default=300.0, metavar="S",
                   help="give up (exit 3) if the start condition is not met within S s (300)")
    p.add_argument("--blocks", type=int, default=0, metavar="B", help="blocks to push (0)")
    p.add_argument("--txs", type=int, default=10, metavar="T", help="transactions per block (10)")
    p.add_argument("--rate", type=float, default=0.0, metavar="R",
                   help="blocks per second; 0 = as fast as the feeder can push (0)")
    p.add_argument("--first-height", type=int, default=1, help="height of the first block (1)")
    p.add_argument("--path", choices=("exchange", "direct"), default="exchange",
                   help="exchange: feeder -> Planetmint's Exchange process -> server (as in "
                        "planetmint.start); direct: feeder -> server's queue (default exchange)")
    p.add_argument("--exit-after", type=float, metavar="S",
                   help="exit S s after the last block is pushed (default: keep serving)")
    p.add_argument("--max-seconds", type=float, default=900.0, metavar="S",
                   help="hard cap on the server's lifetime (900)")
    p.add_argument("--backlog", type=int, default=128,
                   help="listen backlog (128, run_app's default, which Planetmint uses)")
    p.add_argument("--shutdown-timeout", type=float, default=2.0,
                   help="run_app shutdown_timeout on SIGTERM/SIGINT (2; Planetmint: 60)")
    p.add_argument("--log-level", default="WARNING", help="Python logging level (WARNING)")
    a = p.parse_args(argv)
    if a.blocks < 0 or a.txs < 1 or a.rate < 0 or a.subscribers < 0:
        p.error("--blocks >= 0, --txs >= 1, --rate >= 0, --subscribers >= 0")
    return a


def template_transaction():
    """A signed CREATE, turned into the object Planetmint's validator produces (from_dict)."""
    from transactions.common.crypto import generate_key_pair
    from transactions.common.transaction import Transaction
    from transactions.types.assets.create import Create

    key = generate_key_pair()
    tx = Create.generate(
        [key.public_key],
        [([key.public_key], 1)],
        assets=[{"data": "QmW5GVMW98D3mktSDfWHS8nX2UiCd8gP1uCiujnFX4yK8n"}],
    ).sign([key.private_key])
    return Transaction.from_dict(tx.to_dict(), False)


def feeder_main(queue, blob, built, go, done, opts):
    """Plays the ABCI commit: pushes B blocks of T transactions at R blocks/s once `go` is set."""
    die_with_parent()
    try:
        import setproctitle
        setproctitle.setproctitle("pm_bench_feeder")
    except ImportError:
        pass
    built.set()
    if not go.wait(timeout=opts.start_timeout + 5):
        return
    interval = 1.0 / opts.rate if opts.rate > 0 else 0.0
    t0 = time.monotonic()
    deadline = t0 + opts.max_seconds
    last_id = 0
    first_ns = last_ns = None
    late = 0  # blocks pushed more than one interval behind schedule
    pushed = 0
    for k in range(opts.blocks):
        # Build the block's transactions before its slot, so the stamp-to-put window is tiny.
        txs = [pickle.loads(blob) for _ in range(opts.txs)]
        if interval:
            wait = t0 + k * interval - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            elif wait < -interval:
                late += 1
        if time.monotonic() > deadline:
            break
        now = time.time_ns()
        base = max(now, last_id + 1)
        last_id = base + opts.txs - 1
        ids = []
        for i, tx in enumerate(txs):
            tx._id = f"{base + i:064x}"
            ids.append(tx._id)
        block = {
            "height": opts.first_height + k,
            "hash": hashlib.sha3_256("".join(ids).encode()).hexdigest(),
            "transactions": txs,
        }
        queue.put(Event(EventTypes.BLOCK_VALID, block))
        pushed += 1
        if first_ns is None:
            first_ns = now
        last_ns = now
    elapsed = (last_ns - first_ns) / 1e9 if first_ns is not None else 0.0
    emit("fed", blocks=pushed, txs=pushed * opts.txs,
         first_height=opts.first_height, last_height=opts.first_height + pushed - 1,
         first_commit_ns=first_ns, last_commit_ns=last_ns, elapsed_s=round(elapsed, 6),
         blocks_per_s=round((pushed - 1) / elapsed, 3) if elapsed > 0 else None,
         late_blocks=late, feeder_pid=os.getpid())
    done.set()
    # Exiting joins the queue's writer thread, i.e. waits until the reader took everything.
    queue.close()
    queue.join_thread()


def exchange_main(exchange):
    die_with_parent()
    exchange.run()


def main(argv=None):
    opts = parse_args(argv)
    logging.basicConfig(level=opts.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    # Planetmint's Config is where start() reads its listen address from.
    config = Config().get()
    config["wsserver"].update(host=opts.host, port=opts.port,
                              advertised_host=opts.host, advertised_port=opts.port)
    Config().set(config)

    ctx = multiprocessing.get_context("fork")  # as Planetmint (Linux default on 3.11)
    children = {}
    if opts.path == "exchange":
        exchange = Exchange()
        # As planetmint.start: the websocket server reads a BLOCK_VALID subscriber queue.
        ws_queue = exchange.get_subscriber_queue(EventTypes.BLOCK_VALID)
        publish_queue = exchange.get_publisher_queue()
        ex = PlanetmintProcess(name="planetmint_exchange", target=exchange_main,
                               args=(exchange,), daemon=True)
        ex.start()
        children["exchange_pid"] = ex.pid
    else:
        ws_queue = publish_queue = multiprocessing.Queue()

    built, go, done = ctx.Event(), ctx.Event(), ctx.Event()
    blob = pickle.dumps(template_transaction())
    feeder = ctx.Process(name="pm_bench_feeder", target=feeder_main,
                         args=(publish_queue, blob, built, go, done, opts), daemon=True)
    feeder.start()
    children["feeder_pid"] = feeder.pid

    try:
        import setproctitle
        setproctitle.setproctitle("planetmint_ws")  # what Planetmint names this process
    except ImportError:
        pass

    host, port = Config().get()["wsserver"]["host"], Config().get()["wsserver"]["port"]
    base = f"ws://{host}:{port}"
    outcome = {"reason": "signal", "code": 0}
    state = {"shutting_down": False, "listening": None}

    def stop(reason, code=0):
        outcome.update(reason=reason, code=code)
        os.kill(os.getpid(), signal.SIGTERM)  # run_app's own graceful exit

    async def harness_startup(app):
        loop = asyncio.get_running_loop()
        loop.call_later(opts.max_seconds, stop, "max_seconds", 0)
        state["listening"] = asyncio.Event()

        def task_ended(task):
            if task.cancelled() or state["shutting_down"]:
                return
            exc = task.exception()
            emit("planetmint_task_ended", task=task.get_name(),
                 error=None if exc is None else f"{type(exc).__name__}: {exc}")

        # Planetmint's start_background_tasks ran before this hook: blk, tx, router.
        for key in ("task1", "task2", "task3"):
            app[key].add_done_callback(task_ended)
        app["pm_bench_gate"] = asyncio.create_task(gate(app), name="pm_bench_gate")

    async def harness_shutdown(app):
        state["shutting_down"] = True

    async def harness_cleanup(app):
        app["pm_bench_gate"].cancel()

    async def gate(app):
        loop = asyncio.get_running_loop()
        await state["listening"].wait()
        deadline = loop.time() + opts.start_timeout
        txd, blkd = app["tx_dispatcher"], app["blk_dispatcher"]
        while not (len(txd.subscribers) >= opts.subscribers and built.is_set()
                   and (opts.start_file is None or os.path.exists(opts.start_file))):
            if loop.time() > deadline:
                emit("start_timeout", subscribers=len(txd.subscribers), wanted=opts.subscribers)
                stop("start_timeout", 3)
                return
            await asyncio.sleep(0.02)
        emit("start", t_ns=time.time_ns(), subscribers=len(txd.subscribers),
             block_subscribers=len(blkd.subscribers), rss_kib=rss_kib())
        go.set()
        while not done.is_set():
            await asyncio.sleep(0.05)
        if opts.exit_after is not None:
            await asyncio.sleep(opts.exit_after)
            stop("exit_after", 0)

    def ready(_banner):
        emit("ready", pid=os.getpid(), **children, host=host, port=port,
             url=base + websocket_server.EVENTS_ENDPOINT,
             blocks_url=base + websocket_server.EVENTS_ENDPOINT_BLOCKS,
             path=opts.path, rss_kib=rss_kib(), python=sys.version.split()[0],
             planetmint=importlib.metadata.version("planetmint"),
             aiohttp=aiohttp.__version__)
        state["listening"].set()  # run_app calls print once every site is listening

    # Planetmint's own app: routes, Dispatchers and background tasks, reading ws_queue.
    app = websocket_server.init_app(ws_queue)
    app.on_startup.append(harness_startup)
    app.on_shutdown.append(harness_shutdown)
    app.on_cleanup.append(harness_cleanup)
    # websocket_server.start() is exactly: run_app(init_app(q), host=<wsserver host>,
    # port=<wsserver port>); the keyword arguments after port are the harness's.
    aiohttp.web.run_app(app, host=host, port=port, print=ready, backlog=opts.backlog,
                        shutdown_timeout=opts.shutdown_timeout)

    for proc in (feeder, ex if opts.path == "exchange" else None):
        if proc is not None and proc.is_alive():
            proc.terminate()
            proc.join(timeout=2)
    emit("exit", reason=outcome["reason"], code=outcome["code"])
    return outcome["code"]


if __name__ == "__main__":
    sys.exit(main())
