#!/usr/bin/env bash
# Collector ingest throughput (never a timed test): the real ingest path (`App::ingest`:
# validation, matching, one SQLite transaction per batch, synchronous = FULL) on a file
# database in a temp dir, without HTTP. Prints events/s ingested and matched, the batch
# latency (p50, p99, max), the matcher alone on a sample, and the outcomes.
# Target (issue 4): at least 20,000 events/s sustained with 10,000 windows, 5,000 hosts and
# 1,000,000 events on this 2-core machine.
#
# Usage: bench/collector.sh [WINDOWS] [HOSTS] [EVENTS]   (defaults 10000 5000 1000000)
set -euo pipefail
cd "$(dirname "$0")/.."

windows=${1:-10000}
hosts=${2:-5000}
events=${3:-1000000}

cargo build --release -p driftwatch-collector --example ingest --quiet
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
"${CARGO_TARGET_DIR:-$PWD/target}/release/examples/ingest" "$windows" "$hosts" "$events"
