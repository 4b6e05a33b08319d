#!/usr/bin/env bash
# Cache-hot throughput and tail latency: dashpush vs nginx proxy_cache, both in front of the same
# built-in origin, measured by h2load in one run. Prints ratios (dashpush / nginx).
#
#   bash benches/proxy_vs_nginx.sh [requests] [connections] [streams-per-connection]
#   NO_BUILD=1 bash benches/proxy_vs_nginx.sh ...   # without building first
#   SVG=docs/proxy_vs_nginx.svg bash benches/proxy_vs_nginx.sh ...   # also draw the run (bars.py)
#
# Needs: nginx (nginx-light), h2load (nghttp2-client), a release build (built here).
# Servers are pinned to CPU 0 and the load generator to CPU 1 when taskset exists, so neither
# proxy competes with h2load for a core. Each server then gets one worker for its one core, as
# an operator would configure it: nginx `worker_processes 1`, dashpush its default (one traffic
# thread per CPU it may use, which honours the pinning). Unpinned, nginx runs 2 workers and
# dashpush 2 threads on this 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-20000}; C=${2:-16}; M=${3:-8}
PATH="$PATH:/usr/sbin"
# NO_BUILD=1: measure target/release/dashpush as it is. The lock serialises builds with others.
[ -n "${NO_BUILD:-}" ] || flock /tmp/cargo-build.lock cargo build --release -q
BIN=target/release/dashpush
work=$(mktemp -d); chmod 755 "$work"

