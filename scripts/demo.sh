#!/usr/bin/env bash
# The README's first command: builds driftwatch, starts a local collector
# (SQLite, plain HTTP on 127.0.0.1) and an agent watching a sample directory,
# makes a change nobody approved, shows the untraced drift and its alert, and
# prints what to try next (a change window, an authorized change). Everything
# it writes is under target/driftwatch-demo; Ctrl-C stops both services.
#
#   scripts/demo.sh             run, then keep the services up until Ctrl-C
#   scripts/demo.sh --no-wait   run, then stop (for a quick look or a script)
set -euo pipefail
cd "$(dirname "$0")/.."

wait_at_end=true
[ "${1:-}" = "--no-wait" ] && wait_at_end=false

echo "building (release; the first build takes a few minutes)..."
cargo build --release --quiet -p driftwatch-agent -p driftwatch-collector
bin=$PWD/target/release
demo=$PWD/target/driftwatch-demo
sample=$demo/etc

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
# Waits up to $1 seconds for the command after it to succeed.
wait_for() {
    local seconds=$1
    shift
    for _ in $(seq $((seconds * 10))); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    return 1
}

pids=()
stop_services() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap stop_services EXIT

rm -rf "$demo"
mkdir -p "$sample/nginx" "$sample/ssh" "$demo/collector" "$demo/agent"
printf 'server {\n    listen 80;\n    root /srv/www;\n}\n' > "$sample/nginx/site.conf"
printf 'Port 22\nPermitRootLogin no\nPasswordAuthentication no\n' > "$sample/ssh/sshd_config"

step "start the collector (SQLite in $demo/collector)"
cat > "$demo/collector.toml" <<EOF
listen = "127.0.0.1:0"
plain_http = true
state_dir = "$demo/collector"
# Untraced drift waits this long before alerting, so a window recorded right after still covers it.
hold_secs = 5
burst_secs = 2

[[alert]]
type = "jsonl"
path = "$demo/alerts.jsonl"
EOF
collector() { "$bin/driftwatch-collector" --config "$demo/collector.toml" "$@"; }
# People: carol requests changes, dave approves them (never his own), sam is security.
collector token create --role admin --person alice > "$demo/alice.token"
collector token create --role change-manager --person carol > "$demo/carol.token"
collector token create --role change-manager --person dave > "$demo/dave.token"
collector token create --role security --person sam > "$demo/sam.token"
# Readable by their owner alone: driftctl refuses any other token file.
chmod 600 "$demo"/*.token
# exec: so the pid recorded is the service's own, and the trap stops it.
(DRIFTWATCH_LOG=warn exec "$bin/driftwatch-collector" --config "$demo/collector.toml" \
    serve --port-file "$demo/collector.addr" 2> "$demo/collector.log") &
pids+=($!)
wait_for 20 test -s "$demo/collector.addr" || { cat "$demo/collector.log"; exit 1; }
url="http://$(cat "$demo/collector.addr")"
export DRIFTWATCH_URL=$url
echo "collector listening on $url"
echo "dashboard: $url/ui/  (sign in as sam, security, with the token in $demo/sam.token)"
ctl() { local who=$1; shift; "$bin/driftctl" --token-file "$demo/$who.token" "$@"; }

step "baseline the sample directory, enroll the agent, start it"
cat > "$demo/agent.toml" <<EOF
state_dir = "$demo/agent"

[sources]
# The demo watches files only; a real policy also tracks packages, sysctl, ports, accounts.
enabled = []

[collector]
url = "$url"

[heartbeat]
interval_secs = 5

[[rule]]
path = "$sample"
EOF
agent() { "$bin/driftwatch-agent" --config "$demo/agent.toml" "$@"; }
agent baseline init --quiet
ctl alice enrollment-token create > "$demo/enroll.token"
agent enroll --token-file "$demo/enroll.token"
(DRIFTWATCH_LOG=warn exec "$bin/driftwatch-agent" --config "$demo/agent.toml" run 2> "$demo/agent.log") &
pids+=($!)
wait_for 20 agent status || { cat "$demo/agent.log"; exit 1; }
ctl alice hosts

step "an unapproved change: PermitRootLogin yes in $sample/ssh/sshd_config"
sed -i 's/PermitRootLogin no/PermitRootLogin yes/' "$sample/ssh/sshd_config"
has_open_drift() { ctl sam drift list --status open | grep -q sshd_config; }
wait_for 20 has_open_drift || { echo "no drift arrived"; cat "$demo/agent.log"; exit 1; }
ctl sam drift list --status open
echo "(held ${DEMO_HOLD:-5} s before alerting, so an emergency window recorded now would still cover it)"
wait_for 30 grep -q sshd_config "$demo/alerts.jsonl" || { echo "no alert"; cat "$demo/collector.log"; exit 1; }
echo "alert written to $demo/alerts.jsonl:"
head -c 600 "$demo/alerts.jsonl"; echo

host=$(hostname)
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
later=$(date -u -d '+1 hour' +%Y-%m-%dT%H:%M:%SZ)
cat <<NEXT

$(printf '\033[1m')The dashboard$(printf '\033[0m'): open $url/ui/ and sign in with sam's token (security):
  $(cat "$demo/sam.token")
The untraced inbox shows the sshd change; select it, give a reason and resolve it there.
(Other people's tokens: $demo/*.token; an auditor sees the inbox without the resolve button.)

$(printf '\033[1m')What to try next$(printf '\033[0m') (in another shell; the collector and the agent keep running):

  export DRIFTWATCH_URL=$url
  ctl() { local who=\$1; shift; $bin/driftctl --token-file $demo/\$who.token "\$@"; }

  # Carol requests a window for the nginx change; Dave approves it (Carol cannot).
  ctl carol windows create --ticket CHG-1 --title "nginx port 8080" \\
      --host $host --subject 'file:$sample/nginx/**' --start $now --end $later
  ctl dave windows approve WINDOW_ID
  # Change again, inside the window: the drift is authorized, nobody is paged.
  sed -i 's/listen 80/listen 8080/' $sample/nginx/site.conf
  ctl sam drift list --status authorized
  # Carol closes the window: the reviewed state becomes the agent's new baseline.
  ctl carol windows close WINDOW_ID
  # The close-out evidence for the ticket (Markdown; also html or json).
  ctl carol window evidence WINDOW_ID --format md
  # Security resolves the unapproved sshd change; the audit trail verifies end to end.
  ctl sam drift list --status open          # the DRIFT_ID of the sshd change
  ctl sam drift resolve DRIFT_ID --category confirmed_unauthorized --comment "reverted"
  ctl alice audit verify

Logs: $demo/collector.log, $demo/agent.log. Alerts: $demo/alerts.jsonl.
NEXT

if $wait_at_end; then
    echo "Press Ctrl-C to stop the collector and the agent."
    wait
fi
