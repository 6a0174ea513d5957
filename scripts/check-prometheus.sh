#!/usr/bin/env bash
# Checks the Prometheus files in prometheus/: the scrape configuration, the recording and alerting
# rules, the rule unit tests, prometheus/alertmanager.yml, and the Grafana dashboard (every panel's
# PromQL, through scripts/dashboard-rules.py and promtool).
#   usage: scripts/check-prometheus.sh
# Needs promtool (Debian: `apt-get install prometheus`; amtool: `prometheus-alertmanager`) and
# python3.
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in promtool amtool; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "check-prometheus: $tool not found; install it (Debian: apt-get install prometheus prometheus-alertmanager)" >&2
    exit 1
  fi
done

rules=()
for f in prometheus/rules/*.yml; do
  case "$f" in
    *.test.yml) ;;
    *) rules+=("$f") ;;
  esac
done
if [ "${#rules[@]}" -eq 0 ]; then
  echo "check-prometheus: no rule files in prometheus/rules/" >&2
  exit 1
fi

echo "== promtool check config prometheus/prometheus.yml"
promtool check config prometheus/prometheus.yml

echo "== promtool check rules ${rules[*]}"
promtool check rules "${rules[@]}"

echo "== promtool test rules prometheus/rules/alerts.test.yml"
promtool test rules prometheus/rules/alerts.test.yml

echo "== amtool check-config prometheus/alertmanager.yml"
amtool check-config prometheus/alertmanager.yml

dashboard=prometheus/grafana/dashboards/auralis.json
if ! command -v python3 >/dev/null 2>&1; then
  echo "check-prometheus: python3 not found; it checks $dashboard" >&2
  exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Parses the JSON, fails when a panel lacks a description or a unit or a query uses an unknown
# variable, and writes each panel query as a recording rule ($station -> .*, [1m] intervals).
echo "== scripts/dashboard-rules.py $dashboard (panel lint, one rule per query)"
python3 scripts/dashboard-rules.py "$dashboard" "$tmp/dashboard-rules.yml"

echo "== promtool check rules (dashboard queries)"
promtool check rules "$tmp/dashboard-rules.yml"

echo "check-prometheus: OK"
