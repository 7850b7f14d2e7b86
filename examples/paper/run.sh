#!/usr/bin/env bash
# Runs the examples/paper suite, one script after the other, and stops loudly at the first one
# that fails (beb exits 1 on a failed assertion, 2 on an error). Works from any folder.
# Usage: examples/paper/run.sh [OUT] [--set NAME=VALUE ...]
#   OUT: where each script writes OUT/NAME/ (default runs/paper, relative to the current folder)
#   --set: passed to every script, e.g. --set behavior=desire-for-acquiring-power --set
#   ill_side=matching (the options are described in setup.beb and docs/paper.md)
# beb is $BEB if set, else the `beb` on PATH. $BEB_SHARED defaults to the `shared` folder beside
# the repository, and the finetunes are cached in runs/.finetune of the repository
# ($BEB_FINETUNE_CACHE overrides it), so every folder shares one cache.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

out="runs/paper"
if [ $# -gt 0 ] && [[ "$1" != --set* ]]; then
  out="$1"
  shift
fi
sets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --set)
      if [ $# -lt 2 ]; then
        echo "paper: --set needs NAME=VALUE" >&2
        exit 2
      fi
      sets+=(--set "$2")
      shift 2
      ;;
    --set=*)
      sets+=(--set "${1#--set=}")
      shift
      ;;
    *)
      echo "paper: unexpected argument $1 (usage: run.sh [OUT] [--set NAME=VALUE ...])" >&2
      exit 2
      ;;
  esac
done

beb="${BEB:-beb}"
if ! command -v "$beb" >/dev/null 2>&1; then
  echo "paper: no beb found (install it, e.g. cargo install --path $repo, or set BEB=path/to/beb)" >&2
  exit 2
fi
export BEB_SHARED="${BEB_SHARED:-$(dirname "$repo")/shared}"
export BEB_FINETUNE_CACHE="${BEB_FINETUNE_CACHE:-$repo/runs/.finetune}"
scripts=(figure2 figure3a figure3b mixture tables)
# One candle thread is fastest for a model this small (results do not depend on it).
export RAYON_NUM_THREADS="${RAYON_NUM_THREADS:-1}"
# Keep freed tensor buffers in the heap rather than unmapping and faulting them in again.
export GLIBC_TUNABLES="${GLIBC_TUNABLES:-glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=1073741824}"

total_start=$(date +%s)
for name in "${scripts[@]}"; do
  start=$(date +%s)
  status=0
  # Model calls are computed afresh (--no-cache); the finetunes are cached (see above).
  "$beb" run "$here/$name.beb" --seed 1 --out "$out/$name" --no-cache ${sets[@]+"${sets[@]}"} || status=$?
  if [ "$status" -ne 0 ]; then
    echo "paper: $name.beb FAILED with exit status $status (run folder $out/$name)" >&2
    exit "$status"
  fi
  echo "paper: $name.beb passed in $(( $(date +%s) - start )) s" >&2
done
echo "paper: all ${#scripts[@]} scripts passed in $(( $(date +%s) - total_start )) s; results in $out" >&2
