#!/usr/bin/env bash
# Seed the fuzz corpora with every example script, golden test script and ```beb block of the
# documentation (docs/fuzzing.md). Run from the repository root: fuzz/seed-corpus.sh
set -euo pipefail
cd "$(dirname "$0")/.."
for target in parse run; do
  dir="fuzz/corpus/$target"
  mkdir -p "$dir"
  find examples tests/golden -name '*.beb' -print0 | while IFS= read -r -d '' f; do
    cp "$f" "$dir/$(echo "$f" | tr '/' '_')"
  done
  for doc in README.md docs/*.md; do
    awk -v out="$dir/$(basename "$doc" .md)" '
      /^```beb/ { inside = 1; n++; file = out "_" n ".beb"; printf "" > file; next }
      /^```/ && inside { inside = 0; close(file); next }
      inside { print >> file }
    ' "$doc"
  done
done
# The run target has no models (fuzz_targets/common.rs): scripts that load them only time out.
grep -l 'BEB_SHARED' fuzz/corpus/run/* | xargs -r rm --
echo "seeded: $(ls fuzz/corpus/parse | wc -l) files for parse, $(ls fuzz/corpus/run | wc -l) for run"
