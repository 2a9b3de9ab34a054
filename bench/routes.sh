#!/usr/bin/env bash
# Route scale (issue 8, target 5), two measurements:
#
# 1. Throughput with 10,000 routes against 1 route. Two configs shaped like
#    bench/proxy.yaml (ONE worker thread, access log to a file):
#      1 route:    the catch-all `all` of bench/proxy.yaml;
#      10k routes: 1,000 hostnames (h0..h999.bench.test) × 10 path prefixes
#                  (/svc0../svc9), each route with a header match (x-tenant: tH),
#                  all to the one backend, then the same catch-all last (peers.sh's
#                  readiness probe is a plain `curl /`).
#    Every load request is `GET /svc5/api/v1/items`, `Host: h500.bench.test`,
#    `x-tenant: t500`: in the 10k table it goes through the host map and a 4-step
#    prefix walk to route r-h500-p5 (checked in the access log), declared mid-file.
#    Both configs run through ../shared/bench/peers.sh (nginx and HAProxy in the same
#    run) alternately, one round each, ROUNDS times. peers.sh drives wrk without
#    headers, so this script puts a `wrk` wrapper first in PATH that adds them and
#    the path: nginx, HAProxy and the direct row get the same requests.
# 2. Reload under load: meshgate on the 10k config (free ports, own backend nginx),
#    first RELOAD_SECS of load without reloads (the latency to compare with), then
#    wrk (same request, -t1 -cCONNS) for RELOAD_SECS; meanwhile the config file is
#    rewritten RELOADS times (one more route each time, written aside then renamed)
#    and each time SIGHUP is sent; the time from the signal to the "config reloaded"
#    log line is measured (polled every 10 ms, so an upper bound). Any non-2xx
#    response or socket error, or a reload not applied, fails the script (exit 1).
#
# The configs are JSON (a subset of YAML that meshgate's config loader reads with
# serde_json): as YAML, 10,000 routes of this shape are ~270,000 nodes, over the
# YAML reader's 250,000-node budget ("budget breached").
#
# Options (environment): ROUNDS (3; 0 skips part 1) SECS (5) CONNS (64) RELOAD_SECS (10)
#   RELOADS (5) MESHGATE_BIN (default: build it with cargo --release)
#   KEEP=DIR keep the generated configs and logs there.
# Needs: the Rust toolchain, and the Debian packages nginx-light haproxy wrk bc
#   python3 curl.
# Output: per run, meshgate's req/s, p99 (µs) and CPU µs/request with that run's
#   nginx and HAProxy req/s; then the medians per config and the ratio 10k/1 (target:
#   req/s ≥ 0.95). Then the reload run's wrk figures, reload times and the verdict.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
ROUNDS=${ROUNDS:-3} SECS=${SECS:-5} CONNS=${CONNS:-64}
RELOAD_SECS=${RELOAD_SECS:-10} RELOADS=${RELOADS:-5}
for t in nginx haproxy wrk bc python3 curl; do
  command -v "$t" >/dev/null || { echo "missing $t: apt-get install -y nginx-light haproxy wrk bc python3 curl" >&2; exit 2; }
done
if [[ -z ${MESHGATE_BIN:-} ]]; then
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/meshgate-target}
  cargo build --release --quiet -p meshgate
  MESHGATE_BIN="$CARGO_TARGET_DIR/release/meshgate"
fi
dir=${KEEP:-$(mktemp -d)}
mkdir -p "$dir"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [[ -n ${KEEP:-} ]] || rm -rf "$dir"
}
trap cleanup EXIT

HOST=h500.bench.test TENANT=t500 REQ_PATH=/svc5/api/v1/items HIT_ROUTE=r-h500-p5

