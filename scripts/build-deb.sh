#!/usr/bin/env bash
# Builds the agent's Debian package and checks what it installs: the binary
# (which must run), the default policy as a conffile with mode 0640, and the
# systemd units. Installs cargo-deb if missing. The .deb lands in target/debian/.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo-deb >/dev/null || cargo install cargo-deb --locked --version 3.8.0
cargo deb -p driftwatch-agent
deb=$(ls -t target/debian/driftwatch-agent_*_amd64.deb | head -1)

fail() { echo "package check failed: $*" >&2; exit 1; }
contents=$(dpkg-deb -c "$deb")
for path in ./usr/bin/driftwatch-agent ./etc/driftwatch/agent.toml \
    ./usr/lib/systemd/system/driftwatch-agent.service ./usr/lib/systemd/system/driftwatch-check.service ./usr/lib/systemd/system/driftwatch-check.timer; do
    grep -q " $path\$" <<<"$contents" || fail "$path is missing"
done
grep -q '^-rw-r----- .* ./etc/driftwatch/agent.toml$' <<<"$contents" || fail "agent.toml must be mode 0640"
dpkg-deb -f "$deb" Depends | grep -q libc6 || fail "Depends lacks libc6"
[ "$(dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles)" = "/etc/driftwatch/agent.toml" ] || fail "conffiles"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
dpkg-deb -x "$deb" "$scratch"
"$scratch/usr/bin/driftwatch-agent" --version >/dev/null || fail "the packaged binary does not run"
"$scratch/usr/bin/driftwatch-agent" validate-config --config "$scratch/etc/driftwatch/agent.toml" >/dev/null \
    || fail "the packaged policy does not validate"
echo "debian package: ok ($deb, $(du -h "$deb" | cut -f1))"
