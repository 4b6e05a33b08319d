# Sourced by the deploy/ check scripts. `dp_venv` makes (once) a venv with
# deploy/tools/requirements.txt and sets DP_VENV to it. Installs python3 and python3-venv with
# apt-get when they are missing (a fresh Debian machine). The venv lives outside the work tree:
# $DASHPUSH_DEPLOY_VENV, default /tmp/dashpush-deploy-venv; it is rebuilt when the
# requirements change.
dp_venv() {
  local here req stamp
  here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
  req="$here/requirements.txt"
  DP_VENV="${DASHPUSH_DEPLOY_VENV:-${TMPDIR:-/tmp}/dashpush-deploy-venv}"
  stamp="$DP_VENV/.requirements-$(sha256sum "$req" | cut -c1-16)"
  [ -e "$stamp" ] && return 0
  if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 python3-venv
  fi
  rm -rf "$DP_VENV"
  python3 -m venv "$DP_VENV"
  "$DP_VENV/bin/pip" install -q --disable-pip-version-check -r "$req"
  touch "$stamp"
}
