"""Bench: `mtpa-engine run --dry-run` at scale, with no cache file (issues 14 and 15).

    python bench/dryrun_scale.py [--grid tqa|traits|both] [--personas N] [--questions Q] [--keyed] [--traits-personas N]

Two grids, each built in a temporary folder and dry-run in a fresh child process (`python -m engine.cli run
GRID --dry-run`), whose wall seconds and peak RSS (resource.getrusage(RUSAGE_CHILDREN).ru_maxrss of that child)
are printed beside the targets:

- tqa: 20,000 personas × 500 TruthfulQA questions, baseline + prose: 500 + 20,000 × 500 = 10,000,500 cells.
  Target (issue 14): ≤ 30 s and ≤ 400 MB. With --keyed, again against a cache holding one answer of no cell:
  the dry run then keys and looks up every cell (the path a grid with a cache takes).
- traits: 50,000 personas × 23 value traits (trait inference, 1.15 M items per condition), baseline + prose.
  The plan alone (load the grid, read the personas, bind the traits) is timed in its own child too.
  Target (issue 15): plan and dry run "in seconds" with flat memory.

The personas are synthetic: copies of the shape of the real GSS rows in examples/personas.jsonl (their trait
keys, questions, categories, answer scales and ordinal flags), with each answer drawn, seeded, from the
answers the real rows gave to that trait; the traits grid adds value traits shaped like the real ones
(question and scale of a real value trait, a numbered key) until each persona has 23. No real respondent is
copied whole. Times are wall clock on whatever machine runs this (say how loaded it was when quoting them).
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parent.parent
REAL = REPO / "examples" / "personas.jsonl"


def write_personas(path: Path, n: int, value_traits: int | None = None, seed: int = 0) -> None:
    """n synthetic personas shaped like the real GSS rows of examples/personas.jsonl (see the module docstring);
    with value_traits, exactly that many "values" traits each (real ones first, then numbered copies)."""
    real = [orjson.loads(line)["traits"] for line in REAL.read_bytes().splitlines() if line.strip()]
    shape: dict[str, dict] = {}
    answers: dict[str, list[str]] = {}
    for traits in real:
        for key, t in traits.items():
            shape.setdefault(key, {k: v for k, v in t.items() if k != "answer"})
            answers.setdefault(key, []).append(t["answer"])
    if value_traits is not None:
        values = [k for k, s in shape.items() if s["category"] == "values" and s.get("scale")]
        for j in range(value_traits - len(values)):
            base = values[j % len(values)]
            key = f"{base}_{j // len(values) + 2}"
            shape[key] = {**shape[base], "question": f"{shape[base]['question']} (asked again, form {j // len(values) + 2})"}
            answers[key] = answers[base]
    rng = random.Random(seed)
    with path.open("wb") as fh:
        for i in range(n):
            traits = {key: {**s, "answer": rng.choice(answers[key])} for key, s in shape.items()}
            fh.write(orjson.dumps({"id": f"syn-{i:06d}", "source": "GSS", "traits": traits}) + b"\n")


def write_parquet(jsonl: Path, parquet: Path) -> None:
    """The same personas in the build's Parquet layout (persona_builder.build): one answer column per trait,
    questions, categories, scales and ordinal flags in the file metadata."""
    import polars as pl

    from persona_builder.persona import TRAITS_METADATA

    records = [orjson.loads(line) for line in jsonl.read_bytes().splitlines()]
    first = records[0]["traits"]
    meta = {
        k: {"category": t["category"], "question": t["question"], "questions": {"GSS": t["question"]},
            **({"scales": {"GSS": t["scale"]}, "ordinal": {"GSS": t["ordinal"]}} if t.get("scale") else {})}
        for k, t in first.items()
    }
    columns = {"id": [r["id"] for r in records], "source": [r["source"] for r in records]}
    columns |= {k: [r["traits"][k]["answer"] for r in records] for k in first}
    del records
    pl.DataFrame(columns).write_parquet(parquet, metadata={TRAITS_METADATA: orjson.dumps(meta).decode()})


def write_grid(folder: Path, benchmark: str, personas: str = "personas.jsonl") -> Path:
    grid = folder / "grid.toml"
    grid.write_text(
        textwrap.dedent(
            f"""
            [run]
            name = "scale"
            output_dir = "out"
            cache = "cache.sqlite"

            [personas]
            source = "{personas}"

            {benchmark}

            [[models]]
            id = "m"
            provider = "openai"
            model = "gpt-4.1-mini"
            base_url = "http://127.0.0.1:9/v1"
            api_key_env = "PATH"
            max_tokens = 4

            [[conditions]]
            name = "baseline"

            [[conditions]]
            name = "prose"
            format = "prose"
            """
        )
    )
    return grid


def timed(args: list[str]) -> tuple[float, float, subprocess.CompletedProcess]:
    """Wall s and peak RSS MB of one child (RUSAGE_CHILDREN is the max over children reaped so far: each call
    runs in a fresh grandchild so the figure is this command's own)."""
    probe = (
        "import resource, subprocess, sys, time; t = time.perf_counter(); "
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True); w = time.perf_counter() - t; "
        "sys.stdout.write(p.stdout); sys.stderr.write(p.stderr); "
        "print(f'@@ {w} {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}'); sys.exit(p.returncode)"
    )
    proc = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, cwd=REPO, env={**os.environ, "COLUMNS": "200"})
    last = [line for line in proc.stdout.splitlines() if line.startswith("@@ ")]
    wall, peak = (float(x) for x in last[-1].split()[1:]) if last else (float("nan"), float("nan"))
    return wall, peak, proc


