#!/usr/bin/env python3
"""Runs the container image `make image` built, with the compose file, and checks it from outside.

Run through `make image-check` (scripts/image-check.sh), which provides podman, podman-compose
and a Python with `websockets`. Steps, each printing one `ok`/`FAIL` line:
  1. podman-compose 1.0.3 reads both modes (deploy/docker/docker-compose.yml plus
     stream-only.yml or drop-in.yml) and names every container it would run (`--dry-run`);
  2. `podman-compose up -d streams` of the stream-only mode, with deploy/docker/check/
     compose.check.yml standing in for the images no registry serves here (Tarantool 2.10.4
     and Planetmint's schema copier become Debian's Tarantool with the development schema);
  3. from the host: `/health`, the image's HEALTHCHECK (`podman healthcheck run`), `/ready`;
  4. Planetmint-shaped blocks written into that Tarantool (the fixtures Planetmint 2.5.3 wrote,
     then generated ones: planetmint-streams-devchain), and both streams replayed from height 0
     through the published stream port: every block, every transaction, ids agreeing;
  5. `podman-compose stop -t 30 streams` (SIGTERM): a connected subscriber gets close 1001 with its last height, the
     container exits 0 within the grace.
Everything it started is removed at the end (`podman-compose down -v`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import websockets

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "deploy/docker"
PROJECT = "pms-image-check"
STAND_IN = "localhost/planetmint-streams-check-tarantool:latest"
GENERATED_BLOCKS = 20
failures: list[str] = []


def report(ok: bool, what: str, detail: str = "") -> bool:
    print(f"{'ok  ' if ok else 'FAIL'}  {what}" + (f": {detail}" if detail else ""), flush=True)
    if not ok:
        failures.append(what)
    return ok


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def until(what: str, check, within: float) -> bool:
    """Polls `check` until it returns true or `within` seconds pass."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if check():
                return True
        except OSError:
            pass
        time.sleep(0.5)
    print(f"      gave up waiting for {what} after {within:.0f} s", flush=True)
    return False


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def compose_command(files: list[str], *args: str, project: str = PROJECT) -> list[str]:
    cmd = ["podman-compose", "-p", project]
    # Any --ulimit (a service's `ulimits`, or this) drops all of containers.conf's defaults, and
    # podman's own defaults are above what this kind of host allows: both limits for every
    # container (the streams service's own nofile comes later and wins).
    nofile, nproc = host_limits()
    cmd += ["--podman-run-args", f"--ulimit nofile={nofile}:{nofile} --ulimit nproc={nproc}:{nproc}"]
    for f in files:
        cmd += ["-f", str(DOCKER / f)]
    return [*cmd, *args]


def compose(files: list[str], *args: str, env: dict[str, str], project: str = PROJECT) -> subprocess.CompletedProcess:
    return run(compose_command(files, *args, project=project), env=env, cwd=ROOT)


def host_limits() -> tuple[int, int]:
    """nofile and nproc a container may have here: the host's hard limits, at most the
    documented 65536 and 32768."""
    def capped(limit: int, cap: int) -> int:
        return cap if limit == resource.RLIM_INFINITY or limit >= cap else limit
    return (capped(resource.getrlimit(resource.RLIMIT_NOFILE)[1], 65536),
            capped(resource.getrlimit(resource.RLIMIT_NPROC)[1], 32768))


def containers_conf(nofile: int, nproc: int) -> Path:
    """podman's defaults for every container of the check: limits the host allows (podman asks
    for nofile 1048576 otherwise, which a host with a lower hard limit refuses for every
    container without `ulimits` in the compose file), and runc as the runtime."""
    path = ROOT / "target/image-check/containers.conf"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = f'[containers]\ndefault_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]\n'
    if shutil.which("runc"):
        # crun refuses hosts with hybrid cgroups; podman-compose cannot pass --runtime itself.
        text += f'[engine]\nruntime = "runc"\n'
    path.write_text(text)
    return path


