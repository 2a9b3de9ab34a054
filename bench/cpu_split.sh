#!/usr/bin/env bash
# Where a proxied request's CPU goes (issue 8, targets 1 and 2): user and kernel
# (system) time per request of nginx and meshgate, each one worker, under the same
# closed-loop load, and the system calls each makes per request.
#
#   ./bench/cpu_split.sh                 # 3 rounds of 5 s
#   SECS=10 ROUNDS=5 ./bench/cpu_split.sh
#
# Why: both proxies make the same kind of system calls for a keep-alive request
# (read the request, write it upstream, read the response, write it back), and on
# loopback the kernel's share of that (the TCP stack of both ends of each write runs
# in the writer's system time) is a floor no user-space work removes. Comparing the
# user and system columns shows how much of the gap to nginx is user space, and what
# a CPU/request target relative to nginx leaves for it.
#
# Setup, on 127.0.0.1 with free ports: the backend of ../shared/bench/peers.sh
# (nginx, one worker, 19-byte 200), nginx as a proxy with one worker as peers.sh
# configures it, meshgate `run` with bench/proxy.yaml (one worker, access log on, to
# a file in the temp dir). Each round drives nginx then meshgate with
# `wrk -t1 -c64 -dSECS` and reads utime/stime of the proxy's serving process (nginx:
# its worker) from /proc/PID/stat. Then, once per proxy, `perf stat -e
# raw_syscalls:sys_enter` counts its system calls over a further run (skipped, with
# a note, where perf is missing or not permitted).
#
# Options (env): BIN ($CARGO_TARGET_DIR/release/meshgate; not built here), SECS (5),
# ROUNDS (3), KEEP (1 = keep the temp dir).
# Needs: apt packages nginx-light wrk python3 curl (perf optional: linux-perf).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/meshgate-target}
BIN=${BIN:-$CARGO_TARGET_DIR/release/meshgate} SECS=${SECS:-5} ROUNDS=${ROUNDS:-3}
for t in nginx wrk python3 curl; do
  command -v "$t" >/dev/null || { echo "missing $t: apt-get install -y nginx-light wrk python3 curl" >&2; exit 2; }
done
[ -x "$BIN" ] || { echo "no $BIN: cargo build --release -p meshgate" >&2; exit 2; }
. bench/lib.sh
work_dir cpu-split

be=$(free_port) np=$(free_port) mp=$(free_port)
backend_conf "$work" "$be"
peer_confs "$work" "$be" "$np" "$(free_port)" 1
meshgate_conf "$work" "$be" "$mp" 1
nginx -c "$work/backend.conf" & pids+=($!)
nginx -c "$work/nginx.conf" & nginx_master=$!; pids+=($nginx_master)
"$BIN" run -c "$work/meshgate.yaml" 2> "$work/meshgate.log" & mesh_pid=$!; pids+=($mesh_pid)
await_port "$np" "$work/nginx.err"
await_port "$mp" "$work/meshgate.log"
nginx_worker=$(pgrep -P "$nginx_master")
tck=$(getconf CLK_TCK)

# Prints "req/s user_us sys_us" for one run against port $2, process $1.
measure() {
  local pid=$1 port=$2 u0 s0 u1 s1 reqs
  read -r u0 s0 < <(awk '{print $14, $15}' "/proc/$pid/stat")
  reqs=$(wrk -t1 -c64 -d"${SECS}s" "http://127.0.0.1:$port/" | awk '/requests in/ {print $1}')
  read -r u1 s1 < <(awk '{print $14, $15}' "/proc/$pid/stat")
  python3 -c "r=$reqs; print(f'{r/$SECS:.0f} {($u1-$u0)/$tck*1e6/r:.2f} {($s1-$s0)/$tck*1e6/r:.2f}')"
}

echo "### CPU split, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "wrk -t1 -c64 -d${SECS}s, keep-alive; one worker each; meshgate's access log on"
echo
echo "| round | target | req/s | user µs/req | system µs/req | total µs/req |"
echo "|---|---|---|---|---|---|"
wrk -t1 -c64 -d1s "http://127.0.0.1:$np/" > /dev/null
wrk -t1 -c64 -d1s "http://127.0.0.1:$mp/" > /dev/null
for r in $(seq 1 "$ROUNDS"); do
  for t in "nginx $nginx_worker $np" "meshgate $mesh_pid $mp"; do
    read -r name pid port <<< "$t"
    read -r rps user sys < <(measure "$pid" "$port")
    echo "| $r | $name | $rps | $user | $sys | $(python3 -c "print(f'{$user+$sys:.2f}')") |"
  done
done

echo
if ! command -v perf >/dev/null; then
  echo "(system calls per request: perf not installed)"
  exit 0
fi
echo "| target | system calls per request |"
echo "|---|---|"
for t in "nginx $nginx_worker $np" "meshgate $mesh_pid $mp"; do
  read -r name pid port <<< "$t"
  perf stat -e raw_syscalls:sys_enter -p "$pid" -x, -o "$work/$name.perf" -- sleep $((SECS + 1)) &
  perf_pid=$!
  sleep 0.5
  reqs=$(wrk -t1 -c64 -d"${SECS}s" "http://127.0.0.1:$port/" | awk '/requests in/ {print $1}')
  if wait "$perf_pid" && calls=$(awk -F, '/raw_syscalls:sys_enter/ {print $1}' "$work/$name.perf") \
      && [ -n "$calls" ] && [ "$calls" != "<not" ]; then
    echo "| $name | $(python3 -c "print(f'{$calls/$reqs:.2f}')") |"
  else
    echo "| $name | (perf could not count: $(tail -1 "$work/$name.perf" 2>/dev/null)) |"
  fi
done
