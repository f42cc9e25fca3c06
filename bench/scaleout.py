"""Bench: scale-out on Ray (executor = "ray"): 1 vs 2 CPU workers on the embedded model; 1 vs N vLLM replicas on GPUs.

    python bench/scaleout.py [--personas 4] [--questions 4] [--vllm-model PATH --replicas N]

CPU: a fresh local Ray cluster (one node, 2 CPUs, its own temp folder; engine/testing/ray_cluster.py), then the same grid
(the README's example grid, `--personas` x `--questions`, letter-logprob in every cyclic option order) run with
`[run.ray] workers = 1` and `workers = 2`, one CPU each, each on an empty cache (and, for reference, in one process
without Ray). Prints cells, the scheduler's wall
time (the calls only: workers have loaded their model in the preflight) and the speedup of 2 workers over 1. On a
2-core machine the ideal is 2 minus the driver's share (it plans, keys, scores and writes on the same cores).

GPU (`--vllm-model`, only where CUDA is present): the same grid on provider "vllm", `workers = 1` vs
`workers = --replicas`, one GPU per replica (tensor_parallel_size = 1). Asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.testing.ray_cluster import local_cluster  # noqa: E402


def _grid(folder: Path, address: str, workers: int, personas: int, questions: int, model: str) -> Path:
    folder.mkdir(parents=True)
    shutil.copy(ROOT / "examples" / "personas.jsonl", folder / "personas.jsonl")
    text = (ROOT / "examples" / "grid.toml").read_text()
    text = text.replace('"../runs/{name}"', '"runs/{name}"').replace('"../cache.sqlite"', '"cache.sqlite"')
    text = text.replace("[personas]\nsource = \"personas.jsonl\"\nlimit = 4", f"[personas]\nsource = \"personas.jsonl\"\nlimit = {personas}")
    text = text.replace("limit = 4\nseed = 0", f"limit = {questions}\nseed = 0")
    if workers:  # 0: the same grid in one process (executor = "local"), for reference
        text = text.replace('score = "p_gold"', f'score = "p_gold"\nexecutor = "ray"\n\n[run.ray]\naddress = "{address}"\nworkers = {workers}\n')
    if model != "embedded":
        text = text.replace('provider = "local"\nmodel = "embedded"', f'provider = "vllm"\nmodel = "{model}"').replace("batch_size = 16", "batch_size = 256")
    (folder / "grid.toml").write_text(text)
    return folder / "grid.toml"


def _run(grid: Path) -> dict:
    summary = grid.parent / "summary.json"
    cmd = [sys.executable, "-m", "engine.cli", "run", str(grid), "--no-progress", "--summary-json", str(summary)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"run failed:\n{proc.stderr[-3000:]}")
    return orjson.loads(summary.read_bytes())


def compare(address: str, widths: tuple[int, int], personas: int, questions: int, model: str, label: str) -> None:
    walls = []
    with tempfile.TemporaryDirectory() as tmp:
        if model == "embedded":
            s = _run(_grid(Path(tmp) / "local", address, 0, personas, questions, model))
            print(f"{label}: one process (executor = \"local\", every core): {s['cells_total']} cells in {s['wall_s']:.1f} s ({s['cells_total'] / s['wall_s']:.2f} cells/s)")
        for workers in widths:
            s = _run(_grid(Path(tmp) / f"w{workers}", address, workers, personas, questions, model))
            assert s["errors_total"] == 0 and s["model_calls"] == s["cells_total"], s
            walls.append(s["wall_s"])
            print(f"{label}: workers {workers}: {s['cells_total']} cells in {s['wall_s']:.1f} s ({s['cells_total'] / s['wall_s']:.2f} cells/s)")
    print(f"{label}: speedup {widths[1]} vs {widths[0]} workers: {walls[0] / walls[1]:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--personas", type=int, default=4)
    ap.add_argument("--questions", type=int, default=4)
    ap.add_argument("--vllm-model", help="a local model folder for the GPU comparison")
    ap.add_argument("--replicas", type=int, default=0, help="vLLM replicas to compare with 1 (default: every GPU)")
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} CPUs")
    with local_cluster(nodes=1, cpus=2) as cluster:
        compare(cluster.address, (1, 2), args.personas, args.questions, "embedded", "cpu")
    import torch

    if not torch.cuda.is_available():
        print("gpu: no CUDA device here: the 1 vs N vLLM replica comparison did not run")
        return
    if not args.vllm_model:
        print("gpu: pass --vllm-model PATH for the 1 vs N vLLM replica comparison")
        return
    gpus = torch.cuda.device_count()
    with local_cluster(nodes=1, cpus=os.cpu_count() or 1, gpus=gpus) as cluster:
        compare(cluster.address, (1, args.replicas or gpus), args.personas, args.questions, args.vllm_model, "gpu")


if __name__ == "__main__":
    main()
