#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (default 60 s each). New inputs go to
# target-corpus/ (ignored by git); the small seed corpus in corpus/ is read, not grown.
# Needs cargo-fuzz (`cargo install cargo-fuzz`); libFuzzer needs nightly flags, which the
# stable compiler accepts with RUSTC_BOOTSTRAP=1.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-60}"
for target in stream_url blocks_reply tuples iproto_frames rpc_request; do
    mkdir -p "target-corpus/$target"
    echo "==> $target for ${seconds}s"
    RUSTC_BOOTSTRAP=1 cargo fuzz run -O "$target" "target-corpus/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1 2>&1 |
        grep -E "^(#[0-9]+ *DONE|Done|stat::number_of_executed_units|stat::peak_rss|==[0-9]+==|SUMMARY|thread .* panicked)" || true
done
