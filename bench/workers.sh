#!/usr/bin/env bash
# Multi-core scaling (issue 8, target 6): throughput with 1 and 2 worker threads,
# meshgate next to nginx (1 and 2 worker processes) and HAProxy (1 and 2 threads).
#
#   ./bench/workers.sh                        # 3 rounds of 10 s
#   SECS=5 ROUNDS=2 ./bench/workers.sh        # quick run
#
# READ THIS FIRST: on a 2-core machine the load generator (wrk, 2 threads) and the
# backend (nginx, 2 workers) share the two cores with the proxy, so no target can
# scale 2× from W=1 to W=2: a second proxy worker only gets the CPU that wrk and the
# backend leave. The scaling factors are comparable BETWEEN targets measured in the
# same run (meshgate's against nginx's and HAProxy's), not against the ideal 2.0.
#
# Setup, all on 127.0.0.1 with free ports found at run time, in a temp dir:
#   backend   nginx, TWO workers (so it is not the bottleneck when the proxy has two),
#             200 with a 19-byte body (bench/lib.sh backend_conf_workers)
#   for W in 1 2, all started at once and idle while another is measured:
#   nginx     worker_processes W, otherwise as ../shared/bench/peers.sh configures it
#             (upstream keepalive 256, HTTP/1.1 upstream, access log off; no reuseport)
#   haproxy   nbthread W, otherwise as peers.sh (http-keep-alive, http-reuse always)
#   meshgate  `$BIN run -c w$W/meshgate.yaml`: bench/proxy.yaml (one route, access log
#             ON to a file in the temp dir) with `runtime: {workerThreads: W}` and its
#             listener and backend endpoint rewritten to the free ports
# Each target is warmed with 1 s of wrk. Then ROUNDS rounds; each round drives the six
# (target, W) pairs one after the other (W=1 then W=2; the target order rotates each
# round) with
#   wrk -t2 -c128 -dSECS --latency (keep-alive)
# The SAME load for W=1 and W=2: two wrk threads, so that the load generator is not
# what limits the W=2 figures (one wrk thread saturates about where one proxy
# worker does), and 128 connections, 64 per wrk thread as in peers.sh.
#
# Output: a markdown table, one row per run: req/s, p50 and p99 latency (ms, wrk's,
# without coordinated-omission correction: this is a closed-loop throughput test),
# requests, errors (non-2xx + socket errors), and the proxy's CPU µs/request (utime+
# stime of the proxy process, and for nginx of its master and workers, from
# /proc/PID/stat, ÷ requests). Then the medians per target and W, each target's
# scaling factor (median W=2 req/s ÷ median W=1 req/s) and req/s relative to nginx
# at the same W. The load average before and after is printed: this is noisy when
# anything else runs on the machine.
#
# Options (env): BIN (meshgate binary; default $CARGO_TARGET_DIR/release/meshgate, not
# built by this script: `cargo build --release -p meshgate` first), SECS (10),
# ROUNDS (3), KEEP (1: keep the temp dir with configs and logs).
# Needs: the Debian packages nginx-light haproxy wrk python3 curl.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/meshgate-target}
BIN=${BIN:-$CARGO_TARGET_DIR/release/meshgate}
SECS=${SECS:-10} ROUNDS=${ROUNDS:-3}
WRK=(wrk -t2 -c128)
for t in nginx haproxy wrk python3 curl; do
  command -v "$t" >/dev/null || { echo "missing $t: apt-get install -y nginx-light haproxy wrk python3 curl" >&2; exit 2; }
done
[ -x "$BIN" ] || { echo "no meshgate binary at $BIN: cargo build --release -p meshgate, or set BIN" >&2; exit 2; }
. bench/lib.sh
work_dir workers

