#!/usr/bin/env bash
# `make image`: builds the container image of deploy/docker/Dockerfile with podman, exactly as
# `docker build -f deploy/docker/Dockerfile .` would, on a machine with no Docker engine and no
# container registry (this project's CI and development machines).
#
# The two images the Dockerfile starts FROM are used when podman already has them (pulled, or
# made by an earlier run). Otherwise they are made here, under the names the FROM lines use:
#   debian:bookworm-slim   a `debootstrap --variant=minbase bookworm` root, imported;
#   rust:1.95-bookworm     that root plus build-essential and this machine's Rust toolchain
#                          (the `rustc` on PATH; the Dockerfile's RUST_VERSION must match it),
#                          trusting this machine's CA certificates (HTTPS may be intercepted
#                          on the way to crates.io).
# Nothing is pulled (`--pull=never`); `--format docker` keeps the HEALTHCHECK. The build runs
# with runc (crun refuses hybrid cgroup hosts) and nofile/nproc limits within the host's.
# A cold build takes about 6 minutes on 2 cores (docs/operations.md, "The container image").
#
# Usage: scripts/image.sh [TAG]        (default planetmint-streams:latest)
# Environment: IMAGE_NOFILE (default: the host's hard limit, at most 65536), IMAGE_NPROC (at
# most 32768), IMAGE_REBUILD_BASES=1 makes the two base images again.
set -euo pipefail
cd "$(dirname "$0")/.."
tag="${1:-planetmint-streams:latest}"
work=target/image
mkdir -p "$work"

scripts/ensure-deps.sh --image

dockerfile_arg() { sed -n "s/^ARG $1=//p" deploy/docker/Dockerfile; }
rust_version="$(dockerfile_arg RUST_VERSION)"
release="$(dockerfile_arg DEBIAN_RELEASE)"
slim="docker.io/library/debian:${release}-slim"
rust="docker.io/library/rust:${rust_version}-${release}"

# A runtime podman can use on this host: runc when installed (crun fails on hybrid cgroups).
runtime=()
if command -v runc >/dev/null 2>&1; then runtime=(--runtime "$(command -v runc)"); fi

# Limits: the host's hard limits cap what a container may ask for.
hard_nofile="$(ulimit -Hn)"; [ "$hard_nofile" = unlimited ] && hard_nofile=65536
hard_nproc="$(ulimit -Hu)"; [ "$hard_nproc" = unlimited ] && hard_nproc=32768
nofile="${IMAGE_NOFILE:-$(( hard_nofile < 65536 ? hard_nofile : 65536 ))}"
nproc="${IMAGE_NPROC:-$(( hard_nproc < 32768 ? hard_nproc : 32768 ))}"
limits=(--ulimit "nofile=$nofile:$nofile" --ulimit "nproc=$nproc:$nproc")

exists() { podman image exists "$1" && [ -z "${IMAGE_REBUILD_BASES:-}" ]; }

if exists "$slim"; then
    echo "==> $slim: present"
else
    echo "==> $slim: debootstrap --variant=minbase $release (a few minutes)"
    root="$work/rootfs-$release"
    rm -rf "$root"
    mirror="$(sed -n 's/^URIs: \(http[^ ]*debian\)$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)"
    debootstrap --variant=minbase "$release" "$root" "${mirror:-http://deb.debian.org/debian}" \
        >"$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
    # What the official slim image drops: package lists and caches.
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin
    tar -C "$root" --numeric-owner -c . | podman import \
        --change 'CMD ["bash"]' - "$slim" >/dev/null
    rm -rf "$root"
fi

if exists "$rust"; then
    echo "==> $rust: present"
else
    sysroot="$(rustc --print sysroot)"
    local_version="$(rustc --version | awk '{print $2}')"
    case "$local_version" in
        "$rust_version" | "$rust_version".*) ;;
        *) echo "the Dockerfile asks for Rust $rust_version, this machine has $local_version" >&2; exit 1 ;;
    esac
    echo "==> $rust: $slim + build-essential + the local toolchain ($local_version)"
    context="$work/rust-context"
    rm -rf "$context"
    mkdir -p "$context"
    cp /etc/ssl/certs/ca-certificates.crt "$context/host-ca-certificates.crt"
    cat >"$context/Containerfile" <<EOF
FROM $slim
RUN apt-get update \\
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \\
        build-essential ca-certificates pkg-config git \\
    && rm -rf /var/lib/apt/lists/*
ENV CARGO_HOME=/usr/local/cargo \\
    PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
# This machine's trusted CAs (HTTPS to crates.io may be intercepted here).
COPY host-ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
# The toolchain, mounted read-only at build time, copied without its documentation.
RUN mkdir -p /usr/local/rust /usr/local/cargo/bin \\
    && cp -a /mnt/toolchain/bin /mnt/toolchain/lib /usr/local/rust/ \\
    && ln -s /usr/local/rust/bin/* /usr/local/cargo/bin/ \\
    && rustc --version && cargo --version
EOF
    podman build "${runtime[@]}" --pull=never --format docker "${limits[@]}" \
        -v "$sysroot:/mnt/toolchain:ro" -t "$rust" "$context"
    rm -rf "$context"
fi

echo "==> building $tag from deploy/docker/Dockerfile"
started=$(date +%s)
podman build "${runtime[@]}" --pull=never --format docker "${limits[@]}" \
    -f deploy/docker/Dockerfile -t "$tag" .
echo "==> $tag built in $(( $(date +%s) - started )) s: $(podman image inspect "$tag" --format '{{.Size}}' | awk '{printf "%.0f MB", $1/1e6}')"
