#!/usr/bin/env bash
# Builds meshgate in release mode and runs ../shared/bench/peers.sh against it with
# each bench config, printing one table per config. Extra arguments go to peers.sh
# (e.g. --rounds 5 --secs 10). Needs: apt-get install -y nginx-light haproxy wrk bc
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/meshgate-target}
cargo build --release --quiet -p meshgate
bin="$CARGO_TARGET_DIR/release/meshgate"
for cfg in bench/proxy.yaml bench/proxy-nolog.yaml; do
  echo "== $cfg"
  rm -f /tmp/meshgate-bench-access.log
  ../shared/bench/peers.sh --cmd "$bin run -c $cfg" "$@"
done
rm -f /tmp/meshgate-bench-access.log
