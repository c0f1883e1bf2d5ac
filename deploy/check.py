#!/usr/bin/env python3
"""Checks deploy/ and docs/operations.md against the code, without a Docker engine.

Run through deploy/check.sh, which provides PyYAML, kubernetes-validate and hadolint. Every
check prints one line, `ok`, `FAIL` or `skip`, and the script exits 1 when any check failed.
`--no-build` skips the release build and everything that needs the binary.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.error
import urllib.request
from fnmatch import fnmatch
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "deploy/docker/Dockerfile"
COMPOSE = ROOT / "deploy/docker/docker-compose.yml"
# One file per deployment mode, used on top of COMPOSE.
COMPOSE_MODES = {mode: ROOT / f"deploy/docker/{mode}.yml" for mode in ("stream-only", "drop-in")}
# The JetStream tier, used on top of either mode.
COMPOSE_JETSTREAM = ROOT / "deploy/docker/jetstream.yml"
NATS_CONF = ROOT / "deploy/docker/nats.conf"
K8S = ROOT / "deploy/kubernetes/planetmint-streams.yaml"
K8S_NATS = ROOT / "deploy/kubernetes/nats-jetstream.yaml"
UNIT = ROOT / "deploy/systemd/planetmint-streams.service"
DASHBOARD = ROOT / "deploy/grafana/planetmint-streams.json"
OPERATIONS = ROOT / "docs/operations.md"
CONFIGURATION = ROOT / "docs/configuration.md"
WORK = ROOT / "target/deploy-check"

# The build command the project promises for the image.
BUILD_COMMAND = "cargo build --release --locked --bins -p planetmint-streams"
# Debian packages whose libraries the binary may use: debian:bookworm-slim holds every
# Essential and `Priority: required` package with their dependencies, and these two are such
# dependencies (check_slim_packages asks apt which package pulls each in).
SLIM_PACKAGES = {"libc6": "bash", "libgcc-s1": "apt"}
BOOKWORM_GLIBC = (2, 36)
# Planetmint 2.5.3's settings (planetmint/config.py) as environment variables
# (PLANETMINT_<SECTION>_<KEY>): the ones the compose file may set.
PLANETMINT_ENV = {
    "PLANETMINT_DATABASE_BACKEND", "PLANETMINT_DATABASE_HOST", "PLANETMINT_DATABASE_PORT",
    "PLANETMINT_SERVER_BIND", "PLANETMINT_SERVER_WORKERS", "PLANETMINT_SERVER_LOGLEVEL",
    "PLANETMINT_WSSERVER_SCHEME", "PLANETMINT_WSSERVER_HOST", "PLANETMINT_WSSERVER_PORT",
    "PLANETMINT_WSSERVER_ADVERTISED_SCHEME", "PLANETMINT_WSSERVER_ADVERTISED_HOST",
    "PLANETMINT_WSSERVER_ADVERTISED_PORT", "PLANETMINT_TENDERMINT_HOST",
    "PLANETMINT_TENDERMINT_PORT",
}

failures: list[str] = []


def report(ok: bool | None, what: str, detail: str = "") -> bool:
    tag = {True: "ok  ", False: "FAIL", None: "skip"}[ok]
    print(f"{tag}  {what}" + (f": {detail}" if detail else ""))
    if ok is False:
        failures.append(what)
    return bool(ok)


def rust_sources() -> list[Path]:
    return sorted([*ROOT.glob("src/**/*.rs"), *ROOT.glob("crates/*/src/**/*.rs")])


def source_text() -> str:
    return "\n".join(p.read_text() for p in rust_sources())


# ---------------------------------------------------------------------------------------------
# What the code defines: metrics, config keys, log messages.

CONSTRUCTORS = {
    "IntGaugeVec::new": "gauge", "IntGauge::new": "gauge", "IntCounterVec::new": "counter",
    "IntCounter::new": "counter", "by_stream(": "counter", "HistogramOpts::new": "histogram",
}


def code_metrics() -> dict[str, dict]:
    """Every metric registered in the code: name -> {type, labels}."""
    metrics: dict[str, dict] = {}
    for path in rust_sources():
        text = path.read_text()
        # A name held in a constant (`const NAME: &str = "planetmint_streams_..."`) is read
        # where the constructor uses it, not where it is defined.
        for const in re.finditer(r'const ([A-Z_]+): &str = ("planetmint_streams_[a-z0-9_]+");', text):
            text = text.replace(const.group(0), "")
            text = re.sub(rf"((?:Histogram)?Opts::new\(\s*){const.group(1)}\b", rf"\g<1>{const.group(2)}", text)
        literals = list(re.finditer(r'"(planetmint_streams_[a-z0-9_]+)"', text))
        for i, match in enumerate(literals):
            before = text[: match.start()]
            kind, where = None, -1
            for token, metric_type in CONSTRUCTORS.items():
                at = before.rfind(token)
                if at > where:
                    kind, where = metric_type, at
            end = literals[i + 1].start() if i + 1 < len(literals) else len(text)
            after = text[match.end(): end]
            labels_match = re.search(r'&\[((?:"[a-z_]+",?\s*)+)\]\s*,?\s*\)', after)
            if before.rfind("by_stream(") == where:
                labels = ["stream"]
            elif labels_match and after.find("?") > labels_match.start():
                labels = re.findall(r'"([a-z_]+)"', labels_match.group(1))
            else:
                labels = []
            metrics[match.group(1)] = {"type": kind, "labels": labels, "file": path.name}
    return metrics


def config_keys() -> set[str]:
    """`section.key` of every configuration key, from docs/configuration.md (tested against the
    Config struct by src/config.rs)."""
    keys = set()
    for line in CONFIGURATION.read_text().splitlines():
        m = re.match(r"\| `([a-z]+\.[a-z_]+)` \|", line)
        if m:
            keys.add(m.group(1))
    return keys


def env_to_key(name: str) -> str | None:
    m = re.fullmatch(r"PLANETMINT_STREAMS_([A-Z]+)__([A-Z_]+)", name)
    return f"{m.group(1).lower()}.{m.group(2).lower()}" if m else None


def metric_base(name: str, known: dict) -> str:
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and name[: -len(suffix)] in known:
            return name[: -len(suffix)]
    return name


# ---------------------------------------------------------------------------------------------
# Dockerfile

def dockerfile_stages() -> list[list[str]]:
    """Instructions (continuations joined) per stage."""
    text = DOCKERFILE.read_text()
    lines, current = [], ""
    for raw in text.splitlines():
        if raw.lstrip().startswith("#") and not current:
            continue
        if raw.rstrip().endswith("\\"):
            current += raw.rstrip()[:-1] + " "
            continue
        current += raw
        if current.strip():
            lines.append(current.strip())
        current = ""
    stages: list[list[str]] = []
    for line in lines:
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def dockerignore() -> list[str]:
    path = ROOT / ".dockerignore"
    if not path.exists():
        return []
    return [l.strip() for l in path.read_text().splitlines() if l.strip() and not l.startswith("#")]


def ignored(rel: str, patterns: list[str]) -> bool:
    parts = rel.split("/")
    return any(fnmatch(rel, p) or fnmatch(parts[0], p) or fnmatch(parts[-1], p.removeprefix("**/"))
               for p in patterns)


def check_dockerfile(venv_bin: Path) -> list[str]:
    """Static checks; returns the build stage's COPY sources."""
    hadolint = venv_bin / "hadolint"
    if hadolint.exists():
        r = subprocess.run([str(hadolint), str(DOCKERFILE)], capture_output=True, text=True)
        report(r.returncode == 0, "Dockerfile: hadolint", (r.stdout + r.stderr).strip() or "no findings")
    else:
        report(None, "Dockerfile: hadolint", "not installed")
    stages = dockerfile_stages()
    report(len(stages) == 2, "Dockerfile: two stages (build, runtime)", f"{len(stages)} stages")
    text = DOCKERFILE.read_text()
    args = dict(re.findall(r"^ARG (\w+)=(\S+)", text, re.M))
    build_from = stages[0][0]
    runtime_from = stages[-1][0]
    image = build_from.split()[1].replace("${RUST_VERSION}", args.get("RUST_VERSION", "?")).replace(
        "${DEBIAN_RELEASE}", args.get("DEBIAN_RELEASE", "?"))
    runtime = runtime_from.split()[1].replace("${DEBIAN_RELEASE}", args.get("DEBIAN_RELEASE", "?"))
    report(image.startswith("rust:") and image.endswith("-bookworm"), "Dockerfile: builder is a Debian bookworm Rust image", image)
    report(runtime == "debian:bookworm-slim", "Dockerfile: runtime is debian:bookworm-slim", runtime)
    report(BUILD_COMMAND in " ".join(stages[0]), "Dockerfile: builds with the project's command", BUILD_COMMAND)
    copies = []
    for line in stages[0]:
        if line.upper().startswith("COPY ") and "--from" not in line:
            copies += line.split()[1:-1]
    missing = [c for c in copies if not (ROOT / c).exists()]
    report(not missing, "Dockerfile: build-stage COPY sources exist", ", ".join(copies) + (f"; missing {missing}" if missing else ""))
    patterns = dockerignore()
    hidden = [c for c in copies + ["config/default.toml"] if ignored(c, patterns)]
    report(not hidden, ".dockerignore keeps everything the Dockerfile copies", f"ignores {patterns}")
    runtime_text = " ".join(stages[-1])
    user = re.search(r"\bUSER (\S+)", runtime_text)
    report(bool(user) and user.group(1).split(":")[0] not in ("0", "root"), "Dockerfile: runtime runs as a non-root user", user.group(1) if user else "no USER")
    report(re.search(r"\bEXPOSE 9984 9985\b", runtime_text) is not None, "Dockerfile: EXPOSE 9984 9985")
    entry = re.search(r"ENTRYPOINT (\[.*\])", runtime_text)
    entrypoint = json.loads(entry.group(1)) if entry else []
    shipped = "COPY config/default.toml /etc/planetmint-streams/config.toml" in runtime_text
    report(shipped and entrypoint[-2:] == ["--config", "/etc/planetmint-streams/config.toml"],
           "Dockerfile: ships config/default.toml and the entrypoint reads it", " ".join(entrypoint))
    # The compiler: at least the workspace's rust-version and every locked dependency's.
    want = tuple(int(x) for x in args.get("RUST_VERSION", "0").split("."))
    workspace = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["package"]["rust-version"]
    needed, who = tuple(int(x) for x in workspace.split(".")), "workspace"
    try:
        tree = subprocess.run(["cargo", "tree", "--locked", "-p", "planetmint-streams", "-e", "normal,build",
                               "--prefix", "none", "-f", "{p}"], cwd=ROOT, capture_output=True, text=True, check=True)
        in_build = {tuple(l.split()[:2]) for l in tree.stdout.splitlines() if l.strip()}
        meta = json.loads(subprocess.run(["cargo", "metadata", "--locked", "--format-version", "1"], cwd=ROOT,
                                         capture_output=True, text=True, check=True).stdout)
        for pkg in meta["packages"]:
            if (pkg["name"], "v" + pkg["version"]) in in_build and pkg.get("rust_version"):
                v = tuple(int(x) for x in pkg["rust_version"].split(".")[:2])
                if v > needed[:2]:
                    needed, who = v, f'{pkg["name"]} {pkg["version"]}'
        report(want[:2] >= needed[:2], "Dockerfile: RUST_VERSION covers every dependency's rust-version",
               f"RUST_VERSION={args.get('RUST_VERSION')}, highest needed {'.'.join(map(str, needed))} ({who}) over {len(in_build)} packages")
    except (subprocess.CalledProcessError, FileNotFoundError) as err:
        report(None, "Dockerfile: RUST_VERSION vs dependencies", f"cargo unavailable: {err}")
    local = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.split()
    local_version = tuple(int(x) for x in local[1].split(".")[:2]) if len(local) > 1 else ()
    report(True if local_version == want[:2] else None, "Dockerfile: the local build below uses the image's compiler version",
           f"local rustc {'.'.join(map(str, local_version))}, image {args.get('RUST_VERSION')}")
    return copies


