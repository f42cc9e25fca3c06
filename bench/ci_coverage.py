"""Bench: do the report's 95% intervals for Δ cover the true Δ 95% of the time, and does its test reject a true
Δ of 0 at most 5% of the time?

    python bench/ci_coverage.py [--datasets 200] [--resamples 1000] [--seed 0]

Each setting simulates `--datasets` independent runs at a true Δ of 0.05 (coverage) and as many at 0 (false
positives). A simulated run is a crossed design: Q questions × P personas, one answer each, and one baseline
answer per question. Question q's baseline is right with probability π_q ~ U(0.3, 0.6); persona p's answer to it
with probability π_q + Δ + c_p + a_q, persona effects c_p ~ U(−s_P, s_P) and question-by-persona-condition effects
a_q ~ U(−s_Q, s_Q) with s_P + s_Q ≤ 0.3, so no probability leaves [0, 1] and the population Δ is exactly Δ. Every
run is one benchmark of one run directory (its own questions and persona effects), analysed by the engine's own
`open_run` + `persona_effect` with `Settings(min_size=30)` (the report's default). A second line reruns the same
data with the other method: "before: bootstrap" (`min_size=1`: the crossed bootstrap for every group, as the
report did before) where the report used cluster-t, "cluster-t instead" (a `min_size` no group reaches) where
it used the bootstrap.

Prints per setting: the method the report used, coverage of the 95% interval at Δ = 0.05, the share of runs
whose test rejects at p < 0.05 when Δ = 0, and the share with an interval/p withheld. Targets: coverage ≥ 0.94,
false positives ≤ 0.06. Monte Carlo standard error at 200 runs: ±0.015 on a coverage of 0.95.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.report.aggregate import OVERALL, Index, Settings  # noqa: E402
from engine.report.effects import persona_effect  # noqa: E402
from engine.report.load import open_run  # noqa: E402
from engine.testing.synthetic import BASELINE, condition, write_run  # noqa: E402

TRUE_DELTA = 0.05


@dataclass(frozen=True)
class Design:
    name: str
    questions: int
    personas: int
    persona_spread: float  # s_P: persona effects uniform on ±s_P
    question_spread: float  # s_Q: per-question persona effects uniform on ±s_Q
    group: int = 0  # > 0: personas fall into groups of this size and the groups are the tested rows (--by group)


DESIGNS = (
    Design("crossed 60 q × 40 personas", 60, 40, 0.15, 0.15),
    Design("crossed 20 q × 40 personas", 20, 40, 0.15, 0.15),
    Design("crossed 100 q × 60 personas, persona-heavy", 100, 60, 0.25, 0.05),
    Design("5 personas × 100 q, strong persona variance", 100, 5, 0.3, 0.0),
    Design("5-persona subgroups (8 of 40 personas) × 100 q", 100, 40, 0.3, 0.0, group=5),
)
REPORT_MIN_SIZE = 30  # the report's default --min-size


def _simulate(run_dir: Path, design: Design, delta: float, datasets: int, rng: np.random.Generator) -> Path:
    """One run directory: each simulated dataset is one benchmark with its own questions and its own persona
    effects. Persona ids repeat across datasets, so that every family's persona block is P wide, not
    datasets × P (the bootstrap's cost): the datasets then share persona bootstrap weights, which leaves each
    dataset's coverage what it is and only correlates the datasets' draws a little."""
    q, p = design.questions, design.personas
    ids = np.array([f"p{i:04d}" for i in range(p)])
    people = pl.DataFrame({"persona_id": ids, "group": [f"g{i // max(design.group, 1):02d}" for i in range(p)]})
    frames = []
    for d in range(datasets):
        bench, items = f"sim{d:04d}", np.array([f"q{j:04d}" for j in range(q)])
        base = rng.uniform(0.3, 0.6, q)
        persona_shift = rng.uniform(-design.persona_spread, design.persona_spread, p)
        question_shift = rng.uniform(-design.question_spread, design.question_spread, q)
        prob = base[:, None] + delta + persona_shift[None, :] + question_shift[:, None]  # q × p
        frames.append(pl.DataFrame({"benchmark": bench, "condition": "baseline", "item_id": items, "correct": (rng.random(q) < base) * 1.0}))
        frames.append(
            pl.DataFrame(
                {
                    "benchmark": bench,
                    "condition": "prose",
                    "item_id": np.repeat(items, p),
                    "persona_id": np.tile(ids, q),
                    "correct": (rng.random((q, p)) < prob).ravel() * 1.0,
                }
            )
        )
    rows = pl.concat(frames, how="diagonal_relaxed").with_columns(model=pl.lit("m"))
    return write_run(run_dir, rows, people, [BASELINE, condition("prose")])


def _rows(run_dir: Path, design: Design, min_size: int, resamples: int, seed: int) -> pl.DataFrame:
    run = open_run(run_dir)
    spec = ("group",) if design.group else OVERALL
    return persona_effect(run, Index.build(run, Settings(resamples=resamples, seed=seed, min_size=min_size)), (spec,))[spec]


def _summary(covered: pl.DataFrame, null: pl.DataFrame) -> dict[str, object]:
    methods = sorted({m for m in pl.concat([covered["p_method"], null["p_method"]]).to_list() if m is not None})
    contains = (covered["delta_lo"] <= TRUE_DELTA) & (TRUE_DELTA <= covered["delta_hi"])
    return {
        "method": "+".join(methods) or "none",
        "tested": covered.height,
        "coverage": contains.fill_null(False).sum() / covered["delta_lo"].is_not_null().sum(),
        "false_pos": (null["p"] < 0.05).fill_null(False).sum() / null["p"].is_not_null().sum(),
        "withheld": (covered["p"].is_null().sum() + null["p"].is_null().sum()) / (covered.height + null.height),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=int, default=200)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", type=int, nargs="*", help="setting numbers (0-based) to run; default all")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    print(f"{args.datasets} simulated runs per setting and Δ; true Δ {TRUE_DELTA} for coverage, 0 for false positives; {args.resamples} bootstrap resamples")
    header = f"{'setting':<52} {'analysis':<17} {'method':<10} {'rows':>5} {'coverage':>8} {'false+':>7} {'withheld':>8} {'s':>5}"
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as tmp:
        for i, design in enumerate(DESIGNS):
            if args.only is not None and i not in args.only:
                continue
            effect = _simulate(Path(tmp) / f"{i}-effect", design, TRUE_DELTA, args.datasets, rng)
            null = _simulate(Path(tmp) / f"{i}-null", design, 0.0, args.datasets, rng)
            analyses = [("report", REPORT_MIN_SIZE, args.resamples)]
            small = min(design.questions, design.group or design.personas) < REPORT_MIN_SIZE
            # The other method on the same data: for small groups the crossed bootstrap they had before
            # (min_size 1); for large ones cluster-t (a min_size no group reaches; no resamples needed).
            analyses.append(("before: bootstrap", 1, args.resamples) if small else ("cluster-t instead", 10**9, 0))
            for label, min_size, resamples in analyses:
                started = time.perf_counter()
                s = _summary(_rows(effect, design, min_size, resamples, args.seed), _rows(null, design, min_size, resamples, args.seed))
                wall = time.perf_counter() - started
                print(f"{design.name:<52} {label:<17} {s['method']:<10} {s['tested']:>5} {s['coverage']:>8.3f} {s['false_pos']:>7.3f} {s['withheld']:>8.3f} {wall:>5.1f}", flush=True)

if __name__ == "__main__":
    main()
