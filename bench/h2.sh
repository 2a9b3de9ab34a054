#!/usr/bin/env bash
# HTTP/2 and TLS throughput, meshgate beside nginx doing the same, in one run.
# One nginx backend (HTTP/1.1, 19-byte 200) on :18080; in front of it, each with ONE
# worker: nginx and meshgate serving
#   h2c  (HTTP/2 cleartext, prior knowledge)   nginx :18181   meshgate :18184
#   h2   (HTTP/2 over TLS 1.3, ALPN)           nginx :18281   meshgate :18284
#   h1s  (HTTP/1.1 over TLS, keep-alive)       nginx :18281   meshgate :18284
# driven in alternation by h2load (1 thread, 32 connections, 10 streams each for h2),
# several rounds; medians of req/s and of the proxy's CPU time per request.
# The certificate is made here with openssl. Needs: nginx-light nghttp2-client openssl.
# Options: --rounds N (3) --secs S (5)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=3 secs=5
while [[ $# -gt 0 ]]; do
  case "$1" in
    --rounds) rounds="$2"; shift 2;;
    --secs) secs="$2"; shift 2;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
for t in nginx h2load openssl; do
  command -v "$t" >/dev/null || { echo "missing $t: apt-get install -y nginx-light nghttp2-client openssl" >&2; exit 2; }
done
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/meshgate-target}
cargo build --release --quiet -p meshgate
bin="$CARGO_TARGET_DIR/release/meshgate"
dir=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=bench.test \
  -addext subjectAltName=DNS:bench.test,IP:127.0.0.1 -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null

cat >"$dir/backend.conf" <<CONF
worker_processes 1; daemon off; pid $dir/backend.pid; error_log $dir/backend.err;
events { worker_connections 4096; }
http { access_log off;
  server { listen 127.0.0.1:18080 backlog=4096; keepalive_requests 100000000;
    location / { return 200 "hello from backend\n"; } } }
CONF
cat >"$dir/nginx.conf" <<CONF
worker_processes 1; daemon off; pid $dir/nginx.pid; error_log $dir/nginx.err;
events { worker_connections 4096; }
http { access_log off;
  upstream be { server 127.0.0.1:18080; keepalive 256; keepalive_requests 100000000; }
  server { listen 127.0.0.1:18181 http2; keepalive_requests 100000000; http2_max_concurrent_streams 128;
    location / { proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection ""; } }
  server { listen 127.0.0.1:18281 ssl http2; keepalive_requests 100000000; http2_max_concurrent_streams 128;
    ssl_certificate $dir/cert.pem; ssl_certificate_key $dir/key.pem; ssl_protocols TLSv1.3;
    location / { proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
CONF
cat >"$dir/meshgate.yaml" <<CONF
runtime: {workerThreads: 1}
accessLog: {path: off}
admin: {enabled: false}
listeners:
  - {name: h2c, address: "127.0.0.1:18184"}
  - name: tls
    address: "127.0.0.1:18284"
    protocol: HTTPS
    tls: {certificates: [{certFile: "$dir/cert.pem", keyFile: "$dir/key.pem"}], minVersion: TLS1_3}
routes:
  - {name: all, backendRefs: [{name: backend}]}
services:
  - {name: backend, endpoints: ["127.0.0.1:18080"]}
CONF
nginx -c "$dir/backend.conf" >"$dir/backend.log" 2>&1 & pids+=($!)
nginx -c "$dir/nginx.conf" >"$dir/nginx.log" 2>&1 & ngx=$!; pids+=($ngx)
"$bin" run -c "$dir/meshgate.yaml" >"$dir/meshgate.log" 2>&1 & mg=$!; pids+=($mg)
for url in http://127.0.0.1:18184/ https://127.0.0.1:18284/ http://127.0.0.1:18181/ https://127.0.0.1:18281/; do
  for i in $(seq 1 100); do
    h2load -n 1 -c 1 "$url" 2>/dev/null | grep -q "1 succeeded" && break
    sleep 0.1
    [[ $i == 100 ]] && { echo "$url never answered; logs:" >&2; tail -5 "$dir"/*.log >&2; exit 1; }
  done
done

ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
worker() { [[ $1 == nginx ]] && pgrep -P "$ngx" | head -1 || echo "$mg"; }
declare -A rps cpu
# name|proxy|url|h2load-args
targets=(
  "h2c-nginx|nginx|http://127.0.0.1:18181/|-m10"
  "h2c-meshgate|meshgate|http://127.0.0.1:18184/|-m10"
  "h2tls-nginx|nginx|https://127.0.0.1:18281/|-m10"
  "h2tls-meshgate|meshgate|https://127.0.0.1:18284/|-m10"
  "h1tls-nginx|nginx|https://127.0.0.1:18281/|--h1"
  "h1tls-meshgate|meshgate|https://127.0.0.1:18284/|--h1"
)
for r in $(seq 1 "$rounds"); do
  for t in "${targets[@]}"; do
    IFS='|' read -r name proxy url extra <<<"$t"
    pid=$(worker "$proxy")
    c0=$(ticks "$pid")
    out=$(h2load -t1 -c32 -D "$secs" $extra "$url" 2>&1)
    c1=$(ticks "$pid")
    done_n=$(awk '/^requests:/ {print $8}' <<<"$out")
    rate=$(awk '/^finished in/ {gsub(",","",$4); print $4}' <<<"$out")
    failed=$(awk '/^requests:/ {print $10}' <<<"$out")
    [[ ${failed:-0} != 0 ]] && echo "round $r $name: $failed failed" >&2
    rps[$name]+="$rate "
    cpu[$name]+="$(awk -v a="$c0" -v b="$c1" -v n="$done_n" -v hz="$hz" 'BEGIN{printf "%.2f", (b-a)/hz*1e6/n}') "
  done
done
median() { tr ' ' '\n' | sed '/^$/d' | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
printf "%-16s %12s %12s %12s %12s\n" target req/s cpu_us/req rps/nginx cpu/nginx
for t in "${targets[@]}"; do
  name=${t%%|*}; base=${name%-*}-nginx
  r=$(median <<<"${rps[$name]}"); c=$(median <<<"${cpu[$name]}")
  br=$(median <<<"${rps[$base]}"); bc=$(median <<<"${cpu[$base]}")
  printf "%-16s %12s %12s %12s %12s\n" "$name" "$r" "$c" \
    "$(awk -v x="$r" -v y="$br" 'BEGIN{printf "%.2f", x/y}')" "$(awk -v x="$c" -v y="$bc" 'BEGIN{printf "%.2f", x/y}')"
done
