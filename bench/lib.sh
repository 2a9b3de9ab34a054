# Sourced by the bench scripts (bench/mesh.sh, bench/memory.sh, bench/routes.sh): a
# free port, oha, a temp work dir cleaned up on exit, and the backend peers.sh uses.

# A TCP port free on 127.0.0.1 a moment ago.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Sets $oha: oha from PATH, else installed once under $CARGO_TARGET_DIR/bin
# (`cargo install --locked`, built in its own target dir).
find_oha() {
  oha=$(command -v oha || true)
  if [ -z "$oha" ]; then
    oha="$CARGO_TARGET_DIR/bin/oha"
    [ -x "$oha" ] || CARGO_TARGET_DIR="$CARGO_TARGET_DIR/oha-build" \
      cargo install --quiet --root "$CARGO_TARGET_DIR" oha --locked
  fi
}

# Makes $work (/tmp/meshgate-bench-$1.XXXXXX) and an empty $pids array; on exit every
# pid in $pids is killed and $work removed, unless KEEP is set (then it is printed).
work_dir() {
  work=$(mktemp -d "/tmp/meshgate-bench-$1.XXXXXX")
  pids=()
  trap bench_cleanup EXIT
}
bench_cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${KEEP:-}" ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}

# Writes $1/backend.conf: nginx, one worker, a 19-byte 200 on 127.0.0.1:$2, as
# ../shared/bench/peers.sh's backend. Start it with `nginx -c $1/backend.conf`.
backend_conf() {
  cat > "$1/backend.conf" <<CONF
worker_processes 1; daemon off; pid $1/backend.pid; error_log $1/backend.err;
events { worker_connections 4096; }
http { access_log off;
  server { listen 127.0.0.1:$2 backlog=4096; keepalive_requests 100000000;
    location / { return 200 "hello from backend\n"; } } }
CONF
}

# Writes $1/backend.conf as backend_conf does, but with $3 nginx workers (so that a
# multi-worker proxy in front of it is not held back by a one-worker backend).
backend_conf_workers() {
  backend_conf "$1" "$2"
  sed -i "s/^worker_processes 1;/worker_processes $3;/" "$1/backend.conf"
}

# Writes $1/nginx.conf and $1/haproxy.cfg: the proxies of ../shared/bench/peers.sh
# (nginx: upstream keepalive 256, HTTP/1.1 upstream, access log off; HAProxy:
# http-keep-alive, http-reuse always) with $5 nginx workers / HAProxy threads,
# listening on 127.0.0.1:$3 (nginx) and :$4 (HAProxy), proxying to 127.0.0.1:$2.
# Start them with `nginx -c $1/nginx.conf` and `haproxy -f $1/haproxy.cfg`.
peer_confs() {
  local d=$1 be=$2 np=$3 hp=$4 w=$5
  cat > "$d/nginx.conf" <<CONF
worker_processes $w; daemon off; pid $d/nginx.pid; error_log $d/nginx.err;
events { worker_connections 4096; }
http { access_log off;
  upstream be { server 127.0.0.1:$be; keepalive 256; keepalive_requests 100000000; }
  server { listen 127.0.0.1:$np backlog=4096; keepalive_requests 100000000;
    location / { proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
CONF
  cat > "$d/haproxy.cfg" <<CONF
global
  nbthread $w
  maxconn 4000
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
frontend fe
  bind 127.0.0.1:$hp
  default_backend be
backend be
  http-reuse always
  server s1 127.0.0.1:$be
CONF
}

# Writes $1/meshgate.yaml: bench/proxy.yaml (run from the repository root) with its
# listener on 127.0.0.1:$3, its backend endpoint 127.0.0.1:$2, $4 worker threads and
# the access log (still on) to $1/access.log. Fails if a substitution did not apply.
meshgate_conf() {
  local d=$1 be=$2 port=$3 w=$4
  sed -e "s/127\.0\.0\.1:18084/127.0.0.1:$port/" -e "s/127\.0\.0\.1:18080/127.0.0.1:$be/" \
      -e "s|^\( *workerThreads:\) 1$|\1 $w|" -e "s|^\( *path:\) /tmp/meshgate-bench-access\.log$|\1 $d/access.log|" \
      bench/proxy.yaml > "$d/meshgate.yaml"
  grep -q "127.0.0.1:$port" "$d/meshgate.yaml" && grep -q "\"127.0.0.1:$be\"" "$d/meshgate.yaml" \
    && grep -q "workerThreads: $w\$" "$d/meshgate.yaml" && grep -q "path: $d/access.log\$" "$d/meshgate.yaml" \
    || { echo "bench/proxy.yaml changed shape; could not rewrite it into $d/meshgate.yaml" >&2; return 1; }
}

# Waits (up to 10 s) until http://127.0.0.1:$1/ answers 200; else prints $2's log tail.
await_port() {
  local i
  for i in $(seq 1 100); do
    curl -fsS -o /dev/null "http://127.0.0.1:$1/" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing answered 200 on :$1; log $2:" >&2; tail -20 "$2" >&2 || true
  return 1
}

# CPU clock ticks (utime+stime, all threads) of process $1 and its direct children
# (nginx: the master and its workers). Divide by `getconf CLK_TCK` for seconds.
tree_ticks() {
  local p t=0
  for p in "$1" $(pgrep -P "$1" || true); do
    t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo "$t"
}
