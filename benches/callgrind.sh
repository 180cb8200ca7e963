#!/usr/bin/env bash
# Instructions per proxied HTTP/1.1 request, counted by callgrind (repeatable whatever else the
# machine does): the proxy on one worker in front of nginx `return 200`, `wrk -t1 -c8` for
# SECONDS, minus the instructions of an idle run of the same length, divided by the requests
# wrk completed. Needs valgrind, wrk and nginx (Debian packages valgrind, wrk, nginx-light).
#
#   benches/callgrind.sh target/release/loadshift [SECONDS]
#
# Compare two builds by running it on each in turn; the absolute count depends on the toolchain
# and the libc, the difference between two builds on this machine does not.
set -euo pipefail
bin=$(realpath "$1")
secs=${2:-6}
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$dir"' EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
up=$(port); px=$(port); admin=$(port)
render() { sed -e "s#{{DIR}}#$dir#g" -e "s#{{PORT}}#$1#g" -e "s#{{ADMIN}}#$admin#g" -e "s#{{UPSTREAM}}#$up#g" "$2"; }
render "$up" "$here/peers/upstream-nginx.conf" > "$dir/nginx.conf"
render "$px" "$here/peers/loadshift-proxy.yaml" > "$dir/proxy.yaml"
nginx -c "$dir/nginx.conf" -p "$dir" &

wait_port() {
  for _ in $(seq 1 600); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on $1" >&2
  return 1
}
wait_port "$up"

# One callgrind run of the proxy: ready, then `$1` for SECONDS, then SIGTERM; prints its total.
run() {
  local out="$dir/callgrind.$2"
  valgrind --tool=callgrind --callgrind-out-file="$out" "$bin" proxy --config "$dir/proxy.yaml" \
    > "$dir/proxy.$2.log" 2>&1 &
  local pid=$!
  wait_port "$px"
  eval "$1"
  kill -TERM "$pid"
  wait "$pid" || true
  awk '/^(summary|totals):/ {print $2; exit}' "$out"
}

idle=$(run "sleep $secs" idle)
loaded=$(run "wrk -t1 -c8 -d${secs}s -H 'Host: web' http://127.0.0.1:$px/ > $dir/wrk.txt" loaded)
requests=$(awk '/requests in/ {print $1}' "$dir/wrk.txt")
echo "idle ${idle} loaded ${loaded} requests ${requests}"
echo "instructions per request: $(( (loaded - idle) / requests ))"