def healthcheck_command() -> list[str]:
    for line in dockerfile_stages()[-1]:
        m = re.match(r"HEALTHCHECK .*?CMD (\[.*\])$", line)
        if m:
            return json.loads(m.group(1))
    return []


def staged_build(copies: list[str]) -> Path | None:
    """Copies what the build stage copies (minus .dockerignore) and runs its cargo build there."""
    context = WORK / "context"
    if context.exists():
        shutil.rmtree(context)
    context.mkdir(parents=True)
    patterns = dockerignore()
    for item in copies:
        src = ROOT / item
        if src.is_dir():
            shutil.copytree(src, context / item, copy_function=shutil.copy2,
                            ignore=lambda d, names: [n for n in names if ignored(
                                str((Path(d) / n).relative_to(ROOT)), patterns)])
        else:
            shutil.copy2(src, context / item)
    env = dict(os.environ, CARGO_TARGET_DIR=str(ROOT / "target"))
    print(f"....  running `{BUILD_COMMAND}` in {context.relative_to(ROOT)} (the image's build context)", flush=True)
    started = time.monotonic()
    r = subprocess.run(BUILD_COMMAND.split(), cwd=context, env=env)
    binary = ROOT / "target/release/planetmint-streams"
    ok = report(r.returncode == 0 and binary.exists(), "Dockerfile build command succeeds on the build context alone",
                f"{time.monotonic() - started:.0f} s")
    return binary if ok else None


