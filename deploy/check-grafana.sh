#!/usr/bin/env bash
# Checks that grafana/dashpush.json and prometheus/rules.yaml ask only for metrics the gateway
# really exports. Starts the built binary ($DASHPUSH_BIN, default target/debug/dashpush: run
# it after the build) as the demo origin and as a gateway in front of it (loopback, ports picked
# by the OS), sends traffic that touches every metric family the dashboard and rules use:
#   - the MPD twice over HTTP/1.1 (a cache miss, then a hit);
#   - an h2c push with nghttp (push-next;2: promised, claimed, prefetch used by push);
#   - an h2c push reset mid-response by tools/h2_reset_push.py (reset, wasted and saved bytes);
#   - a push while the origin answers 503 (origin status_error, pushes dropped);
#   - 30 distinct objects through a 256 KiB cache (evictions);
# the push, prefetch, WebSocket (dashpush_ws_*), live (dashpush_live_*) and readiness
# (dashpush_ready) series exist from start with value 0, so the scrape shows their names without
# WebSocket or live traffic. It then scrapes /metrics and runs tools/metric_names.py on the scrape.
# Usage: deploy/check-grafana.sh [DASHBOARD_JSON]
# Installs curl and nghttp (Debian: curl, nghttp2-client) and the Python venv when missing.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
dashboard="${1:-$here/grafana/dashpush.json}"
bin="${DASHPUSH_BIN:-target/debug/dashpush}"
case "$bin" in /*) ;; *) bin="$root/$bin" ;; esac

need=()
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v nghttp >/dev/null 2>&1 || need+=(nghttp2-client)
if [ "${#need[@]}" -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
# shellcheck source=tools/venv.sh
. "$here/tools/venv.sh"
dp_venv

# The binary may be being rebuilt: wait a little for it to reappear.
for _ in $(seq 1 30); do [ -x "$bin" ] && break; sleep 1; done
[ -x "$bin" ] || { echo "FAIL: no dashpush binary at $bin (set DASHPUSH_BIN)"; exit 1; }

work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# addr FILE WORDS: the address logged on the line `... WORDS ADDR` (colours stripped).
addr() {
  local i
  for i in $(seq 1 100); do
    if sed 's/\x1b\[[0-9;]*m//g' "$1" | grep -o "$2 [0-9.]*:[0-9]*" | awk '{print $NF}' | grep . ; then
      return 0
    fi
    sleep 0.1
  done
  echo "FAIL: no '$2' line in $1:" >&2
  cat "$1" >&2
  return 1
}

# The origin's control listener (content plus the fault switch and blobs) is the gateway's
# origin here: the traffic below needs both.
"$bin" origin --listen 127.0.0.1:0 --control-listen 127.0.0.1:0 --demo vod 2>"$work/origin.log" &
pids+=($!)
origin="$(addr "$work/origin.log" "listening origin control on")"
"$bin" run --listen 127.0.0.1:0 --admin 127.0.0.1:0 --origin "http://$origin" \
  --cache-bytes 262144 2>"$work/gateway.log" &
pids+=($!)
gw="$(addr "$work/gateway.log" "listening http/1.1+h2c on")"
admin="$(addr "$work/gateway.log" "listening admin on")"
echo "-- origin $origin, gateway $gw, admin $admin"
for _ in $(seq 1 100); do
  curl -sf -o /dev/null "http://$admin/ready" && break
  sleep 0.1
done

directive='urn:mpeg:dash:fdh:2016:push-next;2'
curl -sf -o /dev/null "http://$gw/vod/manifest.mpd"
curl -sf -o /dev/null "http://$gw/vod/manifest.mpd"
promises="$(nghttp -nv -H "accept-push-policy: $directive" "http://$gw/vod/chunk-stream0-00001.m4s" | grep -c 'recv PUSH_PROMISE' || true)"
echo "nghttp: $promises pushes promised"
[ "$promises" -ge 1 ] || { echo "FAIL: nghttp saw no PUSH_PROMISE"; exit 1; }
"$DP_VENV/bin/python" "$here/tools/h2_reset_push.py" "$gw" /vod/chunk-stream1-00001.m4s "$directive"
curl -sf -o /dev/null "http://$origin/_origin/faults?error_rate=1"
nghttp -n -H "accept-push-policy: $directive" "http://$gw/vod/chunk-stream2-00001.m4s" >/dev/null 2>&1 || true
curl -sf -o /dev/null "http://$origin/_origin/faults?error_rate=0"
for i in $(seq 1 30); do
  printf 'url = "http://%s/_origin/blob/%d"\noutput = "/dev/null"\n' "$gw" $((20000 + i))
done | curl -sf -K -
sleep 1
curl -sf "http://$admin/metrics" >"$work/metrics.txt"
echo "scraped $(grep -c '^dashpush_' "$work/metrics.txt") dashpush series"
echo "-- metric names in $(basename "$dashboard") and rules.yaml"
"$DP_VENV/bin/python" "$here/tools/metric_names.py" "$work/metrics.txt" "$dashboard" "$here/prometheus/rules.yaml"
