#!/usr/bin/env bash
# Installs what building and testing dashpush need, on Debian (or Ubuntu), when missing:
#
#   bash tests/setup.sh build   # to build and run the demo: a C compiler, make, cmake (pingora's
#                               # zlib-ng), curl, nghttp2-client, and Rust through rustup when
#                               # `cargo` is not there
#   bash tests/setup.sh         # the whole suite, besides: nginx (the stock origin), openssl
#                               # (test certificates), promtool, python3 with h2 and venv,
#                               # Node.js and npm, headless Chromium, ffmpeg
#
# Debian packages come from apt-get (through sudo when not root); npm and Python packages are
# installed later from their lock files by the steps that use them (tests/all.sh, deploy/check.sh).
# Idempotent: with everything present it installs nothing.
set -euo pipefail
profile="${1:-all}"

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

need=()
have() { command -v "$1" >/dev/null 2>&1; }

have cc || need+=(gcc libc6-dev)
have make || need+=(make)
have cmake || need+=(cmake)
have curl || need+=(curl ca-certificates)
# nghttp: the README's way to watch push happen, and an e2e client.
{ have nghttp && have h2load; } || need+=(nghttp2-client)
if [ "$profile" = all ]; then
  have promtool || need+=(prometheus)
  { have nginx || [ -x /usr/sbin/nginx ]; } || need+=(nginx-light)
  have openssl || need+=(openssl)
  # The push tests drive an independent HTTP/2 client written with Debian's python3-h2.
  /usr/bin/python3 -c "import h2" >/dev/null 2>&1 || need+=(python3 python3-h2)
  /usr/bin/python3 -c "import venv, ensurepip" >/dev/null 2>&1 || need+=(python3-venv)
  { have node && have npm; } || need+=(nodejs npm)
  have chromium || need+=(chromium)
  have ffmpeg || need+=(ffmpeg)
fi
if [ "${#need[@]}" -gt 0 ]; then
  echo "setup: installing ${need[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

# Rust: the latest stable through rustup (the workspace needs a recent one; Debian's is too old).
if ! have cargo && [ ! -x "$HOME/.cargo/bin/cargo" ]; then
  echo "setup: installing Rust (rustup)"
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal \
    --component rustfmt,clippy
fi
