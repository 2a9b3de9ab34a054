#!/usr/bin/env bash
# Memory of the gateway (issue 8, target 4): RSS idle, RSS per idle keep-alive
# connection (against nginx, same run), and RSS over a soak at a steady rate.
#
#   ./bench/memory.sh                       # full run: 2 rounds + a 600 s soak
#   SOAK_SECS=60 ./bench/memory.sh          # quick run
#   SOAK_SECS=0 ROUNDS=1 ./bench/memory.sh  # idle figures only
#
# Setup, all on 127.0.0.1 with free ports found at run time, in a temp dir:
#   backend   nginx, one worker, 200 with a 19-byte body (as ../shared/bench/peers.sh)
#   meshgate  `meshgate run` with bench/proxy.yaml's settings: one worker thread,
#             access log on (JSON lines to a file in the temp dir), admin off
#   nginx     one worker proxying to the backend (peers.sh's proxy config; access log
#             off, upstream keepalive 256), worker_connections sized for the test
# Each round starts a fresh meshgate, then a fresh nginx proxy, and measures each:
#   start     1 s after its port listens, before any request
#   warm      after WARM requests (oha -n WARM -c 32) and 2 s idle
#   +conns    IDLE_CONNS keep-alive connections open and idle: a python client
#             (non-blocking sockets, at most WINDOW connects/requests in flight, so
#             the proxy's upstream pool stays the size warm-up left it) sends ONE
#             request on each, reads the response and keeps the socket open;
#             measured 1 s after the last response (meshgate closes idle keep-alive
#             connections after 30 s: hyper's header read timeout, so the sample
#             must fall inside that window; the `open` column says how many were
#             still open when it was taken)
#   closed    2 s after the client closed them all
# Per connection = (+conns - warm) / connections that got their response. nginx
# allocates and initialises its worker_connections slots (IDLE_CONNS + 1024) at start,
# so its delta leaves those out: they are in its start RssAnon (~0.4 KB a slot here).
# meshgate's "closed" figure stays high: mimalloc purges freed pages only when it is
# next busy (after more requests RSS is back near "warm").
# Soak (SOAK_SECS > 0): a fresh meshgate, warmed up, then oha at a constant
# SOAK_RATE req/s over SOAK_CONNS keep-alive connections for SOAK_SECS; VmRSS and
# RssAnon sampled every 10 s; first/last/max sample and the least-squares slope
# (KB/min) over all samples and over the second half (past the pools' ramp-up).
#
# Columns: VmRSS = resident memory; RssAnon = its anonymous part (heap, stacks,
# relocated data); RssFile = its file-backed part (the binary's and libraries'
# pages mapped in: code and read-only data, page cache shared with other processes);
# PSS from smaps_rollup (shared pages divided among the processes mapping them).
# "hot file" = file-backed pages touched during warm-up (smaps `Referenced` after
# writing 1 to /proc/PID/clear_refs before it): the code/data working set of serving,
# as opposed to what start-up mapped in (the kernel maps up to 64 KB around each
# file page fault). For nginx the worker is measured (the master's VmRSS in the last column).
# The per-connection table also lists the meshgate mappings that grew most.
# BREAKDOWN=1 adds, per round, two more fresh meshgate runs whose client stops
# early, to split the per-connection figure into stages: "silent" connects and sends
# nothing (accepted: the connection task before any HTTP state), "partial" sends a
# request head without its final blank line (HTTP/1 state with its buffers, no
# request served yet); "full" is the normal run (one request served, then idle).
#
# Options (env): IDLE_CONNS (10000), WINDOW (32), WARM (5000), ROUNDS (2),
# SOAK_SECS (600; 0 = no soak; the slope of a 60 s soak is within the sampling
# noise, ~±100 KB/min: read the 600 s one), SOAK_RATE (2000), SOAK_CONNS (32),
# BREAKDOWN (1 = the stage runs above), NO_BUILD (1 = use the existing release
# binary), KEEP (1 = keep the temp dir).
# Needs: the Rust toolchain, apt packages nginx-light python3; an open-file limit
# (hard) of at least IDLE_CONNS + 1024 (the script raises the soft limit; meshgate
# does not raise its own). oha is installed with
# `cargo install --root $CARGO_TARGET_DIR oha --locked` when absent (as bench/mesh.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/meshgate-target}
IDLE_CONNS=${IDLE_CONNS:-10000} WINDOW=${WINDOW:-32} WARM=${WARM:-5000} ROUNDS=${ROUNDS:-2}
SOAK_SECS=${SOAK_SECS:-600} SOAK_RATE=${SOAK_RATE:-2000} SOAK_CONNS=${SOAK_CONNS:-32}

