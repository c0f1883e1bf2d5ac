#!/usr/bin/env bash
# The test command (README's `make test`, and what CI runs): installs missing dependencies,
# then format check, clippy, and every test of the workspace (end-to-end ones start real
# Tarantool processes on free loopback ports).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-deps.sh
export PMS_PYTHON="$PWD/target/py/bin/python3"
echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "==> cargo test"
cargo test --workspace --locked
