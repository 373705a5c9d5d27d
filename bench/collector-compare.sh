#!/usr/bin/env bash
# Collector ingest throughput before and after a change, in one run on the same machine:
# builds REV (a commit, tag or branch) in a detached worktree under target/, builds the
# working tree, then runs bench/collector.sh's two measures (over HTTP, in process) for
# each side in turn on the same workload sizes. Each side runs its own examples, so what
# an agent must send (heartbeats, MACs) is part of what is measured.
#
# Usage: bench/collector-compare.sh REV [WINDOWS] [HOSTS] [EVENTS] [SENDERS]
set -euo pipefail
cd "$(dirname "$0")/.."

rev=${1:?usage: bench/collector-compare.sh REV [WINDOWS] [HOSTS] [EVENTS] [SENDERS]}
shift
windows=${1:-10000}
hosts=${2:-5000}
events=${3:-1000000}
senders=${4:-4}

target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
before="$target_dir/bench-before"
if [ -e "$before" ]; then
    git -C "$before" checkout --quiet --detach "$rev"
else
    git worktree add --quiet --detach "$before" "$rev"
fi
build() {
    (cd "$1" && CARGO_TARGET_DIR="$2" cargo build --release -p driftwatch-collector --bins \
        --example ingest --example ingest_http --quiet)
}
build "$before" "$target_dir/bench-before-target"
build "$PWD" "$target_dir"

run() {
    local label=$1 bins=$2
    echo "== $label: over HTTP (the collector binary on 127.0.0.1)"
    "$bins/examples/ingest_http" "$bins/driftwatch-collector" "$windows" "$hosts" "$events" "$senders"
    echo "== $label: in process (App + SQLite store)"
    "$bins/examples/ingest" "$windows" "$hosts" "$events"
}
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "before: $(git rev-parse --short "$rev"); after: the working tree at $(git rev-parse --short HEAD)"
run before "$target_dir/bench-before-target/release"
run after "$target_dir/release"
