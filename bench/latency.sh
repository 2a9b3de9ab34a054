#!/usr/bin/env bash
# Latency at a fixed rate (issue 8, target 3): at half of nginx's maximum throughput,
# driven by a constant-rate load generator with coordinated-omission correction,
# meshgate's p99 must be ≤ nginx's p99.
#
#   ./bench/latency.sh                        # measure nginx's max, then 3 rounds of 10 s
#   SECS=5 ROUNDS=2 ./bench/latency.sh        # quick run
#   RATE=20000 ./bench/latency.sh             # skip step 1: nginx's max taken as 20000
#
# Setup, all on 127.0.0.1 with free ports found at run time, in a temp dir:
#   backend   nginx, one worker, 200 with a 19-byte body (bench/lib.sh backend_conf,
#             as ../shared/bench/peers.sh's backend)
#   nginx     one worker, proxying to the backend as peers.sh configures it (upstream
#             keepalive 256, HTTP/1.1 upstream, access log off)
#   haproxy   one thread, as peers.sh configures it (http-keep-alive, http-reuse always)
#   meshgate  `$BIN run -c meshgate.yaml`: bench/proxy.yaml (one worker thread, one
#             route, access log ON, JSON lines to access.log in the temp dir) with its
#             listener and backend endpoint rewritten to the free ports
# Each target is warmed with 1 s of wrk. Step 1: nginx's maximum = wrk -t1 -c64
# (keep-alive) for SECS seconds against the nginx proxy (skipped when RATE is given).
# Step 2: ROUNDS rounds; each round runs all three targets one after the other (the
# order rotates each round), each with
#   oha -z SECS -q RATE/2 --latency-correction -w -c CONNS --no-tui --output-format json
# (-w: requests in flight at the deadline are waited for, not counted as errors).
# With --latency-correction a request's latency is measured from the moment the
# constant-rate schedule meant to send it, so a stall counts against every request
# it delayed (no coordinated omission).
#
# Output: a markdown table, one row per run: the rate asked and achieved, p50/p99/p99.9
# latency in ms (an achieved rate < 98 % of the asked one is marked "(behind)": that
# target could not keep up, so its corrected latencies include the backlog), requests
# (answered or failed), non-200s (other statuses plus errors),
# and the proxy's CPU µs/request over that run (utime+stime of the proxy process and,
# for nginx, its workers, from /proc/PID/stat, ÷ requests). Then the medians per
# target and the ratio of meshgate's median p99 to nginx's (target: ≤ 1.00).
# The load generator, the backend and the proxy share the machine's cores: read the
# ratios within one run, not the absolute figures; the load average is printed.
#
# Options (env): BIN (meshgate binary; default $CARGO_TARGET_DIR/release/meshgate, not
# built by this script: `cargo build --release -p meshgate` first), RATE (nginx's
# maximum req/s; default: measured in step 1), SECS (10), CONNS (32), ROUNDS (3),
# KEEP (1: keep the temp dir with configs, logs and oha's JSON).
# Needs: the Rust toolchain (oha is installed with `cargo install --locked` under
# $CARGO_TARGET_DIR when it is not in PATH) and the Debian packages
# nginx-light haproxy wrk python3 curl.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/meshgate-target}
BIN=${BIN:-$CARGO_TARGET_DIR/release/meshgate}
RATE=${RATE:-} SECS=${SECS:-10} CONNS=${CONNS:-32} ROUNDS=${ROUNDS:-3}
for t in nginx haproxy wrk python3 curl; do
  command -v "$t" >/dev/null || { echo "missing $t: apt-get install -y nginx-light haproxy wrk python3 curl" >&2; exit 2; }
done
[ -x "$BIN" ] || { echo "no meshgate binary at $BIN: cargo build --release -p meshgate, or set BIN" >&2; exit 2; }
. bench/lib.sh
find_oha
work_dir latency