# Seven distinct free ports: the backend, then nginx, HAProxy, meshgate for W=1 and 2.
ports=()
while [ ${#ports[@]} -lt 7 ]; do
  p=$(free_port)
  [[ " ${ports[*]} " == *" $p "* ]] || ports+=("$p")
done
be=${ports[0]}
backend_conf_workers "$work" "$be" 2

declare -A pid port
start() { # key port log command...
  local key=$1; port[$key]=$2; local log=$3; shift 3
  "$@" > "$log" 2>&1 &
  pids+=($!); pid[$key]=$!
}
start backend "$be" "$work/backend.log" nginx -c "$work/backend.conf"
await_port "$be" "$work/backend.log"
i=1
for w in 1 2; do
  d="$work/w$w"; mkdir -p "$d"
  ng=${ports[$i]} hp=${ports[$((i + 1))]} mg=${ports[$((i + 2))]}; i=$((i + 3))
  peer_confs "$d" "$be" "$ng" "$hp" "$w"
  meshgate_conf "$d" "$be" "$mg" "$w"
  start "nginx/$w" "$ng" "$d/nginx.log" nginx -c "$d/nginx.conf"
  start "haproxy/$w" "$hp" "$d/haproxy.log" haproxy -f "$d/haproxy.cfg"
  start "meshgate/$w" "$mg" "$d/meshgate.log" "$BIN" run -c "$d/meshgate.yaml"
done
targets=(nginx haproxy meshgate)
for w in 1 2; do
  for t in "${targets[@]}"; do await_port "${port[$t/$w]}" "$work/w$w/$t.log"; done
done
[ "$(pgrep -c -P "${pid[nginx/2]}")" = 2 ] || { echo "nginx for W=2 does not have 2 workers" >&2; exit 1; }

hz=$(getconf CLK_TCK)
for w in 1 2; do
  for t in "${targets[@]}"; do "${WRK[@]}" -d1s "http://127.0.0.1:${port[$t/$w]}/" > /dev/null; done
done

# One wrk run against target $1 with $2 workers in round $3; appends a row to rows.tsv:
# round W target req/s p50_ms p99_ms requests errors cpu_us_per_req
run() {
  local t=$1 w=$2 r=$3 c0 c1 out
  out="$work/wrk-$r-$w-$t.txt"
  c0=$(tree_ticks "${pid[$t/$w]}")
  "${WRK[@]}" -d"${SECS}s" --latency "http://127.0.0.1:${port[$t/$w]}/" > "$out"
  c1=$(tree_ticks "${pid[$t/$w]}")
  python3 - "$out" "$r" "$w" "$t" "$((c1 - c0))" "$hz" >> "$work/rows.tsv" <<'PY'
import re, sys
f, r, w, t, ticks, hz = sys.argv[1:]
out = open(f).read()
def ms(v):
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", v)
    return float(m[1]) * {"us": 1e-3, "ms": 1, "s": 1e3, "m": 6e4}[m[2]]
lat = dict(re.findall(r"^\s+(50|99)\.000%\s+(\S+)$", out, re.M) or
           re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.M))
n = int(re.search(r"^\s*(\d+) requests in", out, re.M)[1])
rps = float(re.search(r"^Requests/sec:\s+([0-9.]+)", out, re.M)[1])
errs = sum(int(x) for x in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
se = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
if se:
    errs += sum(int(x) for x in se.groups())
cpu = int(ticks) / int(hz) * 1e6 / n if n else float("nan")
print(r, w, t, f"{rps:.0f}", f"{ms(lat['50']):.3f}", f"{ms(lat['99']):.3f}", n, errs,
      f"{cpu:.1f}", sep="\t")
if errs:
    print(f"round {r} {t} W={w}: {errs} errors:\n{out}", file=sys.stderr)
PY
}

load0=$(cut -d' ' -f1-3 /proc/loadavg)
: > "$work/rows.tsv"
for r in $(seq 1 "$ROUNDS"); do
  for w in 1 2; do
    for i in 0 1 2; do
      run "${targets[$(((r - 1 + i) % 3))]}" "$w" "$r"
    done
  done
done
load1=$(cut -d' ' -f1-3 /proc/loadavg)
for w in 1 2; do
  [ -s "$work/w$w/access.log" ] || { echo "meshgate W=$w wrote no access log" >&2; exit 1; }
done

echo
echo "### worker scaling, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load average before $load0, after $load1"
echo
echo "load: ${WRK[*]} -d${SECS}s (keep-alive, same for W=1 and W=2), $ROUNDS rounds; backend nginx with 2 workers; $("$BIN" --version 2>/dev/null || echo "$BIN"), access log on."
echo "On $(nproc) cores wrk and the backend share the cores with the proxy: no target can scale 2×; compare the targets' factors."
echo
python3 - "$work/rows.tsv" <<'PY'
import statistics, sys
rows = [l.split("\t") for l in open(sys.argv[1]).read().splitlines()]
print("| round | W | target | req/s | p50 ms | p99 ms | requests | errors | CPU µs/req |")
print("|---|---|---|---|---|---|---|---|---|")
for r in rows:
    print("| " + " | ".join(r) + " |")
med = {}
for t in ("nginx", "haproxy", "meshgate"):
    for w in ("1", "2"):
        sel = [r for r in rows if r[2] == t and r[1] == w]
        med[t, w] = [statistics.median(float(r[i]) for r in sel) for i in (3, 5, 8)]
print()
print("| target (medians) | W=1 req/s | W=2 req/s | scaling W=2÷W=1 | W=1 p99 ms | W=2 p99 ms "
      "| W=1 CPU µs/req | W=2 CPU µs/req | W=1 req/s ÷ nginx's | W=2 req/s ÷ nginx's |")
print("|---|---|---|---|---|---|---|---|---|---|")
for t in ("nginx", "haproxy", "meshgate"):
    (a1, p1, c1), (a2, p2, c2) = med[t, "1"], med[t, "2"]
    print(f"| {t} | {a1:.0f} | {a2:.0f} | {a2 / a1:.2f} | {p1:.3f} | {p2:.3f} | {c1:.1f} | {c2:.1f} "
          f"| {a1 / med['nginx', '1'][0]:.2f} | {a2 / med['nginx', '2'][0]:.2f} |")
print()
s = {t: med[t, "2"][0] / med[t, "1"][0] for t in ("nginx", "haproxy", "meshgate")}
print(f"scaling W=2÷W=1: nginx {s['nginx']:.2f}, haproxy {s['haproxy']:.2f}, meshgate {s['meshgate']:.2f} "
      f"(meshgate's ÷ nginx's = {s['meshgate'] / s['nginx']:.2f})")
PY
