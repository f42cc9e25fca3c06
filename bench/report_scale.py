"""Bench: the persona-effect aggregation on 10 million synthetic result rows.

    python bench/report_scale.py [--questions 500] [--personas 2500] [--countries 40] [--resamples 1000]

2 models × 2 benchmarks × 2 persona conditions × questions × personas result rows (10,000,000 at the
defaults) plus the baseline, written as a run directory by a child process; then Δ by model × benchmark ×
condition, overall and by country, with a paired bootstrap over questions and personas. Prints wall seconds
and this process's peak RSS, which therefore is the aggregation's (the data was generated elsewhere).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.report.aggregate import OVERALL, Index, Settings  # noqa: E402
from engine.report.effects import persona_effect  # noqa: E402
from engine.report.load import open_run  # noqa: E402

MODELS = ["model-a", "model-b"]
BENCHMARKS = ["truthfulqa", "bbq"]
EFFECTS = {"prose": 0.02, "json": -0.03}


def _generate(run_dir: Path, questions: int, personas: int, countries: int) -> int:
    from engine.testing.synthetic import BASELINE, condition, personas_frame, random_results, write_run

    people = personas_frame(personas, [f"country-{i:02d}" for i in range(countries)])
    chunks = random_results(models=MODELS, benchmarks=BENCHMARKS, effects=EFFECTS, questions=questions, personas=people)
    write_run(run_dir, chunks, people, [BASELINE, *(condition(n, n) for n in EFFECTS)])
    return sum(f.stat().st_size for f in (run_dir / "results").iterdir())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=500)
    parser.add_argument("--personas", type=int, default=2500)
    parser.add_argument("--countries", type=int, default=40)
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args()
    rows = len(MODELS) * len(BENCHMARKS) * args.questions * (1 + len(EFFECTS) * args.personas)
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "bench"
        start = time.perf_counter()
        with ProcessPoolExecutor(max_workers=1) as pool:
            size = pool.submit(_generate, run_dir, args.questions, args.personas, args.countries).result()
        print(f"generated {rows:,} result rows ({size / 1e6:.0f} MB of Parquet) in {time.perf_counter() - start:.1f} s")
        start = time.perf_counter()
        run = open_run(run_dir)
        index = Index.build(run, Settings(resamples=args.resamples, seed=0))
        tables = persona_effect(run, index, (OVERALL, ("country",)))
        wall = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    overall, by_country = tables[OVERALL], tables[("country",)]
    print(overall.select("model", "benchmark", "condition", "n", "delta", "delta_lo", "delta_hi", "p"))
    print(f"{by_country.height} model × benchmark × condition × country rows, {args.resamples} resamples")
    print(f"aggregate wall: {wall:.1f} s  peak RSS: {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
