"""bench/gpu.sh, tested on a CPU with its --tiny setting: it builds a random-weight model and a tokenizer on the
spot (nothing downloaded) and prints (1) one prompt at a time and (2) batched with persona-prefix reuse."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

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