for t in nginx python3; do
  command -v "$t" >/dev/null || { echo "missing $t: apt-get install -y nginx-light python3" >&2; exit 2; }
done
# Every process started below inherits this: the gateway and nginx each hold
# IDLE_CONNS sockets, and so does the client.
need=$((IDLE_CONNS + 1024))
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt "$need" ]; then
  echo "open-file hard limit $hard < $need (IDLE_CONNS + 1024); lower IDLE_CONNS or raise it" >&2
  exit 2
fi
soft=$need
[ "$hard" = unlimited ] || [ "$hard" -gt 65536 ] || soft=$hard
ulimit -n "$soft"

[ -n "${NO_BUILD:-}" ] || cargo build --release --quiet -p meshgate
bin="$CARGO_TARGET_DIR/release/meshgate"
. bench/lib.sh
find_oha

work_dir memory
# True once something listens on 127.0.0.1:$1 (read from /proc: no connection made,
# so "start" is measured before the first request).
listening() {
  awk -v p="$(printf ':%04X' "$1")" '$4 == "0A" && substr($2, length($2) - 4) == p { f = 1 } END { exit !f }' /proc/net/tcp
}
await_port() { # name port pid
  local i
  for i in $(seq 1 150); do
    listening "$2" && return 0
    kill -0 "$3" 2>/dev/null || break
    sleep 0.1
  done
  echo "$1 never listened on :$2; logs in $work" >&2
  tail -n 20 "$work"/*.log >&2 || true
  KEEP=1
  exit 1
}
# ESTABLISHED connections to 127.0.0.1:$1 (a proxy's upstream connections).
conns_to() {
  awk -v p="$(printf ':%04X' "$1")" '$4 == "01" && substr($3, length($3) - 4) == p { n++ } END { print n + 0 }' /proc/net/tcp
}
# "VmRSS RssAnon RssFile Pss" of a process, in KB.
mem() {
  local v
  v=$(awk '/^(VmRSS|RssAnon|RssFile):/ { printf "%s ", $2 }' "/proc/$1/status")
  echo "$v$(awk '/^Pss:/ { print $2 }' "/proc/$1/smaps_rollup")"
}
# KB of file-backed pages referenced since the last clear_refs.
hot_file_kb() {
  awk '/^[0-9a-f]+-[0-9a-f]+ / { file = ($6 ~ /^\//) } /^Referenced:/ && file { s += $2 } END { print s + 0 }' "/proc/$1/smaps"
}
# "start-address kB path" of every mapping with resident pages.
mappings() {
  awk '/^[0-9a-f]+-[0-9a-f]+ / { m = $1; n = ($6 == "" ? "anon@" substr($1, 1, index($1, "-") - 1) : $6) } /^Rss:/ { print m, $2, n }' "/proc/$1/smaps"
}

# The idle-connection client. Prints "ready OK FAILED SECONDS" once every socket got
# its response (or failed); then, per line on stdin: "count" -> "open N", "quit".
# Modes: full (one request, response read), silent (connected, nothing sent),
# partial (an unfinished request head sent).
cat > "$work/idle_conns.py" <<'PY'
import errno, selectors, socket, sys, time

port, total, window, mode = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
addr = ("127.0.0.1", port)
request = b"GET / HTTP/1.1\r\nHost: bench\r\n" + (b"" if mode == "partial" else b"\r\n")
sel = selectors.DefaultSelector()
idle, failed, started, in_flight = [], 0, 0, 0
t0 = time.monotonic()


def complete(buf):
    head, sep, body = buf.partition(b"\r\n\r\n")
    if not sep:
        return False
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return len(body) >= length


while len(idle) + failed < total:
    if time.monotonic() - t0 > 120:
        break
    while started < total and in_flight < window:
        s = socket.socket()
        s.setblocking(False)
        err = s.connect_ex(addr)
        started += 1
        if err not in (0, errno.EINPROGRESS):
            s.close()
            failed += 1
            continue
        in_flight += 1
        sel.register(s, selectors.EVENT_WRITE, ["connect", b""])
    for key, _ in sel.select(timeout=1):
        s, st = key.fileobj, key.data
        try:
            if st[0] == "connect":
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    raise OSError("connect failed")
                if mode != "silent":
                    s.send(request)
                if mode != "full":
                    sel.unregister(s)
                    idle.append(s)
                    in_flight -= 1
                    continue
                st[0] = "read"
                sel.modify(s, selectors.EVENT_READ, st)
                continue
            data = s.recv(65536)
            if not data:
                raise OSError("closed before the response")
            st[1] += data
            if not complete(st[1]):
                continue
            if not st[1].startswith(b"HTTP/1.1 200"):
                raise OSError("not a 200")
            sel.unregister(s)
            idle.append(s)
        except OSError:
            sel.unregister(s)
            s.close()
            failed += 1
        in_flight -= 1
print(f"ready {len(idle)} {failed} {time.monotonic() - t0:.1f}", flush=True)
for line in sys.stdin:
    if line.strip() == "count":
        n = 0
        for s in idle:
            try:
                n += s.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
            except BlockingIOError:
                n += 1
            except OSError:
                pass
        print(f"open {n}", flush=True)
    else:
        break
PY

be_port=$(free_port)
backend_conf "$work" "$be_port"
nginx -c "$work/backend.conf" > "$work/backend.log" 2>&1 &
pids+=($!)
await_port backend "$be_port" $!

# Starts a target (meshgate|nginx) on a fresh port; sets target_pid (the process to
# measure), target_port and target_main (the process to kill).
start_target() {
  local kind=$1 i
  target_port=$(free_port)
  if [ "$kind" = meshgate ]; then
    cat > "$work/gateway.yaml" <<YAML
runtime:
  workerThreads: 1
accessLog:
  path: $work/access.log
admin: {enabled: false}
listeners:
  - name: bench
    address: 127.0.0.1:$target_port
routes:
  - name: all
    backendRefs: [{name: backend}]
services:
  - name: backend
    endpoints: ["127.0.0.1:$be_port"]
YAML
    rm -f "$work/access.log"
    "$bin" run -c "$work/gateway.yaml" > "$work/meshgate.log" 2>&1 &
    target_main=$!
    target_pid=$target_main
  else
    cat > "$work/nginx.conf" <<CONF
worker_processes 1; daemon off; pid $work/nginx.pid; error_log $work/nginx.err;
worker_rlimit_nofile $soft;
events { worker_connections $((IDLE_CONNS + 1024)); }
http { access_log off;
  upstream be { server 127.0.0.1:$be_port; keepalive 256; keepalive_requests 100000000; }
  server { listen 127.0.0.1:$target_port backlog=4096; keepalive_requests 100000000;
    location / { proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
CONF
    nginx -c "$work/nginx.conf" > "$work/nginx.log" 2>&1 &
    target_main=$!
    target_pid=
    for i in $(seq 1 50); do
      target_pid=$(pgrep -P "$target_main" | head -1 || true)
      [ -n "$target_pid" ] && break
      sleep 0.1
    done
  fi
  pids+=("$target_main")
  await_port "$kind" "$target_port" "$target_main"
}
stop_target() {
  kill "$target_main" 2>/dev/null || true
  wait "$target_main" 2>/dev/null || true
}
warm_up() { "$oha" --no-tui -n "$WARM" -c 32 "http://127.0.0.1:$1/" > "$work/warm.txt" 2>&1; }

stamp="$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), binary built $(date -u -r "$bin" +%H:%MZ)"
echo "### memory, $stamp, load average at start $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "\`IDLE_CONNS=$IDLE_CONNS WINDOW=$WINDOW WARM=$WARM ROUNDS=$ROUNDS SOAK_SECS=$SOAK_SECS SOAK_RATE=$SOAK_RATE ./bench/memory.sh\`"

runs=("meshgate full" "nginx full")
[ -z "${BREAKDOWN:-}" ] || runs+=("meshgate silent" "meshgate partial")
idle_rows=() conn_rows=() growth=()
for r in $(seq 1 "$ROUNDS"); do
  for run in "${runs[@]}"; do
    read -r kind mode <<< "$run"
    start_target "$kind"
    sleep 1
    read -r s_rss s_anon s_file s_pss < <(mem "$target_pid")
    master=""
    [ "$kind" = nginx ] && master=$(awk '/^VmRSS:/ { print $2 }' "/proc/$target_main/status")
    echo 1 > "/proc/$target_pid/clear_refs"
    warm_up "$target_port"
    sleep 2
    read -r w_rss w_anon w_file w_pss < <(mem "$target_pid")
    hot=$(hot_file_kb "$target_pid")
    threads=$(awk '/^Threads:/ { print $2 }' "/proc/$target_pid/status")
    [ "$mode" != full ] || idle_rows+=("$r $kind $s_rss $s_anon $s_file $s_pss $w_rss $w_anon $w_file $w_pss $hot $threads ${master:--}")
    [ "$run" = "meshgate full" ] && mappings "$target_pid" > "$work/map.before"
    up0=$(conns_to "$be_port")

    coproc CLIENT { exec python3 "$work/idle_conns.py" "$target_port" "$IDLE_CONNS" "$WINDOW" "$mode"; }
    client_pid=$CLIENT_PID
    pids+=("$client_pid")
    read -r _ ok failed ramp <&"${CLIENT[0]}"
    sleep 1
    read -r c_rss c_anon c_file c_pss < <(mem "$target_pid")
    up1=$(conns_to "$be_port")
    [ "$run" = "meshgate full" ] && mappings "$target_pid" > "$work/map.after"
    echo count >&"${CLIENT[1]}"
    read -r _ open <&"${CLIENT[0]}"
    echo quit >&"${CLIENT[1]}"
    wait "$client_pid" 2>/dev/null || true
    sleep 2
    read -r x_rss x_anon _ _ < <(mem "$target_pid")
    conn_rows+=("$r $kind $mode $ok $failed $ramp $open $up0 $up1 $w_rss $w_anon $c_rss $c_anon $x_rss $x_anon")
    if [ "$run" = "meshgate full" ]; then
      growth+=("round $r: $(awk 'NR == FNR { b[$1] = $2; next } { d = $2 - b[$1]; if (d > 0) print d, $3 }' \
        "$work/map.before" "$work/map.after" | sort -rn | head -4 | awk '{ printf "%s%s +%d KB", sep, $2, $1; sep = ", " }')")
    fi
    stop_target
  done
done

echo
echo "Idle (KB; start = listening, no request yet; warm = after $WARM requests and 2 s idle):"
echo
echo "| round | target | start VmRSS | start RssAnon | start RssFile | start PSS | warm VmRSS | warm RssAnon | warm RssFile | warm PSS | hot file | threads | nginx master VmRSS |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
for row in "${idle_rows[@]}"; do
  # shellcheck disable=SC2086
  printf '| %s |\n' "$(echo $row | sed 's/ / | /g')"
done
echo
echo "Idle keep-alive connections (KB; per conn = (+conns - warm) / ok):"
echo
echo "| round | target | client | ok | failed | ramp s | open at sample | upstream conns before/after | warm VmRSS | +conns VmRSS | per conn VmRSS | warm RssAnon | +conns RssAnon | per conn RssAnon | closed VmRSS | closed RssAnon |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
for row in "${conn_rows[@]}"; do
  read -r r kind mode ok failed ramp open up0 up1 w_rss w_anon c_rss c_anon x_rss x_anon <<< "$row"
  awk -v r="$r" -v k="$kind" -v m="$mode" -v ok="$ok" -v f="$failed" -v ramp="$ramp" -v open="$open" -v u0="$up0" -v u1="$up1" \
      -v wr="$w_rss" -v wa="$w_anon" -v cr="$c_rss" -v ca="$c_anon" -v xr="$x_rss" -v xa="$x_anon" 'BEGIN {
    printf "| %s | %s | %s | %d | %d | %s | %d | %d/%d | %d | %d | %.2f | %d | %d | %.2f | %d | %d |\n",
      r, k, m, ok, f, ramp, open, u0, u1, wr, cr, ok ? (cr - wr) / ok : 0, wa, ca, ok ? (ca - wa) / ok : 0, xr, xa }'
done
echo
echo "meshgate mappings that grew most with the connections open:"
for g in "${growth[@]}"; do echo "- $g"; done

[ "$SOAK_SECS" -gt 0 ] || exit 0
echo
start_target meshgate
warm_up "$target_port"
sleep 2
read -r i_rss i_anon _ _ < <(mem "$target_pid")
"$oha" --no-tui --output-format json -z "${SOAK_SECS}s" -q "$SOAK_RATE" -c "$SOAK_CONNS" \
  "http://127.0.0.1:$target_port/" > "$work/soak.json" 2> "$work/soak.err" &
soak_pid=$!
pids+=("$soak_pid")
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
: > "$work/samples"
t0=$SECONDS
while [ $((SECONDS - t0)) -lt "$SOAK_SECS" ] && kill -0 "$soak_pid" 2>/dev/null; do
  sleep 10
  read -r v a _ _ < <(mem "$target_pid")
  echo "$((SECONDS - t0)) $v $a" >> "$work/samples"
done
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
wait "$soak_pid"
sleep 5
read -r e_rss e_anon _ _ < <(mem "$target_pid")
summary=$(python3 - "$work/soak.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
codes = d.get("statusCodeDistribution", {})
n = sum(codes.values()) + sum(d.get("errorDistribution", {}).values())
print(f'{n} requests, {codes.get("200", 0) / n * 100 if n else 0:.2f}% 200s, '
      f'{d["summary"]["requestsPerSec"]:.0f} req/s')
PY
)
stop_target
echo "Soak: oha -z ${SOAK_SECS}s -q $SOAK_RATE -c $SOAK_CONNS against meshgate ($summary; load average $load_start at start, $load_end at end)"
echo
echo "| series | idle before | first sample | last sample | max sample | slope all KB/min | slope 2nd half KB/min | idle after (5 s) |"
echo "|---|---|---|---|---|---|---|---|"
awk -v ir="$i_rss" -v ia="$i_anon" -v er="$e_rss" -v ea="$e_anon" '
  { t[NR] = $1 / 60; v[NR] = $2; a[NR] = $3 }
  function slope(x, from, to,   i, n, sx, sy, sxx, sxy) {
    n = to - from + 1
    if (n < 2) return 0
    for (i = from; i <= to; i++) { sx += t[i]; sy += x[i]; sxx += t[i] * t[i]; sxy += t[i] * x[i] }
    return (n * sxy - sx * sy) / (n * sxx - sx * sx)
  }
  function max(x,   i, m) { m = x[1]; for (i = 2; i <= NR; i++) if (x[i] > m) m = x[i]; return m }
  END {
    h = int(NR / 2) + 1
    printf "| VmRSS KB | %d | %d | %d | %d | %.1f | %.1f | %d |\n", ir, v[1], v[NR], max(v), slope(v, 1, NR), slope(v, h, NR), er
    printf "| RssAnon KB | %d | %d | %d | %d | %.1f | %.1f | %d |\n", ia, a[1], a[NR], max(a), slope(a, 1, NR), slope(a, h, NR), ea
  }' "$work/samples"
echo
echo "samples (s VmRSS RssAnon): $(tr '\n' ';' < "$work/samples")"