# Four distinct free ports.
ports=()
while [ ${#ports[@]} -lt 4 ]; do
  p=$(free_port)
  [[ " ${ports[*]} " == *" $p "* ]] || ports+=("$p")
done
be=${ports[0]} ng=${ports[1]} hp=${ports[2]} mg=${ports[3]}

backend_conf "$work" "$be"
peer_confs "$work" "$be" "$ng" "$hp" 1
meshgate_conf "$work" "$be" "$mg" 1

declare -A pid port
start() { # name port command...
  local name=$1; port[$name]=$2; shift 2
  "$@" > "$work/$name.log" 2>&1 &
  pids+=($!); pid[$name]=$!
}
start backend "$be" nginx -c "$work/backend.conf"
await_port "$be" "$work/backend.log"
start nginx "$ng" nginx -c "$work/nginx.conf"
start haproxy "$hp" haproxy -f "$work/haproxy.cfg"
start meshgate "$mg" "$BIN" run -c "$work/meshgate.yaml"
targets=(nginx haproxy meshgate)
for t in "${targets[@]}"; do await_port "${port[$t]}" "$work/$t.log"; done

hz=$(getconf CLK_TCK)
url() { echo "http://127.0.0.1:${port[$1]}/"; }
for t in "${targets[@]}"; do wrk -t1 -c64 -d1s "$(url "$t")" > /dev/null; done

load0=$(cut -d' ' -f1-3 /proc/loadavg)
if [ -z "$RATE" ]; then
  out=$(wrk -t1 -c64 -d"${SECS}s" "$(url nginx)")
  RATE=$(awk '/Requests\/sec/ {printf "%d", $2}' <<< "$out")
  max_how="measured: wrk -t1 -c64 -d${SECS}s against the nginx proxy"
else
  max_how="given (RATE)"
fi
q=$((RATE / 2))
[ "$q" -gt 0 ] || { echo "rate $RATE too low" >&2; exit 1; }

# One oha run at $q req/s against target $1 in round $2; appends a row to rows.tsv:
# round target q achieved p50_ms p99_ms p999_ms requests non200 cpu_us_per_req
run() {
  local t=$1 r=$2 c0 c1
  c0=$(tree_ticks "${pid[$t]}")
  "$oha" --no-tui --output-format json -z "${SECS}s" -q "$q" --latency-correction -w \
    -c "$CONNS" "$(url "$t")" > "$work/oha-$r-$t.json"
  c1=$(tree_ticks "${pid[$t]}")
  python3 - "$work/oha-$r-$t.json" "$r" "$t" "$q" "$((c1 - c0))" "$hz" >> "$work/rows.tsv" <<'PY'
import json, sys
f, r, t, q, ticks, hz = sys.argv[1:]
d = json.load(open(f))
p = d["latencyPercentiles"]
codes = d.get("statusCodeDistribution", {})
errs = sum(d.get("errorDistribution", {}).values())
n = sum(codes.values()) + errs
bad = n - codes.get("200", 0)
cpu = int(ticks) / int(hz) * 1e6 / n if n else float("nan")
ms = lambda v: (v or 0) * 1e3
print(r, t, q, f'{d["summary"]["requestsPerSec"]:.0f}', f'{ms(p["p50"]):.3f}',
      f'{ms(p["p99"]):.3f}', f'{ms(p["p99.9"]):.3f}', n, bad, f'{cpu:.1f}', sep="\t")
if bad:
    print(f"round {r} {t}: {bad} non-200 responses or errors: {codes} {d.get('errorDistribution')}",
          file=sys.stderr)
PY
}

: > "$work/rows.tsv"
for r in $(seq 1 "$ROUNDS"); do
  for i in 0 1 2; do
    run "${targets[$(((r - 1 + i) % 3))]}" "$r"
  done
done
load1=$(cut -d' ' -f1-3 /proc/loadavg)
[ -s "$work/access.log" ] || { echo "meshgate wrote no access log to $work/access.log" >&2; exit 1; }

echo
echo "### latency at a fixed rate, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load average before $load0, after $load1"
echo
echo "nginx maximum $RATE req/s ($max_how); load: oha -z ${SECS}s -q $q --latency-correction -w -c $CONNS (keep-alive), $ROUNDS rounds; $("$BIN" --version 2>/dev/null || echo "$BIN"), access log on"
echo
python3 - "$work/rows.tsv" <<'PY'
import statistics, sys
rows = [l.split("\t") for l in open(sys.argv[1]).read().splitlines()]
print("| round | target | rate req/s | achieved req/s | p50 ms | p99 ms | p99.9 ms | requests | non-200s | CPU µs/req |")
print("|---|---|---|---|---|---|---|---|---|---|")
behind = False
for r in rows:
    if float(r[3]) < 0.98 * float(r[2]):  # the target fell behind the constant rate
        r = r[:3] + [r[3] + " (behind)"] + r[4:]
        behind = True
    print("| " + " | ".join(r) + " |")
if behind:
    print("\n(behind): the target served < 98 % of the rate asked: it was saturated (or starved of "
          "CPU) during that run, and its corrected latencies include the growing backlog.")
med = {}
for t in ("nginx", "haproxy", "meshgate"):
    sel = [r for r in rows if r[1] == t]
    med[t] = [statistics.median(float(r[i]) for r in sel) for i in (4, 5, 6, 9)]
print()
print("| target (medians) | p50 ms | p99 ms | p99.9 ms | CPU µs/req | p99 ÷ nginx's |")
print("|---|---|---|---|---|---|")
for t, (a, b, c, cpu) in med.items():
    print(f"| {t} | {a:.3f} | {b:.3f} | {c:.3f} | {cpu:.1f} | {b / med['nginx'][1]:.2f} |")
print()
n, h, m = (med[t][1] for t in ("nginx", "haproxy", "meshgate"))
# A p99 that moves more than 5x between rounds of the same target measures the
# machine's stalls, not the proxy: then no verdict is printed.
spread = max(max(p) / min(p) for p in
             ([float(r[5]) for r in rows if r[1] == t] for t in ("nginx", "haproxy", "meshgate")))
verdict = ("met" if m <= n else "not met") if spread <= 5 else \
    f"no verdict: a target's p99 varied {spread:.0f}x between rounds (machine noise); rerun on a quiet machine"
print(f"median p99: nginx {n:.3f} ms, haproxy {h:.3f} ms, meshgate {m:.3f} ms; "
      f"meshgate/nginx = {m / n:.2f} (target ≤ 1.00: {verdict})")
PY
