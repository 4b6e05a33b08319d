#!/usr/bin/env bash
# Live fan-out: N live viewers on ONE dashpush gateway, each one HTTP/2 (h2c) connection taking
# the live edge of the built-in live origin (1 s segments) by server push (push-next;K), against
# nginx proxy_cache in front of the same origin serving the same bytes to N viewers that PULL each
# segment when it appears. One run, one after the other, same machine and clock. On demand only
# (not in CI).
#
#   bash benches/fanout.sh
#   VIEWERS=1000 WARMUP=5 WINDOW=20 PROCS=1 PIN=1 NGINX_LOCK=on bash benches/fanout.sh
#
#   VIEWERS      viewers per server (1000)
#   WARMUP       seconds of segments between joining and the measured ones (5)
#   WINDOW       seconds of measured segments; CPU and bytes are taken over the same window (20)
#   PROCS        load client processes (1)
#   PUSH_NEXT    K of push-next;K (64, the hard limit: one directive covers the run; a viewer
#                whose cycle ends before the run does sends a new one)
#   PIN          1: the servers on CPU 0 (the gateway with `threads: 1`, nginx with one
#                worker), the origin and the load client on CPU 1 (needs taskset); 0: no
#                pinning (the gateway then runs 2 threads, nginx 2 workers)
#   NGINX_LOCK   on: proxy_cache_lock (one origin fetch per segment; waiting requests poll the
#                lock every 500 ms, as nginx does); off: every miss goes to the origin
#   PULL_GATEWAY 1: also run the pull viewers against dashpush (a third row)
#   RESULTS      directory to keep the JSON summaries in (default: discarded)
#   PERF         file: record a CPU profile of the gateway (perf record -g) over the push run
#   SVG          file: also draw the run's latency and CPU per GB (benches/fanout_plot.py)
#
# Prints one table (per run: segments delivered of expected, missed / duplicated / out of
# order, p50/p99/max of complete arrival at the client minus availability at the origin, GB
# delivered in the window, server and client CPU seconds in the window, server CPU s/GB, origin
# fetches per segment) and the ratios dashpush/nginx with the targets (p99 <= 50 ms, one origin
# fetch per segment, CPU per GB <= nginx's).
#
# Needs: a release gateway (flock /tmp/cargo-build.lock cargo build --release), nginx-light
# (/usr/sbin/nginx), curl, python3. Builds the load client (benches/fanout, its own workspace).
# Every process it starts is stopped by pid on exit, failure, Ctrl-C or SIGTERM.
set -euo pipefail
cd "$(dirname "$0")/.."
VIEWERS=${VIEWERS:-1000}; WARMUP=${WARMUP:-5}; WINDOW=${WINDOW:-20}; PROCS=${PROCS:-1}
PUSH_NEXT=${PUSH_NEXT:-64}; PIN=${PIN:-1}; NGINX_LOCK=${NGINX_LOCK:-on}
PULL_GATEWAY=${PULL_GATEWAY:-0}; RESULTS=${RESULTS:-}; PERF=${PERF:-}
SEG_MS=1000
BIN=target/release/dashpush
NGINX=/usr/sbin/nginx
FANOUT=benches/fanout/target/release/fanout

[ -x "$BIN" ] || { echo "no $BIN: build it first (flock /tmp/cargo-build.lock cargo build --release)" >&2; exit 1; }
[ -x "$NGINX" ] || { echo "no $NGINX (apt-get install nginx-light)" >&2; exit 1; }
flock /tmp/cargo-build.lock cargo build --release -q --manifest-path benches/fanout/Cargo.toml

# Every viewer is a socket here and in the server; nginx and the gateway raise their own limit.
hard=$(ulimit -Hn)
want=$(( VIEWERS * 2 + 4096 ))
if [ "$hard" != unlimited ] && [ "$hard" -lt "$want" ]; then want=$hard; fi
ulimit -n "$want"