def _dry_run(grid: Path, label: str, target: str) -> None:
    wall, peak, proc = timed([sys.executable, "-m", "engine.cli", "run", str(grid), "--dry-run"])
    print(f"{label:>14}: `mtpa-engine run --dry-run` exit {proc.returncode}  wall {wall:6.1f} s  peak RSS {peak:5.0f} MB  (target {target})", flush=True)
    if proc.returncode:
        print(proc.stderr[-2000:])
    else:
        print(textwrap.indent("\n".join(line for line in proc.stdout.splitlines() if not line.startswith("@@ ")), " " * 16))


def _one_answer_cache(path: Path) -> None:
    """A cache holding one answer of no cell of the grid: the dry run then keys and looks up every cell."""
    from engine.cache import ResponseCache
    from engine.request import Response

    cache = ResponseCache(path)
    cache.write([("0" * 64, "openai", "other", Response(text="A"))])
    cache.close()


PLAN = "import sys; from engine.grid import load_grid; from engine.plan import Plan; p = Plan.from_grid(load_grid(sys.argv[1])); print(f'{len(p):,} cells')"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", choices=("tqa", "traits", "both"), default="both")
    parser.add_argument("--personas", type=int, default=20_000, help="tqa grid: personas")
    parser.add_argument("--questions", type=int, default=500, help="tqa grid: TruthfulQA questions")
    parser.add_argument("--keyed", action="store_true", help="tqa grid: also dry-run against a cache with one unrelated answer (every cell keyed)")
    parser.add_argument("--traits-personas", type=int, default=50_000)
    parser.add_argument("--value-traits", type=int, default=23)
    args = parser.parse_args()
    print(f"load average at start: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if args.grid in ("tqa", "both"):
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            write_personas(folder / "personas.jsonl", args.personas)
            grid = write_grid(folder, f'[[benchmarks]]\nname = "truthfulqa"\nlimit = {args.questions}')
            cells = args.questions * (args.personas + 1)
            print(f"tqa: {args.personas:,} synthetic GSS-shaped personas × {args.questions} questions, baseline + prose = {cells:,} cells")
            _dry_run(grid, "tqa", "≤ 30 s, ≤ 400 MB")
            if args.keyed:
                _one_answer_cache(folder / "cache.sqlite")
                _dry_run(grid, "tqa keyed", "every cell keyed once: flat memory")
    if args.grid in ("traits", "both"):
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            start = time.perf_counter()
            write_personas(folder / "personas.jsonl", args.traits_personas, args.value_traits)
            size = (folder / "personas.jsonl").stat().st_size / 1e6
            write_parquet(folder / "personas.jsonl", folder / "personas.parquet")
            print(f"traits: {args.traits_personas:,} synthetic GSS-shaped personas × {args.value_traits} value traits, baseline + prose "
                  f"(JSONL {size:.0f} MB, Parquet {(folder / 'personas.parquet').stat().st_size / 1e6:.1f} MB, written in {time.perf_counter() - start:.1f} s)")
            for source in ("personas.parquet", "personas.jsonl"):
                kind = source.split(".")[1]
                grid = write_grid(folder, '[[benchmarks]]\nname = "traits"\ntargets = "values"', source)
                wall, peak, proc = timed([sys.executable, "-c", PLAN, str(grid)])
                shown = proc.stdout.split("@@")[0].strip() or proc.stderr[-500:]
                print(f"{'plan ' + kind:>14}: {shown}  wall {wall:6.1f} s  peak RSS {peak:5.0f} MB  (target: seconds, flat)", flush=True)
                _dry_run(grid, "dry-run " + kind, "seconds, flat")


if __name__ == "__main__":
    main()
