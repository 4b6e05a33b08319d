#!/usr/bin/env bash
# Checks deploy/prometheus: `promtool check rules` (syntax, PromQL), `promtool test rules`
# (rules.test.yaml: recorded values, every alert firing and silent), and tools/rules_coverage.py
# (the tests cover every rule; every runbook_url names a section of docs/operations.md).
# Installs promtool (Debian package `prometheus`) and the Python venv (tools/venv.sh) if missing.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if ! command -v promtool >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus
fi
# shellcheck source=tools/venv.sh
. "$here/tools/venv.sh"
dp_venv

echo "-- promtool check rules"
promtool check rules "$here/prometheus/rules.yaml"
echo "-- promtool test rules"
promtool test rules "$here/prometheus/rules.test.yaml"
echo "-- rule coverage and runbooks"
"$DP_VENV/bin/python" "$here/tools/rules_coverage.py" \
  "$here/prometheus/rules.yaml" "$here/prometheus/rules.test.yaml" "$here/../docs/operations.md"