def check_slim_packages() -> None:
    """Each allowed package is a dependency of a package every Debian image has."""
    if not shutil.which("apt-cache"):
        report(None, "bookworm-slim has libc6 and libgcc-s1", "no apt-cache")
        return
    found = []
    for pkg, via in SLIM_PACKAGES.items():
        show = subprocess.run(["apt-cache", "show", via], capture_output=True, text=True).stdout
        required = re.search(r"^(Essential: yes|Priority: required)", show, re.M) is not None
        closure = subprocess.run(["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests",
                                  "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances", via],
                                 capture_output=True, text=True).stdout
        if required and re.search(rf"Depends: {re.escape(pkg)}$", closure, re.M):
            found.append(f"{pkg} via {via}")
    report(len(found) == len(SLIM_PACKAGES), "bookworm-slim has the allowed library packages (dependencies of required packages)", ", ".join(found))


def check_libraries(binary: Path) -> None:
    check_slim_packages()
    r = subprocess.run(["ldd", str(binary)], capture_output=True, text=True)
    libs = []
    for line in r.stdout.splitlines():
        m = re.match(r"\s*(\S+)(?: => (\S+))?", line)
        if m:
            libs.append((m.group(1), m.group(2) or (m.group(1) if m.group(1).startswith("/") else None)))
    packages, unknown = {}, []
    for name, path in libs:
        if name.startswith("linux-vdso"):
            continue
        if not path or path == "not":
            unknown.append(name)
            continue
        owner = subprocess.run(["dpkg", "-S", os.path.realpath(path)], capture_output=True, text=True)
        if owner.returncode != 0:
            owner = subprocess.run(["dpkg", "-S", path], capture_output=True, text=True)
        pkg = owner.stdout.split(":")[0] if owner.returncode == 0 else "?"
        packages[name] = pkg
        if pkg not in SLIM_PACKAGES:
            unknown.append(f"{name} ({pkg})")
    report(not unknown, "binary: every shared library comes from libc6 or libgcc-s1",
           ", ".join(f"{k} [{v}]" for k, v in packages.items()) + (f"; unexpected: {unknown}" if unknown else ""))
    r = subprocess.run(["objdump", "-T", str(binary)], capture_output=True, text=True)
    versions = {tuple(int(x) for x in v.split(".")) for v in re.findall(r"GLIBC_(\d+(?:\.\d+)+)", r.stdout)}
    newest = max(versions) if versions else (0,)
    report(newest <= BOOKWORM_GLIBC, "binary: needs glibc <= 2.36 (bookworm)", "newest symbol version GLIBC_" + ".".join(map(str, newest)))


# ---------------------------------------------------------------------------------------------
# The binary as the image runs it

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=3) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def check_config(binary: Path, env: dict[str, str], config: Path, what: str, expect: list[str]) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PLANETMINT_STREAMS_")}
    r = subprocess.run([str(binary), "--config", str(config), "--check-config"], env={**clean, **env},
                       capture_output=True, text=True)
    missing = [e for e in expect if e not in r.stdout]
    report(r.returncode == 0 and not missing, f"--check-config accepts {what}",
           (r.stderr.strip() or f"missing {missing}") if r.returncode or missing else "exit 0")


