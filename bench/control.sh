#!/usr/bin/env bash
# Control-plane fan-out (issue 6): time for a config change to reach N connected proxy
# streams, and the control plane's memory at N proxies and E registered endpoints.
# Builds the `fanout` example of meshgate-control in release mode and runs it twice:
#   --mode inproc  control plane and simulated proxies in one process (as the issue asks)
#   --mode split   the control plane as a child process, so its memory and CPU are its own
# Prints both result tables and writes them to $OUT (default: $CARGO_TARGET_DIR/bench-control.md).
# Options (passed to the example): --proxies N (1000) --endpoints N (10000) --services N (100)
#   --rounds N (5) --per-conn N (100 streams per HTTP/2 connection)
# Needs nothing beyond the Rust toolchain (TLS certificates are made by the example).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/meshgate-target}
cargo build --release --quiet -p meshgate-control --example fanout
bin="$CARGO_TARGET_DIR/release/examples/fanout"
out=${OUT:-$CARGO_TARGET_DIR/bench-control.md}
{
  echo "# control-plane fan-out, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  for mode in inproc split; do
    "$bin" --mode "$mode" "$@"
    echo
  done
} | tee "$out"
echo "written to $out" >&2