work=$(mktemp -d); chmod 755 "$work"
pids=()          # every process started here, stopped by pid on exit
nginx_master=""

# Stops $1 (and, first, its children: the load client's worker processes), TERM then KILL.
stop() {
  local p=$1 c
  for c in $(ps -o pid= --ppid "$p" 2>/dev/null); do stop "$c"; done
  kill -TERM "$p" 2>/dev/null || return 0
  for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
}

cleanup() {
  local rc=$? p w workers=""
  trap - EXIT INT TERM
  set +e
  if [ -n "$nginx_master" ]; then
    workers=$(ps -o pid= --ppid "$nginx_master" 2>/dev/null)
    if [ -s "$work/nginx/nginx.pid" ]; then kill -QUIT "$(cat "$work/nginx/nginx.pid")" 2>/dev/null; fi
    for _ in $(seq 50); do kill -0 "$nginx_master" 2>/dev/null || break; sleep 0.1; done
  fi
  for p in "${pids[@]}"; do stop "$p"; done
  # nginx's workers must be gone with their master.
  for w in $workers; do
    if kill -0 "$w" 2>/dev/null; then kill -KILL "$w" 2>/dev/null; fi
  done
  [ -n "$RESULTS" ] && mkdir -p "$RESULTS" && cp "$work"/*.json "$RESULTS"/ 2>/dev/null
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Command prefixes pinning to CPU 0 / 1 (a prefix, not a function: `cmd &` must leave $! the
# server's own pid, which taskset keeps when it execs it).
cpu0=(); cpu1=()
if [ "$PIN" = 1 ] && command -v taskset >/dev/null; then cpu0=(taskset -c 0); cpu1=(taskset -c 1); fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() {
  for _ in $(seq 200); do curl -sf -o /dev/null "$1" && return 0; sleep 0.05; done
  echo "no answer from $1" >&2; tail -5 "$work"/*.log >&2; exit 1
}

OP=$(free_port); OC=$(free_port); GP=$(free_port); GA=$(free_port); NP=$(free_port)

"${cpu1[@]}" "$BIN" origin --listen 127.0.0.1:$OP --control-listen 127.0.0.1:$OC --demo live \
  --live-segment-ms $SEG_MS >/dev/null 2>"$work/origin.log" &
pids+=($!)
wait_http "http://127.0.0.1:$OP/live/manifest.mpd"

# The gateway: room for every viewer from 127.0.0.1, and push cycles long enough that one
# directive covers the run (push-next is capped at 64 by the standard's hard limit here). One
# worker thread per core it runs on, as nginx gets one worker process per core below.
gw_threads=2; [ "$PIN" = 1 ] && [ ${#cpu0[@]} -gt 0 ] && gw_threads=1
cat >"$work/dashpush.yaml" <<YAML
origin: http://127.0.0.1:$OP
listen: 127.0.0.1:$GP
admin: 127.0.0.1:$GA
threads: $gw_threads
limits:
  max_open_files: 0
  max_connections: $(( VIEWERS * 2 + 1024 ))
  max_connections_per_client: $(( VIEWERS * 2 + 1024 ))
push:
  max_next: 64
  max_promises_per_request: 64
  max_in_flight: 64
  live_horizon_ms: 120000
  max_time_ms: 120000
  max_ahead_ms: 120000
YAML
"$BIN" check-config -c "$work/dashpush.yaml" >/dev/null
"${cpu0[@]}" "$BIN" run -c "$work/dashpush.yaml" >/dev/null 2>"$work/dashpush.log" &
gw=$!; pids+=($gw)
wait_http "http://127.0.0.1:$GA/ready"
wait_http "http://127.0.0.1:$GP/live/manifest.mpd"

# nginx: proxy_cache in front of the same origin, h2c (prior knowledge) for the pull viewers.
# It writes its own temp paths under $work (works as root or not).
mkdir -p "$work/nginx/cache"
workers=2; [ "$PIN" = 1 ] && workers=1
cat >"$work/nginx/nginx.conf" <<CONF
$( [ "$(id -u)" = 0 ] && echo "user root;" )
worker_processes $workers;
worker_rlimit_nofile $(( VIEWERS * 2 + 4096 ));
daemon off;
pid $work/nginx/nginx.pid;
error_log stderr error;
events { worker_connections $(( VIEWERS * 2 + 1024 )); }
http {
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    client_body_temp_path $work/nginx/body; proxy_temp_path $work/nginx/proxy;
    fastcgi_temp_path $work/nginx/fcgi; uwsgi_temp_path $work/nginx/uwsgi; scgi_temp_path $work/nginx/scgi;
    proxy_cache_path $work/nginx/cache levels=1:2 keys_zone=live:10m max_size=256m inactive=60m use_temp_path=off;
    upstream origin { server 127.0.0.1:$OP; keepalive 32; }
    server {
        listen 127.0.0.1:$NP http2;
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache live;
            proxy_cache_valid 200 60m;
            proxy_cache_lock $NGINX_LOCK;
            proxy_cache_lock_timeout 5s;
            proxy_cache_lock_age 5s;
        }
    }
}
CONF
"${cpu0[@]}" "$NGINX" -p "$work/nginx" -c "$work/nginx/nginx.conf" >/dev/null 2>"$work/nginx.log" &
nginx_master=$!; pids+=($nginx_master)
for _ in $(seq 100); do [ -s "$work/nginx/nginx.pid" ] && break; sleep 0.05; done
[ "$(cat "$work/nginx/nginx.pid" 2>/dev/null)" = "$nginx_master" ] || { echo "nginx did not start" >&2; cat "$work/nginx.log" >&2; exit 1; }
curl -sf -o /dev/null --http2-prior-knowledge "http://127.0.0.1:$NP/live/manifest.mpd" \
  || { echo "nginx does not answer" >&2; cat "$work/nginx.log" >&2; exit 1; }

common=(--viewers "$VIEWERS" --procs "$PROCS" --warmup-s "$WARMUP" --window-s "$WINDOW"
        --origin-control 127.0.0.1:$OC)
# run_client ARGS...: the load client in the background, so a signal reaches the trap at once.
run_client() {
  "${cpu1[@]}" "$FANOUT" run "$@" &
  local c=$!; pids+=($c)
  wait "$c"
}

if [ -n "$PERF" ]; then
  perf record -q -F ${PERF_HZ:-499} -g -p "$gw" -o "$PERF" -- sleep $(( WARMUP + WINDOW + 10 )) 2>"$work/perf.log" &
  pids+=($!)
fi
run_client --label dashpush-push --mode push --target 127.0.0.1:$GP --push-next "$PUSH_NEXT" \
  --server-pid "$gw" --metrics 127.0.0.1:$GA --out "$work/1-dashpush-push.json" "${common[@]}"
run_client --label "nginx-pull" --mode pull --target 127.0.0.1:$NP \
  --server-pid "$nginx_master" --with-children --out "$work/2-nginx-pull.json" "${common[@]}"
files=("$work/1-dashpush-push.json" "$work/2-nginx-pull.json")
if [ "$PULL_GATEWAY" = 1 ]; then
  run_client --label dashpush-pull --mode pull --target 127.0.0.1:$GP \
    --server-pid "$gw" --out "$work/3-dashpush-pull.json" "${common[@]}"
  files+=("$work/3-dashpush-pull.json")
fi

echo
echo "== live fan-out: $VIEWERS viewers each, ${SEG_MS} ms segments, ${WINDOW} s window (pinned: $PIN, nginx proxy_cache_lock $NGINX_LOCK, load client processes: $PROCS)"
"$FANOUT" report "${files[@]}"
if [ -n "${SVG:-}" ]; then
  python3 benches/fanout_plot.py "$SVG" "${files[@]}" && echo "drawn: $SVG"
fi