# config FILE ROUTES LISTEN_PORT BACKEND_PORT ACCESS_LOG [EXTRA_ROUTES]
# ROUTES is 0 (catch-all only) or 10000; EXTRA_ROUTES more routes extra-1.. (reloads).
config() {
  local file=$1 routes=$2 port=$3 backend=$4 log=$5 extra=${6:-0}
  awk -v routes="$routes" -v port="$port" -v backend="$backend" -v alog="$log" -v extra="$extra" 'BEGIN {
    printf "{\"runtime\": {\"workerThreads\": 1}, \"accessLog\": {\"path\": \"%s\"},\n", alog
    print "\"admin\": {\"enabled\": false}, \"reload\": {\"watch\": false},"
    printf "\"listeners\": [{\"name\": \"bench\", \"address\": \"127.0.0.1:%d\"}],\n", port
    printf "\"services\": [{\"name\": \"backend\", \"endpoints\": [\"127.0.0.1:%d\"]}],\n", backend
    print "\"routes\": ["
    for (i = 0; i < routes; i++) {
      h = int(i / 10); p = i % 10
      printf "{\"name\": \"r-h%d-p%d\", \"hostnames\": [\"h%d.bench.test\"], \"matches\": [{\"path\": {\"type\": \"PathPrefix\", \"value\": \"/svc%d\"}, \"headers\": [{\"name\": \"x-tenant\", \"value\": \"t%d\"}]}], \"backendRefs\": [{\"name\": \"backend\"}]},\n", h, p, h, p, h
    }
    for (i = 1; i <= extra; i++)
      printf "{\"name\": \"extra-%d\", \"hostnames\": [\"extra%d.bench.test\"], \"backendRefs\": [{\"name\": \"backend\"}]},\n", i, i
    print "{\"name\": \"all\", \"backendRefs\": [{\"name\": \"backend\"}]}"
    print "]}"
  }' >"$file.tmp"
  mv "$file.tmp" "$file"
}

# wrk as peers.sh calls it (`wrk ... http://127.0.0.1:PORT/`), with the headers and
# the path of the request above.
mkdir -p "$dir/shim"
cat >"$dir/shim/wrk" <<SHIM
#!/usr/bin/env bash
args=()
for a in "\$@"; do
  case \$a in http://*/) a="\${a%/}$REQ_PATH";; esac
  args+=("\$a")
done
exec $(command -v wrk) -H "Host: $HOST" -H "x-tenant: $TENANT" "\${args[@]}"
SHIM
chmod +x "$dir/shim/wrk"

