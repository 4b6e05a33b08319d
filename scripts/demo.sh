#!/usr/bin/env bash
# The README's first command: builds what is missing (tests/setup.sh build: a C compiler, cmake,
# Rust) and runs the demo: the built-in origin and the gateway on 127.0.0.1:8080, printing the
# nghttp/curl commands that show push happening.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/setup.sh build
if [ -f "$HOME/.cargo/env" ]; then
  # shellcheck source=/dev/null
  . "$HOME/.cargo/env"
fi
exec cargo run --release -- demo "$@"
