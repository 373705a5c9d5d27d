#!/usr/bin/env bash
# The agent at 10,000, 100,000 and 1,000,000 files (issue 12, point 3): baseline init,
# no-change check against the stat walk, the daemon's idle RSS and CPU, its inotify watches
# (and the fallback when the kernel's limit is the bound), write-to-spool latency. Never a
# timed test: each size appends one row to bench/out/million.tsv, `table` prints them.
#
# Usage:
#   bench/million.sh generate FILES...   build the trees (no lock needed: plain file writes)
#   bench/million.sh measure FILES...    measure each tree (hold the build lock around it, one
#                                        size per hold: `flock LOCK bench/million.sh measure N`)
#   bench/million.sh table               the table of every row measured so far
#   bench/million.sh clean               delete the trees
#   bench/million.sh all                 all of it for 10000 100000 1000000, then clean
#
# Trees go under $MILLION_DIR (default $TMPDIR/driftwatch-million; never inside the repository):
# about 2.7 KiB and 0.14 directories per file on average, so 1,000,000 files take about
# 2.7 GiB of data, ~6 GiB on disk with 4 KiB blocks, and 1.15 million inodes. Check
# `df -h` and `df -i` first. Needs python3, find. Builds the release binary unless AGENT
# names one. IDLE (seconds, default 60), WRITES (default 200) and FALLBACK_SECS (the
# daemon's fallback scan interval in the run, default 30) tune `measure`.
set -euo pipefail
cd "$(dirname "$0")/.."

dir=${MILLION_DIR:-${TMPDIR:-/tmp}/driftwatch-million}
command=${1:-}
shift || true

agent_binary() {
    if [ -z "${AGENT:-}" ]; then
        cargo build --release -p driftwatch-agent --quiet
        AGENT="${CARGO_TARGET_DIR:-$PWD/target}/release/driftwatch-agent"
    fi
    export AGENT
    if [ -z "${COMMIT:-}" ]; then
        COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
        git diff --quiet 2>/dev/null || COMMIT="$COMMIT+dirty"
    fi
    export COMMIT
}

case "$command" in
generate)
    mkdir -p "$dir"
    df -h "$dir" | tail -1
    df -i "$dir" | tail -1
    for files in "$@"; do python3 bench/million.py generate "$dir" "$files"; done
    ;;
measure)
    agent_binary
    for files in "$@"; do
        echo "== $files files (load average $(cut -d' ' -f1-3 /proc/loadavg)) =="
        python3 bench/million.py measure "$dir" "$files"
    done
    ;;
table) python3 bench/million.py table ;;
clean) python3 bench/million.py clean "$dir" ;;
all)
    sizes=(10000 100000 1000000)
    "$0" generate "${sizes[@]}"
    for files in "${sizes[@]}"; do "$0" measure "$files"; done
    "$0" table
    "$0" clean
    ;;
*)
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 2
    ;;
esac
