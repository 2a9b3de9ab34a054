#!/usr/bin/env bash
# A/B of two meshgate binaries on the same machine: alternates them through
# ../shared/bench/peers.sh (one round each, ROUNDS times) so both meet the same
# noise, and prints each run's meshgate row with that run's nginx figures.
#
#   bench/ab.sh CONFIG ROUNDS OLD_BINARY NEW_BINARY
#   e.g. bench/ab.sh bench/proxy.yaml 3 /tmp/meshgate-before target/release/meshgate
#
# Read the medians of the cpu_us/req column: on a shared box a single run can be
# off by 20 %. Needs what peers.sh needs: nginx-light haproxy wrk bc.
set -euo pipefail
cd "$(dirname "$0")/.."
cfg=$1 rounds=$2 a=$3 b=$4
for _ in $(seq 1 "$rounds"); do
  for bin in "$a" "$b"; do
    rm -f /tmp/meshgate-bench-access.log
    out=$(../shared/bench/peers.sh --cmd "$bin run -c $cfg" --rounds 1 2>&1)
    echo "$out" | awk -v b="$bin" '/^nginx/ {n = $2; nc = $5}
      /^project/ {printf "%-40s req/s %8.0f  cpu_us/req %6.2f  nginx %8.0f %6.2f  ratio %.2f  cpu %.2f\n",
        b, $2, $5, n, nc, $2 / n, $5 / nc}'
  done
done
rm -f /tmp/meshgate-bench-access.log
