#!/usr/bin/env bash
# Renders and validates deploy/k8s (tools/k8s_check.py does the work):
#  - renders base/ and overlays/*/ with tools/kustomize_lite.py (and cross-checks against
#    `kubectl kustomize` when kubectl is installed; Debian has no kustomize package);
#  - validates built-in objects against the Kubernetes 1.30 schemas, strict (PyPI
#    kubernetes-validate), and ServiceMonitor/PrometheusRule against models generated from the
#    prometheus-operator CRDs (PyPI cloudcoil-models-prometheus-operator);
#  - checks cross-object rules (probes, security context, memory = cache + 128 MiB, grace
#    period, ports, selectors) and the rendered configs with `dashpush check-config`;
#  - checks base/prometheusrule.yaml is generated from prometheus/rules.yaml.
# Env: DASHPUSH_BIN (default target/debug/dashpush; config check skipped if absent),
#      KUBE_VERSION (default 1.30.0).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
bin="${DASHPUSH_BIN:-target/debug/dashpush}"
case "$bin" in /*) ;; *) bin="$root/$bin" ;; esac
# shellcheck source=tools/venv.sh
. "$here/tools/venv.sh"
dp_venv

echo "-- PrometheusRule generated from prometheus/rules.yaml"
"$DP_VENV/bin/python" "$here/tools/gen_prometheusrule.py" --check
"$DP_VENV/bin/python" "$here/tools/k8s_check.py" "$here/k8s" \
  --kube-version "${KUBE_VERSION:-1.30.0}" --dashpush-bin "$bin"
