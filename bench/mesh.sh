#!/usr/bin/env bash
# Mesh sidecar pair (issue 7): latency a pair of sidecars adds at a fixed request rate,
# and each sidecar's memory and CPU per request.
#
#   (a) direct   load generator -> app
#   (b) mesh     load generator -> client's sidecar (outbound, Host: app)
#                -> mTLS -> app's sidecar (inbound) -> app
#
# All real processes on 127.0.0.1: `meshgate control` (temp dir, generated tokens, its
# mesh CA), `meshgate apply` of a mesh document with services `client` and `app`, the
# app (`meshgate echo`), and two `meshgate sidecar`s. Load: oha at a constant rate with
# coordinated-omission correction (`-q RATE --latency-correction`), keep-alive on.
# Added latency = (b) - (a) at p50 and p99. RSS = VmRSS of each sidecar, idle after the
# run (split into anonymous and file-backed, with PSS and the peak); CPU/req = (utime+stime delta over the mesh run, /proc/PID/stat) / requests.
#
# Options (env): RATE (1000 req/s), SECS (30), CONNS (16), ROUNDS (1: direct, mesh
# alternated ROUNDS times, each row printed), ACCESS_LOG (off; or a path, "stdout"),
# PERF (empty; "client" or "app": `perf record -g` that sidecar during the last mesh run,
# writing $WORK/perf-<which>.data), KEEP (1: keep the temp dir), HOLD (seconds to keep
# everything running after the report, e.g. to inspect the sidecars' memory).
# Needs: the Rust toolchain, curl, python3 (free ports). oha is installed with
# `cargo install --root $CARGO_TARGET_DIR oha --locked` when absent from PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/meshgate-target}
RATE=${RATE:-1000} SECS=${SECS:-30} CONNS=${CONNS:-16} ROUNDS=${ROUNDS:-1}
ACCESS_LOG=${ACCESS_LOG:-off} PERF=${PERF:-}

cargo build --release --quiet -p meshgate
bin="$CARGO_TARGET_DIR/release/meshgate"
. bench/lib.sh
find_oha