def smoke_run(binary: Path, metrics: dict) -> None:
    api, streams, dead = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLANETMINT_STREAMS_")}
    env.update({
        "PLANETMINT_STREAMS_TARANTOOL__ADDRESS": f"127.0.0.1:{dead}",  # nothing listens there
        "PLANETMINT_STREAMS_STREAMS__BIND": f"127.0.0.1:{streams}",
        "PLANETMINT_STREAMS_API__BIND": f"127.0.0.1:{api}",
        "PLANETMINT_STREAMS_LOG__FORMAT": "json",
    })
    log = open(WORK / "smoke.log", "w")
    # As the image's ENTRYPOINT does, with the file the image ships.
    proc = subprocess.Popen([str(binary), "--config", str(ROOT / "config/default.toml")], env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{api}"
        for _ in range(100):
            try:
                status, body = http_get(base + "/health")
                break
            except OSError:
                time.sleep(0.1)
        else:
            status, body = 0, ""
        report(status == 200 and json.loads(body or "{}").get("status") == "ok", "smoke: /health is 200 without Tarantool", body.strip())
        status, body = http_get(base + "/ready")
        ready = json.loads(body or "{}")
        fields = {"ready", "source_reachable", "head_height", "streamed_height", "lag_blocks", "reason"}
        report(status == 503 and set(ready) == fields and ready["ready"] is False,
               "smoke: /ready is 503 with its JSON fields while Tarantool is unreachable", body.strip())
        status, body = http_get(base + "/metrics")
        types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", body, re.M))
        wrong = {n: (t, metrics.get(n, {}).get("type")) for n, t in types.items() if metrics.get(n, {}).get("type") != t}
        report(status == 200 and types and not wrong, "smoke: /metrics TYPE lines match the types read from the code",
               f"{len(types)} metrics exported before any traffic" + (f"; differ: {wrong}" if wrong else ""))
        probe = healthcheck_command()
        if probe:
            probe = [p.replace("/9984", f"/{api}") for p in probe]
            ok = subprocess.run(probe, capture_output=True, timeout=5).returncode == 0
            down = [p.replace(f"/{api}", f"/{dead}") for p in probe]
            refused = subprocess.run(down, capture_output=True, timeout=5).returncode != 0
            report(ok and refused, "smoke: the Dockerfile's HEALTHCHECK command passes on a live API and fails on a closed port")
        else:
            report(False, "smoke: Dockerfile HEALTHCHECK found")
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        report(code == 0, "smoke: SIGTERM exits 0", f"after {time.monotonic() - started:.1f} s")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    messages = [json.loads(l).get("message", json.loads(l).get("fields", {}).get("message"))
                for l in (WORK / "smoke.log").read_text().splitlines() if l.startswith("{")]
    report("planetmint-streams started" in messages, "smoke: JSON log lines", f"{len(messages)} lines, e.g. {messages[:3]}")


# ---------------------------------------------------------------------------------------------
# Compose

def interpolate(value: str) -> str:
    return re.sub(r"\$\{(\w+)(?::?-([^}]*))?\}", lambda m: os.environ.get(m.group(1), m.group(2) or ""), str(value))


def compose_env(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) for e in env)
    return {k: interpolate(v) for k, v in env.items()}


def published(service: dict) -> dict[int, int]:
    """host port -> container port."""
    out = {}
    for p in service.get("ports", []):
        parts = interpolate(str(p)).split(":")
        if len(parts) >= 2:
            out[int(parts[-2])] = int(parts[-1].split("/")[0])
    return out


def compose_modes() -> dict[str, dict]:
    """Each deployment mode's services: docker-compose.yml's, then its mode file's on top."""
    base = yaml.safe_load(COMPOSE.read_text())["services"]
    modes = {}
    for mode, path in COMPOSE_MODES.items():
        services = {name: dict(svc) for name, svc in base.items()}
        for name, svc in yaml.safe_load(path.read_text())["services"].items():
            services[name] = {**services.get(name, {}), **svc}
        modes[mode] = services
    return modes


def depends_on(service: dict) -> list[str]:
    deps = service.get("depends_on") or []
    return list(deps) if isinstance(deps, (list, dict)) else []


def check_compose(binary: Path | None, keys: set[str]) -> None:
    modes = compose_modes()
    report(True, "compose: YAML parses (base file and one file per mode)",
           ", ".join(f"{mode}: {len(services)} services" for mode, services in modes.items()))
    for path in [COMPOSE, *COMPOSE_MODES.values(), COMPOSE_JETSTREAM]:
        # podman-compose 1.0.3 (Debian 12) ignores profiles and crashes on network aliases.
        text = yaml.safe_load(path.read_text())
        unsupported = [n for n, svc in text["services"].items() if "profiles" in svc or isinstance(svc.get("networks"), dict)]
        report(not unsupported, f"compose: {path.name} uses no profiles and no network aliases (podman-compose 1.0.3)", str(unsupported) if unsupported else "")
    tool = None
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        tool = ["docker", "compose"]
    elif shutil.which("docker-compose"):
        tool = ["docker-compose"]
    for profile, active in modes.items():
        for name, svc in active.items():
            if not (svc.get("image") or svc.get("build")):
                report(False, f"compose[{profile}]: {name} has an image")
        dangling = [(n, d) for n, s in active.items() for d in depends_on(s) if d not in active]
        report(not dangling, f"compose[{profile}]: depends_on names active services", str(dangling) if dangling else ", ".join(sorted(active)))
        hosts = [h for s in active.values() for h in published(s)]
        report(len(hosts) == len(set(hosts)), f"compose[{profile}]: host ports published once", str(sorted(hosts)))
        planetmint, streams = active["planetmint"], active["streams"]
        penv, senv = compose_env(planetmint), compose_env(streams)
        unknown = sorted(set(penv) - PLANETMINT_ENV)
        report(not unknown, f"compose[{profile}]: Planetmint variables are Planetmint 2.5.3 settings", str(unknown) if unknown else f"{len(penv)} set")
        bad = sorted(k for k in senv if env_to_key(k) not in keys)
        report(not bad, f"compose[{profile}]: PLANETMINT_STREAMS_* variables name real config keys", str(bad) if bad else f"{len(senv)} set")
        ws_hidden = penv.get("PLANETMINT_WSSERVER_HOST") in ("127.0.0.1", "localhost") and 9985 not in published(planetmint).values()
        report(ws_hidden, f"compose[{profile}]: Planetmint's own websocket server is unreachable (loopback, unpublished)")
        streams_ports = published(streams)
        adv_port = int(senv.get("PLANETMINT_STREAMS_STREAMS__ADVERTISED_PORT", 9985))
        report(streams_ports.get(adv_port) == 9985 and penv.get("PLANETMINT_WSSERVER_ADVERTISED_PORT") == str(adv_port)
               and penv.get("PLANETMINT_WSSERVER_ADVERTISED_HOST") == senv.get("PLANETMINT_STREAMS_STREAMS__ADVERTISED_HOST"),
               f"compose[{profile}]: both servers advertise our published stream port and host", f"{senv.get('PLANETMINT_STREAMS_STREAMS__ADVERTISED_HOST')}:{adv_port}")
        bind_port = int(penv["PLANETMINT_SERVER_BIND"].rsplit(":", 1)[1])
        if profile == "drop-in":
            upstream = senv.get("PLANETMINT_STREAMS_API__UPSTREAM", "")
            report(upstream == f"http://planetmint:{bind_port}" and bind_port not in published(planetmint).values()
                   and streams_ports.get(9984) == 9984,
                   "compose[drop-in]: we own 9984, api.upstream is Planetmint's internal API port", f"{upstream}, Planetmint on {bind_port}")
        else:
            report("PLANETMINT_STREAMS_API__UPSTREAM" not in senv and published(planetmint).get(9984) == bind_port == 9984,
                   "compose[stream-only]: Planetmint keeps 9984, no upstream", f"our API on host port {[h for h, c in streams_ports.items() if c == 9984]}")
        if binary:
            expect = ['upstream = "http://planetmint:9986"'] if profile == "drop-in" else []
            check_config(binary, senv, ROOT / "config/default.toml", f"compose[{profile}]'s streams environment", expect)
        if tool:
            r = subprocess.run([*tool, "-f", str(COMPOSE), "-f", str(COMPOSE_MODES[profile]), "config", "-q"], capture_output=True, text=True)
            report(r.returncode == 0, f"compose[{profile}]: `{' '.join(tool)} config` accepts it", r.stderr.strip()[:300])
    if not tool:
        report(None, "compose: `docker compose config`", "neither docker compose nor docker-compose installed")
    check_compose_jetstream(modes, keys, binary, tool)


