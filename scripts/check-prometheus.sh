#!/usr/bin/env bash
# Checks packaging/prometheus with promtool: the alert rules (`check rules`), their unit
# tests (`test rules`), and every PromQL expression of the Grafana dashboard (wrapped in
# recording rules, with the dashboard's variables filled in, so `check rules` parses them).
set -euo pipefail
cd "$(dirname "$0")/../packaging/prometheus"

promtool check rules driftwatch.rules.yml
promtool test rules driftwatch.rules.test.yml

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - driftwatch-dashboard.json "$work/dashboard.rules.yml" <<'PY'
import json, sys
dashboard = json.load(open(sys.argv[1]))
exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
if not exprs:
    sys.exit("the dashboard has no queries")
with open(sys.argv[2], "w") as out:
    out.write("groups:\n  - name: dashboard\n    rules:\n")
    for i, expr in enumerate(exprs):
        expr = (expr.replace("$__rate_interval", "5m")
                    .replace("$collector_job", "driftwatch-collector"))
        if "$" in expr:
            sys.exit(f"unknown variable in {expr}")
        out.write(f"      - record: dashboard:query_{i}\n        expr: {json.dumps(expr)}\n")
print(f"dashboard: {len(exprs)} queries")
PY
promtool check rules "$work/dashboard.rules.yml"
