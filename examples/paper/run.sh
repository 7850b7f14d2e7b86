#!/usr/bin/env bash
# Runs the examples/paper suite from the repository root, one script after the other, and
# stops loudly at the first one that fails (beb exits 1 on a failed assertion, 2 on an error).
# Usage: examples/paper/run.sh [OUT]   (default runs/paper; each script writes OUT/NAME/)
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${1:-runs/paper}"
scripts=(figure2 figure3a figure3b mixture tables)

if [ -n "${BEB:-}" ]; then
  beb="$BEB"
else
  cargo build --release --quiet
  beb="${CARGO_TARGET_DIR:-target}/release/beb"
fi
# One candle thread is fastest for a model this small (results do not depend on it).
export RAYON_NUM_THREADS="${RAYON_NUM_THREADS:-1}"
# Keep freed tensor buffers in the heap rather than unmapping and faulting them in again.
export GLIBC_TUNABLES="${GLIBC_TUNABLES:-glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=1073741824}"

total_start=$(date +%s)
for name in "${scripts[@]}"; do
  start=$(date +%s)
  status=0
  # Model calls are computed afresh (--no-cache); the finetunes are cached in runs/.finetune.
  "$beb" run "examples/paper/$name.beb" --seed 1 --out "$out/$name" --no-cache || status=$?
  if [ "$status" -ne 0 ]; then
    echo "paper: examples/paper/$name.beb FAILED with exit status $status (run folder $out/$name)" >&2
    exit "$status"
  fi
  echo "paper: $name.beb passed in $(( $(date +%s) - start )) s" >&2
done
echo "paper: all ${#scripts[@]} scripts passed in $(( $(date +%s) - total_start )) s; results in $out" >&2
