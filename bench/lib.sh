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
