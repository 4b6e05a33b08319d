#!/usr/bin/env bash
# The whole test suite, as the README's second command:
#   1. Rust: unit, property and golden tests of every crate, and the end-to-end tests that drive
#      the real binary with curl, nghttp, h2load, Python's h2, headless Chromium (through the JS
#      client's playwright-core, installed first), nginx and promtool;
#   2. the JavaScript client (clients/js): codec and client unit tests, and tests against the
#      real binary over the WebSocket sub-protocol;
#   3. the browser test: headless Chromium plays the demo through dash.js over the WebSocket
#      path (and over plain HTTP, and the fallback), checked from the page and from /metrics;
#      through a 650 kbit/s link dash.js must switch down over the socket as over HTTP; on the
#      live demo it must play near the live edge over the socket;
#   4. the deployment checks (Dockerfile lint, Kubernetes schemas, Prometheus rules and their
#      unit tests, the Grafana dashboard against a live scrape).
# It first installs what it needs when missing (tests/setup.sh: Debian packages through apt-get,
# Rust through rustup); npm and pip dependencies are installed from their lock files.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/setup.sh
if [ -f "$HOME/.cargo/env" ]; then
  # shellcheck source=/dev/null
  . "$HOME/.cargo/env"
fi
export PATH="$PATH:/usr/sbin"

# The JS client's packages first: an end-to-end test drives headless Chromium through them.
(cd clients/js && npm ci --no-audit --no-fund --loglevel=error)

echo "== Rust"
cargo test --locked --workspace
export DASHPUSH_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/dashpush"

echo "== JavaScript client"
(
  cd clients/js
  npm test
  echo "== browser (headless Chromium + dash.js)"
  npm run build:player
  node ../../tests/browser/play.mjs
)

echo "== deployment checks"
bash deploy/check.sh