def check_compose_jetstream(modes: dict[str, dict], keys: set[str], binary: Path | None, tool: list[str] | None) -> None:
    """jetstream.yml on top of either mode: a 3-node NATS JetStream cluster whose configuration
    nats-server accepts, and planetmint-streams told where it is."""
    overlay = yaml.safe_load(COMPOSE_JETSTREAM.read_text())["services"]
    nats = {n: s for n, s in overlay.items() if n != "streams"}
    report(sorted(nats) == ["nats-1", "nats-2", "nats-3"], "compose[jetstream]: three NATS nodes", str(sorted(nats)))
    names = [compose_env(s).get("SERVER_NAME") for s in nats.values()]
    report(sorted(names) == sorted(nats), "compose[jetstream]: each node's SERVER_NAME is its service name", str(names))
    routes = sorted(re.findall(r"nats-route://([\w-]+):6222", NATS_CONF.read_text()))
    report(routes == sorted(nats), "compose[jetstream]: cluster routes name the three services", str(routes))
    mounted = all(any(str(v).endswith(":/etc/nats/nats.conf:ro") for v in s.get("volumes", [])) for s in nats.values())
    report(mounted, "compose[jetstream]: every node mounts deploy/docker/nats.conf")
    for mode, services in modes.items():
        # Compose merges an override's environment into the service's; the rest is replaced.
        streams = {**services["streams"], **{k: v for k, v in overlay["streams"].items() if k != "environment"}}
        streams["environment"] = {**compose_env(services["streams"]), **compose_env(overlay["streams"])}
        active = {**services, **nats, "streams": streams}
        senv = compose_env(streams)
        bad = sorted(k for k in senv if env_to_key(k) not in keys)
        report("PLANETMINT_STREAMS_NATS__URL" in senv and not bad,
               f"compose[{mode}+jetstream]: the [nats] variables name real config keys", str(bad) if bad else f"{len(senv)} set")
        hosts = [h for s in active.values() for h in published(s)]
        report(len(hosts) == len(set(hosts)), f"compose[{mode}+jetstream]: host ports published once", str(sorted(hosts)))
        if binary:
            check_config(binary, senv, ROOT / "config/default.toml", f"compose[{mode}+jetstream]'s streams environment", ["replicas = 3"])
        if tool:
            r = subprocess.run([*tool, "-f", str(COMPOSE), "-f", str(COMPOSE_MODES[mode]), "-f", str(COMPOSE_JETSTREAM), "config", "-q"],
                               capture_output=True, text=True)
            report(r.returncode == 0, f"compose[{mode}+jetstream]: `{' '.join(tool)} config` accepts it", r.stderr.strip()[:300])
    if shutil.which("nats-server"):
        for name in sorted(nats):
            r = subprocess.run(["nats-server", "-c", str(NATS_CONF), "-t"], capture_output=True, text=True,
                               env={**os.environ, "SERVER_NAME": name})
            report(r.returncode == 0, f"compose[jetstream]: `nats-server -t` accepts nats.conf as {name}",
                   (r.stdout + r.stderr).strip()[:300])
    else:
        report(None, "compose[jetstream]: nats-server -t", "nats-server not installed")


# ---------------------------------------------------------------------------------------------
# Kubernetes

