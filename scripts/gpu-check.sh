#!/usr/bin/env bash
# The GPU check, one command on a machine with an NVIDIA GPU and the CUDA toolkit (nvcc):
# builds beb with `--features cuda`, runs the parity tests of stories260K on CUDA device 0
# (f32 within 1e-4 nats/token of the float64 reference, bf16 within 0.05 on average:
# tests/gpu.rs) and the Figure 2 benchmark, and prints the figures.
#   BEB_SHARED=/path/to/shared scripts/gpu-check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export BEB_SHARED="${BEB_SHARED:-../shared}"
if [ ! -d "$BEB_SHARED/models/stories260K" ]; then
  echo "gpu-check: the shared models are not at $BEB_SHARED (set BEB_SHARED)" >&2
  exit 1
fi
if ! command -v nvidia-smi >/dev/null; then
  echo "gpu-check: nvidia-smi not found: this machine has no NVIDIA driver" >&2
  exit 1
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
command -v nvcc >/dev/null && nvcc --version | tail -1
echo "== build (--features cuda)"
cargo build --release --features cuda --bin beb
echo "== parity on CUDA and on the CPU"
cargo test --release --features cuda --test gpu -- --nocapture --test-threads 1 2>&1 \
  | grep -E "nats/token|skipping|test result|panicked"
echo "== beb bench figure2 (CPU; the benchmark's models are loaded on the CPU)"
target/release/beb bench figure2
