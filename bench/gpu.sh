#!/usr/bin/env bash
# Local-model throughput on one NVIDIA GPU, nothing downloaded: see bench/gpu_bench.py. Prints, for a random-weight
# SmolLM2-135M-shaped and a Llama-3.2-1B-shaped model on a 200-persona x 100-question letter-logprob grid,
# (1) transformers one prompt at a time, (2) transformers batched with persona-prefix reuse, and where vLLM imports
# (3) vLLM shuffled and (4) vLLM persona-grouped: prompts/s, ratios to (1), prefix reuse / cache hit rate.
# Needs python with torch and transformers (PYTHON=... to choose; default: this repo's .venv, else python3);
# stops after 8 minutes. Extra arguments go to gpu_bench.py, e.g. `bench/gpu.sh --tiny` (seconds on a CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec timeout 480 "$PYTHON" bench/gpu_bench.py "$@"
