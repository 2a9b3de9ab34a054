#!/usr/bin/env bash
# What policies cost on the request path, all in one run: the same meshgate process
# (ONE worker thread, access log on, as bench/proxy.yaml) serves three listeners in
# front of one nginx backend on :18080:
#   plain   :18084  no policy
#   apikey  :18085  ApiKey + a local RateLimit keyed by consumer (never reached)
#   jwt     :18086  Jwt, RS256, one token (verification cached per token)
# wrk (1 thread, keep-alive, the credential in a header) drives each in turn for
# several alternating rounds; the table gives req/s, p50/p99 and meshgate's CPU per
# request (user+sys from /proc) with ratios against the plain listener.
# The RSA key pair and the token are made here with openssl (nothing secret is
# committed). Needs: nginx-light wrk openssl bc.  Options: --rounds N --secs S --conns C
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=3 secs=5 conns=64
while [[ $# -gt 0 ]]; do
  case "$1" in
    --rounds) rounds="$2"; shift 2;;
    --secs) secs="$2"; shift 2;;
    --conns) conns="$2"; shift 2;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
for t in nginx wrk openssl bc; do
  command -v "$t" >/dev/null || { echo "missing $t: apt-get install -y nginx-light wrk openssl bc" >&2; exit 2; }
done
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/meshgate-target}
cargo build --release --quiet -p meshgate
bin="$CARGO_TARGET_DIR/release/meshgate"
dir=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT

b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$dir/key.pem" 2>/dev/null
openssl pkey -in "$dir/key.pem" -pubout -out "$dir/pub.pem"
header=$(printf '{"alg":"RS256","typ":"JWT","kid":"bench"}' | b64url)
payload=$(printf '{"sub":"bench-user","iss":"https://issuer.bench","aud":"bench","exp":%d}' $(( $(date +%s) + 86400 )) | b64url)
signature=$(printf '%s.%s' "$header" "$payload" | openssl dgst -sha256 -sign "$dir/key.pem" -binary | b64url)
token="$header.$payload.$signature"
keys=$("$bin" keys generate 2>/dev/null)
apikey=$(awk '/^key:/ {print $2}' <<<"$keys")
apihash=$(awk '/^hash:/ {print $2}' <<<"$keys")

sed -e "s|@API_KEY_HASH@|$apihash|" bench/policies.yaml.in >"$dir/meshgate.yaml"
# The public key goes in as a YAML block scalar, indented under its key.
awk -v pem="$dir/pub.pem" '/@JWT_PUBLIC_KEY@/ { while ((getline line < pem) > 0) print "            " line; next } { print }' \
  "$dir/meshgate.yaml" >"$dir/meshgate2.yaml"
"$bin" validate "$dir/meshgate2.yaml" >/dev/null

cat >"$dir/backend.conf" <<CONF
worker_processes 1; daemon off; pid $dir/backend.pid; error_log $dir/backend.err;
events { worker_connections 4096; }
http { access_log off;
  server { listen 127.0.0.1:18080 backlog=4096; keepalive_requests 100000000;
    location / { return 200 "hello from backend\n"; } } }
CONF
nginx -c "$dir/backend.conf" >"$dir/backend.log" 2>&1 & pids+=($!)
"$bin" run -c "$dir/meshgate2.yaml" >"$dir/meshgate.log" 2>&1 & mg=$!; pids+=($mg)

declare -A port hdr
port[plain]=18084; hdr[plain]="x-bench: plain"
port[apikey]=18085; hdr[apikey]="x-api-key: $apikey"
port[jwt]=18086; hdr[jwt]="authorization: Bearer $token"
targets=(plain apikey jwt)
for t in "${targets[@]}"; do
  for i in $(seq 1 100); do
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "${hdr[$t]}" "http://127.0.0.1:${port[$t]}/" || true)
    [[ $code == 200 ]] && break
    sleep 0.1
    if [[ $i == 100 ]]; then echo "$t on :${port[$t]} answered $code, not 200; log:" >&2; tail -20 "$dir/meshgate.log" >&2; exit 1; fi
  done
done

ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
declare -A rps p50 p99 cpu
for r in $(seq 1 "$rounds"); do
  for t in "${targets[@]}"; do
    c0=$(ticks "$mg")
    out=$(wrk -t1 -c"$conns" -d"${secs}s" --latency -H "${hdr[$t]}" "http://127.0.0.1:${port[$t]}/")
    c1=$(ticks "$mg")
    reqs=$(awk '/requests in/ {print $1}' <<<"$out")
    errs=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out")
    [[ -n $errs ]] && echo "round $r $t: $errs" >&2
    rps[$t]+="$(awk '/Requests\/sec/ {print $2}' <<<"$out") "
    p50[$t]+="$(awk '$1=="50%" {print $2}' <<<"$out") "
    p99[$t]+="$(awk '$1=="99%" {print $2}' <<<"$out") "
    cpu[$t]+="$(awk -v a="$c0" -v b="$c1" -v n="$reqs" -v hz="$hz" 'BEGIN{printf "%.2f", (b-a)/hz*1e6/n}') "
  done
done
median() { tr ' ' '\n' | sed '/^$/d' | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
tous() { sed -E 's/([0-9.]+)us/\1/; s/([0-9.]+)ms/\1*1000/; s/([0-9.]+)s$/\1*1000000/' | bc -l | xargs printf "%.0f"; }
printf "%-8s %12s %10s %10s %14s %12s %12s\n" route req/s p50_us p99_us cpu_us/req rps/plain cpu/plain
pr=$(median <<<"${rps[plain]}"); pc=$(median <<<"${cpu[plain]}")
for t in "${targets[@]}"; do
  r=$(median <<<"${rps[$t]}"); c=$(median <<<"${cpu[$t]}")
  a=$(for v in ${p50[$t]}; do echo "$v" | tous; echo; done | median)
  b=$(for v in ${p99[$t]}; do echo "$v" | tous; echo; done | median)
  printf "%-8s %12s %10s %10s %14s %12s %12s\n" "$t" "$r" "$a" "$b" "$c" \
    "$(awk -v x="$r" -v y="$pr" 'BEGIN{printf "%.3f", x/y}')" "$(awk -v x="$c" -v y="$pc" 'BEGIN{printf "%.3f", x/y}')"
done