work_dir mesh
# Waits (up to $2 s) until the command in $3... succeeds; fails with $1 otherwise.
await() {
  local what=$1 limit=$2; shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
      echo "timed out waiting for $what; logs in $work" >&2
      tail -n 20 "$work"/*.log >&2 || true
      KEEP=1
      exit 1
    fi
    sleep 0.2
  done
}

cp_port=$(free_port) app_port=$(free_port)
c_in=$(free_port) c_out=$(free_port) a_in=$(free_port) a_out=$(free_port)
cd "$work"
for t in operator sidecar registrar; do head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > $t.token; done
chmod 600 ./*.token
cat > control.yaml <<YAML
listen: 127.0.0.1:$cp_port
dataDir: data
tokens:
  - {name: ops, tokenFile: operator.token, scope: operator}
  - {name: sidecars, tokenFile: sidecar.token, scope: sidecar}
  - {name: instances, tokenFile: registrar.token, scope: registrar}
mesh: {trustDomain: cluster.local}
YAML
"$bin" control -c control.yaml > control.log 2>&1 & pids+=($!)
export MESHGATE_CONTROL=https://127.0.0.1:$cp_port
export MESHGATE_CONTROL_CA=$work/data/ca/ca.pem MESHGATE_TOKEN_FILE=$work/operator.token
await "the control plane" 60 "$bin" status

cat > mesh.yaml <<'YAML'
mesh:
  trustDomain: cluster.local
  services:
    - {name: client, ports: [{port: 8080, protocol: HTTP}]}
    - {name: app, ports: [{port: 8080, protocol: HTTP}]}
YAML
"$bin" apply -f mesh.yaml > apply.log 2>&1

"$bin" echo --listen 127.0.0.1:$app_port --name app 2> app.log & pids+=($!)
await "the app" 30 curl -fs http://127.0.0.1:$app_port/

common=(--control "$MESHGATE_CONTROL" --control-ca "$MESHGATE_CONTROL_CA"
  --token-file sidecar.token --registrar-token-file registrar.token --access-log "$ACCESS_LOG")
# The client's app is the load generator; its sidecar still wants an app port (inbound).
"$bin" sidecar --service client "${common[@]}" --app-port "$app_port" \
  --inbound-port "$c_in" --outbound-port "$c_out" --data-dir sc-client 2> sc-client.log &
client_pid=$!; pids+=($client_pid)
"$bin" sidecar --service app "${common[@]}" --app-port "$app_port" \
  --inbound-port "$a_in" --outbound-port "$a_out" --data-dir sc-app 2> sc-app.log &
app_pid=$!; pids+=($app_pid)
# Served end to end: the client's sidecar knows the app's registered inbound address.
await "the sidecar pair" 90 curl -fs -H 'host: app' http://127.0.0.1:$c_out/

direct_url=http://127.0.0.1:$app_port/
mesh_url=http://127.0.0.1:$c_out/

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
# Anonymous (heap, stacks) and file-backed (the binary's touched pages) parts of VmRSS.
anon_kb() { awk '/^RssAnon:/ {print $2}' "/proc/$1/status"; }
file_kb() { awk '/^RssFile:/ {print $2}' "/proc/$1/status"; }
# Proportional set size: shared pages (the one binary's text, mapped by all four
# meshgate processes here) divided among the processes that map them.
pss_kb() { awk '/^Pss:/ {print $2}' "/proc/$1/smaps_rollup"; }
hz=$(getconf CLK_TCK)

# Runs oha at the fixed rate; prints "p50_ms p99_ms requests ok_share".
load() {
  local url=$1 secs=$2
  "$oha" --no-tui --output-format json -z "${secs}s" -q "$RATE" --latency-correction \
    -c "$CONNS" -H 'host: app' "$url" > oha.json
  python3 - <<'PY'
import json
d = json.load(open("oha.json"))
p = d["latencyPercentiles"]
codes = d.get("statusCodeDistribution", {})
ok = codes.get("200", 0)
n = sum(codes.values()) + sum(d.get("errorDistribution", {}).values())
print(f'{p["p50"]*1e3:.3f} {p["p99"]*1e3:.3f} {n} {ok / n if n else 0:.4f}')
PY
}

# Warm both paths (connections, TLS session, allocator) before measuring.
load "$direct_url" 3 > /dev/null
load "$mesh_url" 3 > /dev/null

rows=()
for r in $(seq 1 "$ROUNDS"); do
  read -r d50 d99 dn dok < <(load "$direct_url" "$SECS")
  c0=$(cpu_ticks $client_pid) a0=$(cpu_ticks $app_pid)
  perf_pid=
  if [ -n "$PERF" ] && [ "$r" = "$ROUNDS" ]; then
    target=$client_pid; [ "$PERF" = app ] && target=$app_pid
    perf record -e cpu-clock -g -p "$target" -o "$work/perf-$PERF.data" -- sleep "$SECS" \
      2> perf.log & perf_pid=$!
  fi
  read -r m50 m99 mn mok < <(load "$mesh_url" "$SECS")
  c1=$(cpu_ticks $client_pid) a1=$(cpu_ticks $app_pid)
  [ -n "$perf_pid" ] && wait "$perf_pid"
  rows+=("$r $d50 $d99 $dn $dok $m50 $m99 $mn $mok $((c1 - c0)) $((a1 - a0))")
done
sleep 2 # idle: RSS after the run, not mid-burst
c_rss=$(rss_kb $client_pid) a_rss=$(rss_kb $app_pid)
c_hwm=$(hwm_kb $client_pid) a_hwm=$(hwm_kb $app_pid)
c_anon=$(anon_kb $client_pid) a_anon=$(anon_kb $app_pid)
c_file=$(file_kb $client_pid) a_file=$(file_kb $app_pid)
c_pss=$(pss_kb $client_pid) a_pss=$(pss_kb $app_pid)

echo
echo "### mesh sidecar pair, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "oha -z ${SECS}s -q $RATE --latency-correction -c $CONNS (keep-alive), access log $ACCESS_LOG"
echo
echo "| round | direct p50 ms | direct p99 ms | mesh p50 ms | mesh p99 ms | added p50 ms | added p99 ms | mesh requests (200s) | client sidecar CPU µs/req | app sidecar CPU µs/req |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for row in "${rows[@]}"; do
  read -r r d50 d99 dn dok m50 m99 mn mok ct at <<< "$row"
  awk -v r="$r" -v d50="$d50" -v d99="$d99" -v m50="$m50" -v m99="$m99" -v mn="$mn" \
      -v mok="$mok" -v ct="$ct" -v at="$at" -v hz="$hz" 'BEGIN {
    printf "| %s | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %d (%.1f%%) | %.1f | %.1f |\n",
      r, d50, d99, m50, m99, m50 - d50, m99 - d99, mn, mok * 100,
      ct / hz * 1e6 / mn, at / hz * 1e6 / mn }'
done
echo
echo "| sidecar | RSS idle after the run (VmRSS) | of which anonymous | of which file-backed | PSS | peak (VmHWM) |"
echo "|---|---|---|---|---|---|"
awk -v c="$c_rss" -v a="$a_rss" -v ch="$c_hwm" -v ah="$a_hwm" -v ca="$c_anon" -v aa="$a_anon" \
    -v cf="$c_file" -v af="$a_file" -v cp="$c_pss" -v ap="$a_pss" 'BEGIN {
  f = "| %s | %.1f MB | %.1f MB | %.1f MB | %.1f MB | %.1f MB |\n"
  printf f, "client", c / 1024, ca / 1024, cf / 1024, cp / 1024, ch / 1024
  printf f, "app", a / 1024, aa / 1024, af / 1024, ap / 1024, ah / 1024 }'
[ -n "$PERF" ] && echo && echo "perf data: $work/perf-$PERF.data" && KEEP=1
if [ -n "${HOLD:-}" ]; then
  echo "holding for $HOLD s: client sidecar pid $client_pid (outbound port $c_out), app sidecar pid $app_pid"
  sleep "$HOLD"
fi
exit 0
