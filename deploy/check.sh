#!/usr/bin/env bash
# All deploy/ checks: the Dockerfile lint, the Kubernetes manifests, the Prometheus rules and
# their tests, and the dashboard and rules against a live scrape of the built binary.
# Run from anywhere after the build; DASHPUSH_BIN names the binary (default
# target/debug/dashpush, relative to the repository root). Each check installs what it needs
# (apt-get: python3-venv, prometheus, curl, nghttp2-client; PyPI, pinned, into a venv under
# /tmp: deploy/tools/requirements.txt). Runs every check, then exits 1 if any failed.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
failed=()
for c in dockerfile k8s prometheus grafana; do
  start=$SECONDS
  printf '\n==== deploy/check-%s.sh\n' "$c"
  if "$here/check-$c.sh"; then
    printf '==== check-%s: ok (%ss)\n' "$c" "$((SECONDS - start))"
  else
    printf '==== check-%s: FAILED (%ss)\n' "$c" "$((SECONDS - start))"
    failed+=("$c")
  fi
done
if [ "${#failed[@]}" -gt 0 ]; then
  echo "deploy checks failed: ${failed[*]}"
  exit 1
fi
echo "deploy checks: all passed"
