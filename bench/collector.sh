#!/usr/bin/env bash
# Collector ingest throughput (never a timed test), two ways on the same workload
# (collector/examples/support/workload.rs):
#   1. the real `driftwatch-collector` binary over loopback HTTP (examples/ingest_http.rs):
#      set up through the API, events posted as agents post them (gzip JSON batches of 500);
#   2. the ingest path in process (`App::ingest`: validation, matching, one SQLite
#      transaction per batch), which isolates the collector's own cost and times the matcher
#      alone on a sample (examples/ingest.rs).
# Both use a file database in a temp dir with synchronous = FULL, as in production, and print
# events/s ingested and matched and the batch latency (p50, p99, max).
# Target (issue 4): at least 20,000 events/s sustained with 10,000 windows, 5,000 hosts and
# 1,000,000 events on this 2-core machine with SQLite.
#
# Usage: bench/collector.sh [WINDOWS] [HOSTS] [EVENTS] [SENDERS]   (defaults 10000 5000 1000000 4)
set -euo pipefail
cd "$(dirname "$0")/.."

windows=${1:-10000}
hosts=${2:-5000}
events=${3:-1000000}
senders=${4:-4}

cargo build --release -p driftwatch-collector --bins --example ingest --example ingest_http --quiet
target="${CARGO_TARGET_DIR:-$PWD/target}/release"
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== over HTTP (the collector binary on 127.0.0.1)"
"$target/examples/ingest_http" "$target/driftwatch-collector" "$windows" "$hosts" "$events" "$senders"
echo "== in process (App + SQLite store)"
"$target/examples/ingest" "$windows" "$hosts" "$events"