def check_kubernetes(binary: Path | None, venv_bin: Path) -> None:
    docs = [d for d in yaml.safe_load_all(K8S.read_text()) if d]
    kinds = {d["kind"]: d for d in docs}
    report(set(kinds) == {"ConfigMap", "Deployment", "Service"}, "k8s: ConfigMap, Deployment, Service", str(sorted(kinds)))
    validator = venv_bin / "kubernetes-validate"
    if validator.exists():
        r = subprocess.run([str(validator), "--strict", "--quiet", str(K8S)], capture_output=True, text=True)
        report(r.returncode == 0, "k8s: kubernetes-validate --strict (bundled API schemas)", (r.stdout + r.stderr).strip()[:400] or "valid")
    else:
        report(None, "k8s: kubernetes-validate", "not installed")
    text = kinds["ConfigMap"]["data"]["config.toml"]
    config = tomllib.loads(text)
    grace = int(re.fullmatch(r"(\d+)s", config.get("streams", {}).get("shutdown_grace", "5s")).group(1))
    pod = kinds["Deployment"]["spec"]["template"]
    spec, container = pod["spec"], pod["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    api_port = int(config["api"]["bind"].rsplit(":", 1)[1])
    report(ports == {"api": api_port, "streams": int(config["streams"]["bind"].rsplit(":", 1)[1])},
           "k8s: container ports match api.bind and streams.bind", str(ports))
    r, l = container["readinessProbe"]["httpGet"], container["livenessProbe"]["httpGet"]
    report((r["path"], ports.get(r["port"], r["port"])) == ("/ready", 9984) and (l["path"], ports.get(l["port"], l["port"])) == ("/health", 9984),
           "k8s: readiness GET /ready, liveness GET /health, on 9984")
    ann = pod["metadata"]["annotations"]
    report(ann.get("prometheus.io/scrape") == "true" and ann.get("prometheus.io/port") == "9984" and ann.get("prometheus.io/path") == "/metrics",
           "k8s: Prometheus scrape annotations")
    pre = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    pause = int(pre[1]) if pre[:1] == ["sleep"] else 0
    worst = pause + 2 * grace + 8
    report(spec["terminationGracePeriodSeconds"] > worst, "k8s: terminationGracePeriodSeconds > preStop + 2 x shutdown_grace + 8 s",
           f"{spec['terminationGracePeriodSeconds']} > {worst}")
    sc, psc = container["securityContext"], spec["securityContext"]
    report(psc.get("runAsNonRoot") and sc.get("readOnlyRootFilesystem") and sc.get("allowPrivilegeEscalation") is False,
           "k8s: non-root, read-only root filesystem, no privilege escalation")
    svc_ports = sorted(p["port"] for p in kinds["Service"]["spec"]["ports"])
    report(svc_ports == [9984, 9985], "k8s: Service exposes 9984 and 9985", str(svc_ports))
    mount = container["volumeMounts"][0]["mountPath"]
    report(mount == "/etc/planetmint-streams", "k8s: ConfigMap mounted where the image's entrypoint reads config.toml", mount)
    if binary:
        with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
            f.write(text)
        check_config(binary, {}, Path(f.name), "the ConfigMap's config.toml", ['upstream = "http://planetmint:9984"'])
        os.unlink(f.name)


def check_kubernetes_nats(venv_bin: Path) -> None:
    """The 3-node NATS JetStream cluster of the JetStream tier."""
    docs = [d for d in yaml.safe_load_all(K8S_NATS.read_text()) if d]
    kinds = sorted(d["kind"] for d in docs)
    report(kinds == ["ConfigMap", "Service", "Service", "StatefulSet"], "k8s[nats]: ConfigMap, two Services, StatefulSet", str(kinds))
    validator = venv_bin / "kubernetes-validate"
    if validator.exists():
        r = subprocess.run([str(validator), "--strict", "--quiet", str(K8S_NATS)], capture_output=True, text=True)
        report(r.returncode == 0, "k8s[nats]: kubernetes-validate --strict", (r.stdout + r.stderr).strip()[:400] or "valid")
    sts = next(d for d in docs if d["kind"] == "StatefulSet")
    replicas, service = sts["spec"]["replicas"], sts["spec"]["serviceName"]
    conf = next(d for d in docs if d["kind"] == "ConfigMap")["data"]["nats.conf"]
    routes = sorted(re.findall(r"nats-route://([\w.-]+):6222", conf))
    wanted = sorted(f"{sts['metadata']['name']}-{i}.{service}" for i in range(replicas))
    report(replicas == 3 and routes == wanted, "k8s[nats]: 3 replicas, routes name each pod through the headless Service", str(routes))
    if shutil.which("nats-server"):
        tmp = Path(tempfile.mkdtemp())
        (tmp / "nats.conf").write_text(conf)
        r = subprocess.run(["nats-server", "-c", str(tmp / "nats.conf"), "-t"], capture_output=True, text=True,
                           env={**os.environ, "SERVER_NAME": "nats-0"})
        report(r.returncode == 0, "k8s[nats]: `nats-server -t` accepts the ConfigMap's nats.conf", (r.stdout + r.stderr).strip()[:300])
    else:
        report(None, "k8s[nats]: nats-server -t", "nats-server not installed")


# ---------------------------------------------------------------------------------------------
# systemd

def check_systemd(binary: Path | None) -> None:
    text = UNIT.read_text()
    settings = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            settings.setdefault(k.strip(), []).append(v.strip())
    need = {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
            "PrivateDevices": "yes", "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX", "MemoryDenyWriteExecute": "yes",
            "CapabilityBoundingSet": "", "Restart": "on-failure", "KillSignal": "SIGTERM"}
    wrong = {k: settings.get(k) for k, v in need.items() if v not in settings.get(k, [])}
    report(not wrong and "@system-service" in settings.get("SystemCallFilter", []), "systemd: hardening and restart settings", str(wrong) if wrong else "")
    stop = int(settings["TimeoutStopSec"][0].rstrip("s"))
    report(stop > 2 * 5 + 8, "systemd: TimeoutStopSec above 2 x shutdown_grace (5 s) + 8 s", f"{stop}s")
    if not shutil.which("systemd-analyze"):
        report(None, "systemd: systemd-analyze", "not installed")
        return
    tmp = Path(tempfile.mkdtemp())
    unit = tmp / UNIT.name
    exe = str(binary) if binary else "/bin/true"
    unit.write_text(text.replace("/usr/local/bin/planetmint-streams", exe))
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    # Lines about other units on this machine are not ours to judge.
    ours = [l for l in (r.stdout + r.stderr).splitlines() if UNIT.name in l]
    report(r.returncode == 0 and not ours, "systemd: systemd-analyze verify", "; ".join(ours) or f"ExecStart={exe}")
    r = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager", str(unit)], capture_output=True, text=True)
    score = re.search(r"Overall exposure level for \S+: (.*)", r.stdout)
    report(score is not None, "systemd: systemd-analyze security --offline", score.group(1) if score else (r.stderr.strip()[:200]))
    shutil.rmtree(tmp)


# ---------------------------------------------------------------------------------------------
# Open files: every deployment's nofile limit fits its streams.max_connections

# What a container gets on Kubernetes, which has no per-pod setting: the hard limit of
# containerd's and CRI-O's default unit (LimitNOFILE=1048576).
K8S_RUNTIME_NOFILE = 1048576


def nofile_reserve() -> int:
    """NOFILE_RESERVE of src/nofile.rs: descriptors a node needs besides its subscribers."""
    m = re.search(r"pub const NOFILE_RESERVE: u64 = ([0-9_]+);", (ROOT / "src/nofile.rs").read_text())
    return int(m.group(1).replace("_", "")) if m else 256


def max_connections(toml_text: str | None = None, env: dict[str, str] | None = None) -> int:
    """streams.max_connections of a deployment: its environment, its config, else the default file's."""
    if env and "PLANETMINT_STREAMS_STREAMS__MAX_CONNECTIONS" in env:
        return int(env["PLANETMINT_STREAMS_STREAMS__MAX_CONNECTIONS"])
    for text in (toml_text, (ROOT / "config/default.toml").read_text()):
        if text is not None:
            value = tomllib.loads(text).get("streams", {}).get("max_connections")
            if value is not None:
                return int(value)
    return 10000


def check_nofile() -> None:
    reserve = nofile_reserve()
    need = max_connections() + reserve
    # systemd: the unit reads a copy of config/default.toml.
    unit = {k.strip(): v.strip() for k, v in (l.split("=", 1) for l in UNIT.read_text().splitlines()
                                              if "=" in l and not l.startswith("#"))}
    limit = unit.get("LimitNOFILE", "0").split(":")[0]
    report(limit == "infinity" or int(limit) >= need, "nofile: systemd LimitNOFILE >= streams.max_connections + reserve",
           f"{limit} >= {need}")
    # compose: every streams service's ulimits, against its environment's max_connections.
    for mode, services in sorted(compose_modes().items()):
        svc = services["streams"]
        nofile = svc.get("ulimits", {}).get("nofile", {})
        soft, hard = (nofile, nofile) if not isinstance(nofile, dict) else (nofile.get("soft", 0), nofile.get("hard", 0))
        soft, hard = int(interpolate(str(soft))), int(interpolate(str(hard)))
        want = max_connections(None, compose_env(svc)) + reserve
        report(min(soft, hard) >= want, f"nofile: compose[{mode}] streams ulimits.nofile >= streams.max_connections + reserve",
               f"soft {soft}, hard {hard}, need {want}")
    # Dockerfile: the documented `docker run` passes a --ulimit that fits the image's config.
    m = re.search(r"--ulimit nofile=(\d+):(\d+)", DOCKERFILE.read_text())
    report(bool(m) and min(int(m.group(1)), int(m.group(2))) >= need, "nofile: Dockerfile's docker run --ulimit nofile fits",
           f"{m.group(0) if m else 'no --ulimit nofile'}, need {need}")
    # Kubernetes: the ConfigMap's max_connections must fit the runtime's default hard limit.
    for manifest in sorted((ROOT / "deploy/kubernetes").glob("*.yaml")):
        for doc in yaml.safe_load_all(manifest.read_text()):
            if doc and doc.get("kind") == "ConfigMap" and "config.toml" in doc.get("data", {}):
                want = max_connections(doc["data"]["config.toml"]) + reserve
                report(want <= K8S_RUNTIME_NOFILE, f"nofile: {manifest.name} max_connections + reserve within the runtime's {K8S_RUNTIME_NOFILE}",
                       f"need {want}")


# ---------------------------------------------------------------------------------------------
# Dashboard and docs

def check_dashboard(metrics: dict) -> None:
    board = json.loads(DASHBOARD.read_text())
    panels = board.get("panels", [])
    ids = [p["id"] for p in panels]
    report(len(ids) == len(set(ids)) and all("gridPos" in p for p in panels), "dashboard: JSON parses, panel ids unique, laid out",
           f"{len(panels)} panels, schemaVersion {board.get('schemaVersion')}")
    variables = {v["name"] for v in board.get("templating", {}).get("list", [])}
    used, unknown = set(), set()
    for p in panels:
        for t in p.get("targets", []):
            expr = t.get("expr", "")
            for var in re.findall(r"\$\{?(\w+)", expr):
                if not var.startswith("__") and var not in variables:
                    unknown.add("$" + var)
            for name in re.findall(r"planetmint_streams_[a-z0-9_]+", expr):
                base = metric_base(name, metrics)
                (used if base in metrics else unknown).add(base if base in metrics else name)
        ds = p.get("datasource", {})
        if p.get("type") != "row" and ds.get("uid") not in ("${datasource}", "$datasource"):
            unknown.add(f"panel {p['id']} datasource {ds}")
    report(not unknown, "dashboard: every metric and variable it uses exists", ", ".join(sorted(unknown)) if unknown else f"{len(used)} metrics")
    exprs = [t.get("expr", "") for p in panels for t in p.get("targets", [])]
    for name in sorted(used):
        if metrics[name]["type"] == "histogram":
            quantiles = [e for e in exprs if e.startswith("histogram_quantile(") and f"{name}_bucket" in e]
            report(bool(quantiles), f"dashboard: {name} read through histogram_quantile over _bucket", f"{len(quantiles)} queries")
    raw = set()
    for p in panels:
        for t in p.get("targets", []):
            expr = t.get("expr", "")
            for m in re.finditer(r"planetmint_streams_[a-z0-9_]+", expr):
                base = metric_base(m.group(0), metrics)
                if metrics.get(base, {}).get("type") in ("counter", "histogram") and \
                        not re.search(r"(rate|increase)\(\s*$", expr[: m.start()]):
                    raw.add(m.group(0))
    report(not raw, "dashboard: counters and histogram buckets only inside rate()/increase()", str(sorted(raw)) if raw else "")
    missing = sorted(set(metrics) - used)
    report(not missing, "dashboard: every metric the code registers is on it",
           f"missing {', '.join(missing)}" if missing else f"{len(used)} of {len(metrics)}")


# Where a quoted message leaves something out: `{name}` or `...`.
PLACEHOLDER = re.compile(r"\{[^}]*\}|\.\.\.")
# The frame of every configuration problem (model's ConfigProblem): the key, then the problem.
CONFIG_FRAME = "invalid configuration: {key}: {problem}"


def quoted_in_code(quote: str, code: str) -> bool:
    """Whether the code can emit a message quoted with placeholders: every literal part of it
    is in the code. A configuration problem is read as its frame, its key and its problem."""
    frame = re.fullmatch(r"invalid configuration: ([a-z_]+(?:\.[a-z_]+)+): (.*)", quote)
    if frame:
        key, quote = frame.groups()
        if CONFIG_FRAME not in code or f'"{key}"' not in code:
            return False
    parts = [part.strip(' "') for part in PLACEHOLDER.split(quote)]
    return all(part in code for part in parts if re.search(r"[A-Za-z]", part))


def check_operations(metrics: dict, keys: set[str], code: str) -> None:
    doc = OPERATIONS.read_text()
    rows = {}
    for line in doc.splitlines():
        m = re.match(r"\| `(planetmint_streams_[a-z0-9_]+)` \| (\w+) \| ([^|]*) \|", line)
        if m:
            rows[m.group(1)] = {"type": m.group(2), "labels": re.findall(r"`([a-z_]+)`", m.group(3))}
    report(set(rows) == set(metrics), "operations.md: metrics table lists exactly the registered metrics",
           f"missing {sorted(set(metrics) - set(rows))}, extra {sorted(set(rows) - set(metrics))}" if set(rows) != set(metrics) else f"{len(rows)} metrics")
    differ = {n: (r, metrics[n]) for n, r in rows.items() if n in metrics and
              (r["type"] != metrics[n]["type"] or r["labels"] != metrics[n]["labels"])}
    report(not differ, "operations.md: metric types and labels match the code", str(differ) if differ else "")
    # (A name followed by `=` is a crate in a log filter, not a metric.)
    names = {metric_base(n, metrics) for n in re.findall(r"planetmint_streams_[a-z0-9_]+(?![a-z0-9_=])", doc)}
    report(names <= set(metrics), "operations.md: every metric name it mentions exists",
           str(sorted(names - set(metrics))) if names - set(metrics) else f"{len(names)} names")
    # Label values quoted in the metrics table exist as string literals in the code.
    values = set()
    for line in doc.splitlines():
        if line.startswith("| `planetmint_streams_"):
            cells = line.split("|")
            values |= set(re.findall(r"`([a-z][a-z_]*)`", cells[4])) if len(cells) > 4 else set()
    literal = {v for v in values if f'"{v}"' in code}
    report(values == literal, "operations.md: label values in the metrics table are literals in the code",
           f"not found: {sorted(values - literal)}" if values != literal else f"{len(values)} values")
    # Log messages of the troubleshooting section, verbatim in the code.
    heading = re.search(r"^## .*[Tt]roubleshooting.*$", doc, re.M)
    section = doc[heading.end():].split("\n## ", 1)[0] if heading else ""
    quoted = [m for line in section.splitlines() if line.startswith("| `")
              for m in [line.split("`")[1]]]
    absent = [q for q in quoted if not quoted_in_code(q, code)]
    report(bool(quoted) and not absent, "operations.md: troubleshooting quotes log messages the code emits",
           f"not in code: {absent}" if absent else f"{len(quoted)} messages")
    service_code = "\n".join(p.read_text() for p in rust_sources() if "devchain" not in p.parts)
    emitted = set(re.findall(r'(?:info|warn|error)!\([^;]*?"([^"{}]+)"\s*,?\s*\)?\s*[;,)]', service_code, re.S))
    undocumented = sorted(m for m in emitted if m not in section)
    print(f"      log lines (info/warn/error) not in the troubleshooting table: {undocumented or 'none'}")
    env_names = set(re.findall(r"PLANETMINT_STREAMS_[A-Z_]+__[A-Z_]+", doc))
    bad_env = sorted(e for e in env_names if env_to_key(e) not in keys)
    mentioned = set(re.findall(r"`((?:tarantool|streams|api|log)\.[a-z_]+)`", doc))
    bad_keys = sorted(mentioned - keys)
    report(not bad_env and not bad_keys, "operations.md: config keys and environment variables exist",
           f"env {bad_env}, keys {bad_keys}" if bad_env or bad_keys else f"{len(mentioned)} keys, {len(env_names)} variables")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-build", action="store_true", help="skip the release build and the checks that need the binary")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    venv_bin = Path(sys.executable).parent
    metrics = code_metrics()
    keys = config_keys()
    code = source_text()
    print(f"code: {len(metrics)} metrics, {len(keys)} config keys")
    copies = check_dockerfile(venv_bin)
    binary = None
    if not args.no_build:
        binary = staged_build(copies)
        if binary:
            check_libraries(binary)
            smoke_run(binary, metrics)
    check_compose(binary, keys)
    check_kubernetes(binary, venv_bin)
    check_kubernetes_nats(venv_bin)
    check_systemd(binary)
    check_nofile()
    if DASHBOARD.exists():
        check_dashboard(metrics)
    else:
        report(False, "dashboard exists")
    if OPERATIONS.exists():
        check_operations(metrics, keys, code)
    else:
        report(False, "docs/operations.md exists")
    print(f"\n{len(failures)} failed" + (": " + "; ".join(failures) if failures else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
