#!/usr/bin/env bash
# The test command (README's `make test`, and what CI runs): installs missing dependencies,
# then format check, clippy, and every test of the workspace. The end-to-end tests are one
# binary, tests/e2e (the node in process on an in-memory source; those about Tarantool, and
# those that run the node binary as a process, start real Tarantool processes, the JetStream
# ones a real nats-server, all on free loopback ports), plus tests/shared_bytes_e2e.rs, a
# binary of its own because it measures its process's memory. Each phase says how long it
# took.
#
# PMS_TEST_THREADS (default 8): how many tests of one binary run at once. The end-to-end tests
# mostly wait on sockets, timers and other processes, so far more of them than cores run side
# by side; they wait on events, not for fixed times, so a busy machine slows them down
# without failing them.
set -euo pipefail
cd "$(dirname "$0")/.."
export PMS_PYTHON="$PWD/target/py/bin/python3"
threads="${PMS_TEST_THREADS:-8}"

started=$SECONDS
phase() {
    local name=$1 since=$SECONDS
    shift
    echo "==> $name"
    "$@"
    echo "<== $name: $((SECONDS - since)) s"
}

phase "dependencies" scripts/ensure-deps.sh
phase "cargo fmt --check" cargo fmt --all -- --check
phase "cargo clippy" cargo clippy --workspace --all-targets --locked -- -D warnings
phase "build the tests" cargo test --workspace --locked --no-run
phase "cargo test" cargo test --workspace --locked -- --test-threads="$threads"
echo "<== make test: $((SECONDS - started)) s"
