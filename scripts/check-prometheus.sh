#!/usr/bin/env bash
# Checks the Prometheus files in prometheus/: the scrape configuration, the recording and alerting
# rules, the rule unit tests, and prometheus/alertmanager.yml.
#   usage: scripts/check-prometheus.sh
# Needs promtool (Debian: `apt-get install prometheus`; amtool: `prometheus-alertmanager`).
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

echo "check-prometheus: OK"