def check_dry_runs(env: dict[str, str]) -> None:
    """podman-compose --dry-run: every container of each mode, none started. (It still creates
    the project's volumes and network, removed here afterwards.)"""
    project = f"{PROJECT}-dry"
    for mode in ("stream-only", "drop-in"):
        r = compose(["docker-compose.yml", f"{mode}.yml"], "--dry-run", "up", "-d", env=env, project=project)
        names = sorted(re.findall(rf"^podman run .*?--name={project}_(\S+)", r.stdout, re.M))
        want = ["planetmint-schema_1", "planetmint_1", "streams_1", "tarantool_1", "tendermint_1"]
        report(r.returncode == 0 and names == want, f"podman-compose reads the {mode} mode",
               ", ".join(names) if names == want else (r.stderr.strip()[-400:] or str(names)))
    volumes = run(["podman", "volume", "ls", "-q", "--filter", f"label=io.podman.compose.project={project}"]).stdout.split()
    if volumes:
        run(["podman", "volume", "rm", *volumes])
    run(["podman", "network", "rm", f"{project}_default"])


async def read_stream(url: str, until_height: int) -> list[dict]:
    """Every message of `url` up to the one at `until_height`."""
    out = []
    async with websockets.connect(url, max_size=None) as ws:
        async for message in ws:
            event = json.loads(message)
            out.append(event)
            if event["height"] >= until_height:
                return out
    return out


