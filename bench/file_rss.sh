#!/usr/bin/env bash
# Why meshgate's idle RSS is mostly file-backed, and why that figure says more about
# the kernel's page cache than about the program (issue 8 target 4, issue 7's
# sidecar RSS). Maps the binary read-only and executable, as the loader maps its
# code, touches one byte every STRIDE KB of its first SPAN MB, and prints RssFile:
# on this machine each touch maps ~128 KB (the page cache holds the binary in large
# folios, up to the block device's read_ahead_kb, and a fault maps the whole folio).
# Advice changes nothing once the folios exist (MADV_RANDOM = 1, MADV_NOHUGEPAGE = 14).
#
#   ./bench/file_rss.sh [BINARY]          # STRIDE=256 SPAN=24 by default
#
# Needs: cc (the C compiler the build already needs).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/meshgate-target}
bin=${1:-$CARGO_TARGET_DIR/release/meshgate}
STRIDE=${STRIDE:-256} SPAN=${SPAN:-24}
work=$(mktemp -d /tmp/meshgate-file-rss.XXXXXX)
trap 'rm -rf "$work"' EXIT
cat > "$work/touch.c" <<'C'
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
int main(int argc, char **argv) {
  size_t span = (size_t)atoi(argv[2]) << 20, stride = (size_t)atoi(argv[3]) << 10;
  int fd = open(argv[1], O_RDONLY);
  if (fd < 0) { perror(argv[1]); return 2; }
  char *p = mmap(0, span, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0);
  if (p == MAP_FAILED) { perror("mmap"); return 2; }
  if (argc > 4) madvise(p, span, atoi(argv[4]));
  volatile char sum = 0;
  size_t touches = 0;
  for (size_t off = 0; off < span; off += stride, touches++) sum += p[off];
  char line[256];
  FILE *f = fopen("/proc/self/status", "r");
  while (fgets(line, sizeof line, f))
    if (!strncmp(line, "RssFile", 7)) printf("%zu touches: %s", touches, line);
  return 0;
}
C
cc -O2 -o "$work/touch" "$work/touch.c"
echo "read_ahead_kb: $(cat /sys/block/*/queue/read_ahead_kb 2>/dev/null | sort -u | tr '\n' ' ')"
echo "binary: $bin ($(stat -c %s "$bin") bytes); one touch every $STRIDE KB of the first $SPAN MB"
echo "no advice:       $("$work/touch" "$bin" "$SPAN" "$STRIDE")"
echo "MADV_RANDOM:     $("$work/touch" "$bin" "$SPAN" "$STRIDE" 1)"
echo "MADV_NOHUGEPAGE: $("$work/touch" "$bin" "$SPAN" "$STRIDE" 14)"
echo "(RssFile includes libc and the loader, ~1 MB.)"