# --- 1. throughput, 1 route vs 10,000 -------------------------------------------
log=$dir/access.log
config "$dir/routes-1.json" 0 18084 18080 "$log"
config "$dir/routes-10k.json" 10000 18084 18080 "$log"
echo "# $(date -u +%Y-%m-%dT%H:%MZ) $(nproc) cores, load average:$(uptime | sed 's/.*load average://')"
echo "# request: GET $REQ_PATH, Host: $HOST, x-tenant: $TENANT; wrk -t1 -c$CONNS, ${SECS}s per target"
printf "%-5s %-6s %10s %8s %10s %10s %10s\n" round config req/s p99_us cpu_us/req nginx haproxy
declare -A rps cpu
for r in $(seq 1 "$ROUNDS"); do
  for c in 1 10k; do
    rm -f "$log"
    out=$(PATH="$dir/shim:$PATH" ../shared/bench/peers.sh --cmd "$MESHGATE_BIN run -c $dir/routes-$c.json" \
      --rounds 1 --secs "$SECS" --conns "$CONNS" 2>&1) || { echo "$out" >&2; exit 1; }
    # The load went where intended (the access log is flushed every 10 ms).
    want=$HIT_ROUTE; [[ $c == 1 ]] && want=all
    got=$(tail -1 "$log" | grep -o '"route":"[^"]*"' || true)
    [[ $got == "\"route\":\"$want\"" ]] || { echo "run $r/$c: last request went to $got, not $want" >&2; exit 1; }
    row=$(awk '/^nginx/ {n = $2} /^haproxy/ {h = $2} /^project/ {p = $2; p99 = $4; cpu = $5}
      END {printf "%s %s %s %s %s", p, p99, cpu, n, h}' <<<"$out")
    read -r p p99 cu n h <<<"$row"
    printf "%-5s %-6s %10s %8s %10s %10s %10s\n" "$r" "$c" "$p" "$p99" "$cu" "$n" "$h"
    grep -E '^round .*(Non-2xx|Socket errors)' <<<"$out" >&2 || true
    rps[$c]+="$p " cpu[$c]+="$cu "
  done
done
if (( ROUNDS > 0 )); then
  median() { tr ' ' '\n' | sed '/^$/d' | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
  r1=$(median <<<"${rps[1]}") r10=$(median <<<"${rps[10k]}")
  c1=$(median <<<"${cpu[1]}") c10=$(median <<<"${cpu[10k]}")
  echo "median req/s: 1 route $r1, 10k routes $r10, ratio 10k/1 $(bc -l <<<"scale=3; $r10 / $r1")"
  echo "median cpu_us/req: 1 route $c1, 10k routes $c10, ratio 10k/1 $(bc -l <<<"scale=3; $c10 / $c1")"
fi

# --- 2. reload of the 10k config under load ---------------------------------------
bport=$(free_port) mport=$(free_port)
backend_conf "$dir" "$bport"
nginx -c "$dir/backend.conf" >"$dir/backend.log" 2>&1 &
pids+=($!)
cfg=$dir/reload.json
config "$cfg" 10000 "$mport" "$bport" "$dir/reload-access.log"
"$MESHGATE_BIN" run -c "$cfg" >"$dir/meshgate.log" 2>&1 &
mg=$!
pids+=("$mg")
hit() { curl -fsS -o /dev/null -H "Host: $1" -H "x-tenant: $TENANT" "http://127.0.0.1:$mport$REQ_PATH"; }
for i in $(seq 1 100); do
  hit "$HOST" 2>/dev/null && break
  sleep 0.1
  [[ $i == 100 ]] && { echo "meshgate never answered; log:" >&2; tail -20 "$dir/meshgate.log" >&2; exit 1; }
done
load() { # wrk on the hit request for RELOAD_SECS, in the background, into $dir/$1
  wrk -t1 -c"$CONNS" -d"${RELOAD_SECS}s" --latency -H "Host: $HOST" -H "x-tenant: $TENANT" \
    "http://127.0.0.1:$mport$REQ_PATH" >"$dir/$1" 2>&1 &
  wrkpid=$!
  pids+=("$wrkpid")
}
summary() { # wrk output file -> one line
  awk '/requests in/ {n = $1} /Requests\/sec/ {r = $2} $1 == "50%" {p50 = $2} $1 == "99%" {p99 = $2}
    /Latency/ && !/Distribution/ {max = $4} /Non-2xx/ {bad = $NF} /Socket errors/ {sock = $0}
    END {printf "requests %s, %s req/s, p50 %s, p99 %s, max %s; non-2xx %d; socket errors: %s\n",
      n, r, p50, p99, max, bad, (sock == "" ? "none" : sock)}' "$1"
}
# The same process and load without reloads first, for the latency to compare with.
load wrk-baseline.out
wait "$wrkpid"
load wrk-reload.out
gap=$(bc -l <<<"($RELOAD_SECS - 2) / $RELOADS")
sleep 1
times=()
for i in $(seq 1 "$RELOADS"); do
  config "$cfg" 10000 "$mport" "$bport" "$dir/reload-access.log" "$i"
  t0=$(date +%s%N)
  kill -HUP "$mg"
  until [[ $(grep -c 'config reloaded' "$dir/meshgate.log") -ge $i ]]; do
    grep -q 'config rejected' "$dir/meshgate.log" && { echo "reload $i rejected:" >&2; tail -20 "$dir/meshgate.log" >&2; exit 1; }
    (( $(date +%s%N) - t0 > 5000000000 )) && { echo "reload $i not applied after 5 s" >&2; exit 1; }
    sleep 0.01
  done
  times+=("$(( ($(date +%s%N) - t0) / 1000000 ))")
  sleep "$gap"
done
wait "$wrkpid"
# The last added route serves (the reloads were applied, not just logged).
hit "extra$RELOADS.bench.test" || { echo "route extra-$RELOADS does not answer after the reloads" >&2; exit 1; }
echo "reload under load: meshgate with 10k routes, wrk -t1 -c$CONNS for ${RELOAD_SECS}s, twice:"
echo "  no reload:          $(summary "$dir/wrk-baseline.out")"
echo "  $RELOADS SIGHUP reloads:   $(summary "$dir/wrk-reload.out")"
echo "  SIGHUP -> 'config reloaded' (ms, polled every 10 ms): ${times[*]}"
if grep -qE 'Non-2xx|Socket errors' "$dir/wrk-reload.out"; then
  echo "FAIL: requests were dropped during reloads" >&2
  exit 1
fi
echo "OK: nothing dropped"