async def close_on_stop(url: str, stop_command: list[str], env: dict[str, str]) -> tuple[int | None, str, float]:
    """Connects, runs `stop_command`, returns the close code, reason and seconds taken."""
    async with websockets.connect(url) as ws:
        started = time.monotonic()
        stop = await asyncio.create_subprocess_exec(*stop_command, env=env, cwd=ROOT,
                                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            async for _ in ws:
                pass
        except websockets.ConnectionClosed:
            pass
        await stop.wait()
        return ws.close_code, ws.close_reason or "", time.monotonic() - started


def main() -> int:
    # SIGTERM (a CI timeout, `kill`) removes what the check started too, as Ctrl-C does.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default="planetmint-streams:latest")
    parser.add_argument("--devchain", required=True, help="the planetmint-streams-devchain binary")
    args = parser.parse_args()
    if run(["podman", "image", "exists", args.image]).returncode != 0:
        print(f"no image {args.image}: run `make image` first", file=sys.stderr)
        return 1
    api, streams, tarantool = free_port(), free_port(), free_port()
    nofile, nproc = host_limits()
    os.environ["CONTAINERS_CONF"] = str(containers_conf(nofile, nproc))
    env = dict(os.environ, STREAMS_IMAGE=args.image, STREAMS_PORT=str(streams), STREAMS_API_PORT=str(api),
               STREAMS_PUBLIC_HOST="127.0.0.1", STREAMS_PUBLIC_PORT=str(streams),
               STREAMS_NOFILE=str(nofile), CHECK_TARANTOOL_PORT=str(tarantool))
    if run(["podman", "image", "exists", STAND_IN]).returncode != 0:
        print(f"==> building the stand-in Tarantool image {STAND_IN}", flush=True)
        r = subprocess.run(["podman", "build", "--pull=never", "-f", str(DOCKER / "check/tarantool.Containerfile"),
                            "-t", STAND_IN, str(ROOT)])
        if r.returncode != 0:
            return 1
    check_dry_runs(env)
    files = ["docker-compose.yml", "stream-only.yml", "check/compose.check.yml"]
    container = f"{PROJECT}_streams_1"
    compose(files, "down", "-v", "-t", "1", env=env)  # what an interrupted run may have left
    try:
        r = compose(files, "up", "-d", "--no-build", "streams", env=env)
        report(r.returncode == 0, "podman-compose up -d streams (stream-only mode, stand-in Tarantool)",
               f"nofile {nofile}, nproc {nproc}, API :{api}, streams :{streams}" if r.returncode == 0 else r.stderr.strip()[-600:])
        base = f"http://127.0.0.1:{api}"
        report(until("/health", lambda: http_get(base + "/health")[0] == 200, 60), "GET /health from the host is 200")
        healthy = until("the HEALTHCHECK", lambda: run(["podman", "healthcheck", "run", container]).returncode == 0, 30)
        report(healthy, "the image's HEALTHCHECK passes (podman healthcheck run)")
        report(until("/ready", lambda: http_get(base + "/ready")[0] == 200, 60), "GET /ready is 200 once Tarantool answers",
               http_get(base + "/ready")[1].strip())
        w = run([args.devchain, "--tarantool", f"127.0.0.1:{tarantool}", "--with-fixtures",
                 "--blocks-per-second", "20", "--count", str(GENERATED_BLOCKS)], timeout=120)
        report(w.returncode == 0, "Planetmint-shaped blocks written into the container's Tarantool",
               f"fixtures, then {GENERATED_BLOCKS} generated" if w.returncode == 0 else w.stderr.strip()[-400:])
        head = {}

        def caught_up() -> bool:
            status, body = http_get(base + "/ready")
            head.update(json.loads(body))
            return status == 200 and head["head_height"] > 0 and head["lag_blocks"] == 0

        report(until("the stream to catch up", caught_up, 60), "/ready: the node streamed up to Tarantool's head",
               f"head {head.get('head_height')}, streamed {head.get('streamed_height')}")
        top = head.get("head_height", 0)
        status, body = http_get(base + "/api/v1/")
        discovery = json.loads(body) if status == 200 else {}
        url = discovery.get("streams", "")
        report(url == f"ws://127.0.0.1:{streams}/api/v1/streams/valid_transactions",
               "discovery from the host names the published stream port", url)
        # batch=block: one message per block, so the last one read ends a whole block.
        batches = asyncio.run(asyncio.wait_for(read_stream(f"{url}?from_height=0&batch=block", top), 60))
        transactions = [tx for batch in batches for tx in batch["transactions"]]
        blocks = asyncio.run(asyncio.wait_for(read_stream(f"{discovery.get('streamedblocks')}?from_height=0", top), 60))
        from_blocks = [tx for b in blocks for tx in b["transaction_ids"]]
        from_transactions = [t["transaction_id"] for t in transactions]
        heights = [b["height"] for b in blocks]
        report(heights == sorted(set(heights)) and heights[-1:] == [top] and from_blocks == from_transactions
               and len(from_transactions) >= 64 + GENERATED_BLOCKS,
               "both streams, replayed from height 0 through the published port, agree on every block",
               f"{len(blocks)} blocks (heights {heights[:1]}..{heights[-1:]}), {len(from_transactions)} transactions")
        # podman-compose 1.0.3 ignores stop_grace_period: the stop timeout is given here.
        stop = compose_command(files, "stop", "-t", "30", "streams")
        code, reason, took = asyncio.run(close_on_stop(url, stop, env))
        detail = {}
        try:
            detail = json.loads(reason)
        except ValueError:
            pass
        report(code == 1001 and detail.get("last_height") == top,
               "podman-compose stop (SIGTERM): the subscriber gets 1001 with its last height",
               f"{code} {reason} after {took:.1f} s")
        exit_code = run(["podman", "inspect", "--format", "{{.State.ExitCode}}", container]).stdout.strip()
        report(exit_code == "0" and took < 30, "the container exits 0 within the grace", f"exit code {exit_code}")
    finally:
        r = run(["podman", "logs", container])
        logs = r.stdout + r.stderr
        (ROOT / "target/image-check").mkdir(parents=True, exist_ok=True)
        (ROOT / "target/image-check/streams.log").write_text(logs)
        compose(files, "down", "-v", "-t", "30", env=env)
    print(f"\n{len(failures)} failed" + (": " + "; ".join(failures) if failures else "")
          + "  (the node's log: target/image-check/streams.log)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
