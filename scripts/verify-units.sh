#!/usr/bin/env bash
# Verifies the systemd units in packaging/systemd with systemd's own tools.
# `systemd-analyze verify` exits 0 on unknown keys and bad values, so any stderr
# output counts as a failure. Needs the built binaries: the units' ExecStart paths are
# pointed at target/debug/driftwatch-{agent,collector} in a scratch copy.
set -euo pipefail
cd "$(dirname "$0")/.."

agent="$PWD/target/debug/driftwatch-agent"
[ -x "$agent" ] || { echo "build the agent first: cargo build --workspace --bins" >&2; exit 1; }
command -v systemd-analyze >/dev/null || { echo "systemd-analyze not found (apt-get install systemd)" >&2; exit 1; }

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for unit in packaging/systemd/*.service packaging/systemd/*.timer; do
    sed -e "s|/usr/bin/driftwatch-agent|$agent|g" \
        -e "s|/usr/bin/driftwatch-collector|$PWD/target/debug/driftwatch-collector|g" \
        "$unit" > "$scratch/$(basename "$unit")"
done
# The agent unit with the opt-in attribution drop-in merged in (repeated [Service] keys add
# to the unit's own, as the drop-in would), so its capabilities and system calls are checked too.
{
    cat "$scratch/driftwatch-agent.service"
    grep -v '^#' packaging/systemd/attribution.conf
} > "$scratch/driftwatch-agent-with-attribution.service"

status=0
for unit in "$scratch"/*; do
    name=$(basename "$unit")
    if ! systemd-analyze verify --man=no "$unit" 2> "$scratch/err" || [ -s "$scratch/err" ]; then
        echo "systemd-analyze verify $name:" >&2
        cat "$scratch/err" >&2
        status=1
    fi
done
for unit in "$scratch"/*.service; do
    # Exposure scale is 0-100 here (30 = 3.0 in the human output); 30 or less is "OK".
    if ! systemd-analyze security --offline=true --threshold=30 "$unit" > "$scratch/security"; then
        echo "systemd-analyze security $(basename "$unit") is above the threshold:" >&2
        tail -1 "$scratch/security" >&2
        status=1
    fi
done
[ "$status" = 0 ] && echo "systemd units: ok"
exit "$status"