# Every process started here is recorded by PID and stopped by PID on every way out (EXIT, INT,
# TERM): background jobs are started straight from the script (no function or subshell in
# between, `taskset` execs the command), so $! is the server's own PID. nginx forks its workers
# and cache manager/loader: they are looked up by parent PID just before the master is stopped
# and waited for (killed if need be) until gone.
pids=()
if command -v taskset >/dev/null; then PIN0=(taskset -c 0); PIN1=(taskset -c 1); else PIN0=(); PIN1=(); fi
NGINX_WORKERS=2; [ ${#PIN0[@]} -gt 0 ] && NGINX_WORKERS=1
gone() { ! kill -0 "$1" 2>/dev/null || [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" = Z ]; }
# stop_pid PID [SIGNAL]: signal, wait up to 5 s, then SIGKILL; reaps it when it is our child.
stop_pid() {
  local pid=$1 sig=${2:-TERM} i
  gone "$pid" && { wait "$pid" 2>/dev/null || true; return 0; }
  kill -"$sig" "$pid" 2>/dev/null || true
  for i in $(seq 100); do gone "$pid" && break; sleep 0.05; done
  gone "$pid" || kill -KILL "$pid" 2>/dev/null || true
  for i in $(seq 100); do gone "$pid" && break; sleep 0.05; done
  wait "$pid" 2>/dev/null || true
}
# Children of a PID, by parent PID (/proc), before it is stopped (they are re-parented after).
children() {
  awk -v p="$1" '{ f = FILENAME; sub(/.*\) /, ""); if ($2 == p) { split(f, a, "/"); print a[3] } }' /proc/[0-9]*/stat 2>/dev/null || true
}
cleanup() {
  local rc=$? i pid kid kids
  trap - EXIT
  trap '' INT TERM   # a second Ctrl-C does not cut the clean-up short
  # The last started first: the load generator, then nginx, the gateway, the origin.
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    pid=${pids[i]}
    if [ "$pid" = "${nginx_pid:-}" ]; then
      kids=$(children "$pid")
      stop_pid "$pid" QUIT
      for kid in $kids; do stop_pid "$kid"; done
    else
      stop_pid "$pid"
    fi
  done
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() {
  for _ in $(seq 100); do curl -sf -o /dev/null "$1" && return 0; sleep 0.05; done
  echo "no answer from $1" >&2; tail -5 "$work"/*.log >&2; exit 1
}

OP=$(free_port); DP=$(free_port); DA=$(free_port); NH1=$(free_port); NH2=$(free_port)
"${PIN0[@]}" "$BIN" origin --listen 127.0.0.1:$OP --demo vod >/dev/null 2>"$work/origin.log" &
pids+=($!)
wait_http "http://127.0.0.1:$OP/vod/manifest.mpd"
"${PIN0[@]}" "$BIN" run --listen 127.0.0.1:$DP --admin 127.0.0.1:$DA --origin http://127.0.0.1:$OP >/dev/null 2>"$work/dashpush.log" &
pids+=($!)
mkdir -p "$work/nginx/cache"
# Run nginx's workers as the invoking user so they can write the cache under $work.
cat >"$work/nginx/nginx.conf" <<CONF
$( [ "$(id -u)" = 0 ] && echo "user root;" )
worker_processes $NGINX_WORKERS;
daemon off;
pid $work/nginx/nginx.pid;
error_log stderr error;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $work/nginx/body; proxy_temp_path $work/nginx/proxy;
    fastcgi_temp_path $work/nginx/fcgi; uwsgi_temp_path $work/nginx/uwsgi; scgi_temp_path $work/nginx/scgi;
    proxy_cache_path $work/nginx/cache levels=1:2 keys_zone=dash:10m max_size=256m inactive=60m use_temp_path=off;
    upstream origin { server 127.0.0.1:$OP; keepalive 32; }
    server {
        listen 127.0.0.1:$NH1;
        listen 127.0.0.1:$NH2 http2;
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache dash;
            proxy_cache_valid 200 60m;
        }
    }
}
CONF
"${PIN0[@]}" nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" >/dev/null 2>"$work/nginx.log" &
nginx_pid=$!; pids+=("$nginx_pid")
path=/vod/chunk-stream0-00002.m4s
wait_http "http://127.0.0.1:$DP$path"; wait_http "http://127.0.0.1:$NH1$path"
curl -sf -o /dev/null "http://127.0.0.1:$DP$path"; curl -sf -o /dev/null "http://127.0.0.1:$NH1$path"

# run NAME URL [h2load flags]: sets rps and p99 (ms). h2load runs in the background and is
# waited for, so an INT or TERM stops the script (and it) at once, not after the load run.
run() {
  local log="$work/$1.tsv" load
  "${PIN1[@]}" h2load -n "$N" -c "$C" "${@:3}" --log-file="$log" "$2" >"$work/$1.out" 2>&1 &
  load=$!; pids+=("$load")
  wait "$load" || { cat "$work/$1.out"; exit 1; }
  # "finished in 1.23s, 16260.16 req/s, 245.32MB/s"
  rps=$(awk '/^finished in/ {print $4+0}' "$work/$1.out")
  local ok; ok=$(awk '/^requests:/ {print $8}' "$work/$1.out")
  [ "$ok" = "$N" ] || { echo "$1: only $ok of $N succeeded" >&2; cat "$work/$1.out"; exit 1; }
  # Column 3 of h2load's log is the response time in microseconds.
  p99=$(cut -f3 "$log" | sort -n | awk '{a[NR]=$1} END {i=int(NR*0.99); if (i<1) i=1; printf "%.3f", a[i]/1000}')
}

run dashpush-h2 "http://127.0.0.1:$DP$path" -m "$M"; d2_rps=$rps; d2_p99=$p99
run nginx-h2 "http://127.0.0.1:$NH2$path" -m "$M"; n2_rps=$rps; n2_p99=$p99
run dashpush-h1 "http://127.0.0.1:$DP$path" --h1; d1_rps=$rps; d1_p99=$p99
run nginx-h1 "http://127.0.0.1:$NH1$path" --h1; n1_rps=$rps; n1_p99=$p99

printf '\n%-10s %-10s %12s %10s\n' protocol server "req/s" "p99 ms"
printf '%-10s %-10s %12.0f %10s\n' h2c dashpush "$d2_rps" "$d2_p99" h2c nginx "$n2_rps" "$n2_p99" \
  http/1.1 dashpush "$d1_rps" "$d1_p99" http/1.1 nginx "$n1_rps" "$n1_p99"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a/b}'; }
echo
echo "h2c      dashpush/nginx: req/s $(ratio "$d2_rps" "$n2_rps")x  p99 $(ratio "$d2_p99" "$n2_p99")x   (target: >= 1.30x req/s, <= 1.00x p99)"
echo "http/1.1 dashpush/nginx: req/s $(ratio "$d1_rps" "$n1_rps")x  p99 $(ratio "$d1_p99" "$n1_p99")x   (target: >= 1.20x req/s)"
echo "(n=$N, c=$C, h2 streams per connection=$M, body $(curl -s "http://127.0.0.1:$DP$path" | wc -c) bytes)"
if [ -n "${SVG:-}" ]; then
  cat <<JSON | python3 benches/bars.py - "$SVG"
{"title": "Cache-hot dashpush vs nginx proxy_cache (benches/proxy_vs_nginx.sh $N $C $M)",
 "panels": [
  {"title": "requests per second", "groups": [
    {"label": "h2c", "bars": {"dashpush": $d2_rps, "nginx": $n2_rps}, "target": $(awk -v n="$n2_rps" 'BEGIN {print n * 1.3}')},
    {"label": "HTTP/1.1", "bars": {"dashpush": $d1_rps, "nginx": $n1_rps}, "target": $(awk -v n="$n1_rps" 'BEGIN {print n * 1.2}')}]},
  {"title": "p99 latency (ms)", "groups": [
    {"label": "h2c", "bars": {"dashpush": $d2_p99, "nginx": $n2_p99}, "target": $n2_p99},
    {"label": "HTTP/1.1", "bars": {"dashpush": $d1_p99, "nginx": $n1_p99}}]}]}
JSON
  echo "drawn: $SVG"
fi
