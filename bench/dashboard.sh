#!/usr/bin/env bash
# The web console measured (issue 11; never a timed test): the real `driftwatch-collector`
# binary (release) on 127.0.0.1 with a file database (synchronous = FULL, as shipped),
# seeded through the real ingest path with 5,000 hosts and 100,000 open drift items
# (collector/examples/dashboard.rs says the mix), then:
#   1. server time (request to complete response on loopback, sequential) of the inbox's
#      first page (default, filtered by host, by subject), a drift detail (/ui/drift/{id}
#      and GET /api/v1/drift/{id}/detail), the hosts and overview screens: p50/p99/max over
#      SAMPLES requests each, beside the targets (inbox < 200 ms, detail < 50 ms), and the
#      collector's own per-request latency from its log (tower-http, whole ms);
#   2. ingest events/s without, with STREAMS open event streams, and without again, and what
#      every stream received (each change once, in order; resets counted).
#
# Usage: bench/dashboard.sh [HOSTS] [WINDOWS] [SAMPLES] [STREAMS] [STREAM_EVENTS]
#        (defaults 5000 10000 50 200 100000; the windows are the ingest benchmark's workload)
# DASHBOARD_KEEP=1 keeps the temp dir (database, collector log) and prints where it is.
set -euo pipefail
cd "$(dirname "$0")/.."

hosts=${1:-5000}
windows=${2:-10000}
samples=${3:-50}
streams=${4:-200}
stream_events=${5:-100000}

# CARGO: the cargo to build with (a wrapper that serializes builds on a shared machine).
"${CARGO:-cargo}" build --release -p driftwatch-collector --bins --example dashboard --quiet
target="${CARGO_TARGET_DIR:-$PWD/target}/release"
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at start"
"$target/examples/dashboard" "$target/driftwatch-collector" "$hosts" "$windows" "$samples" "$streams" "$stream_events"
echo "machine: load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
