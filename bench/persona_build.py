"""Bench: build 50,000 personas from a full-size synthetic EVS/WVS joint CSV (~160,000 rows x 600 columns).

    python bench/persona_build.py [--rows 160000] [--n 50000]

Generates the file in a temporary folder in a child process (persona_builder/testing.py writes the
real schema and quirks), then times `build` alone and prints wall seconds and this process's peak RSS,
which therefore is the build's.
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

from persona_builder.build import build  # noqa: E402


def _generate(path: Path, rows: int, columns: int) -> None:
    import persona_builder.testing as gen
    base = len(gen.write_joint(path, n=2).read_text().splitlines()[0].split(","))
    gen.write_joint(path, n=rows, seed=11, extra_columns=max(0, columns - base))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=160_000)
    parser.add_argument("--columns", type=int, default=600)
    parser.add_argument("--n", type=int, default=50_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "EVS_WVS_Joint_Csv_v5_0.csv"
        start = time.perf_counter()
        with ProcessPoolExecutor(max_workers=1) as pool:
            pool.submit(_generate, path, args.rows, args.columns).result()
        with path.open() as fh:
            header = fh.readline().count(",") + 1
        print(f"generated {args.rows} rows x {header} columns ({path.stat().st_size / 1e6:.0f} MB) "
              f"in {time.perf_counter() - start:.1f} s")
        start = time.perf_counter()
        report = build({"joint": path}, Path(tmp) / "out", n=args.n, seed=0)
        wall = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    print(f"built {report['sampling']['n_sampled']} personas from {report['pool_size']} respondents")
    print(f"build wall: {wall:.1f} s  peak RSS: {peak_mb:.0f} MB  "
          f"max stratum deviation: {report['sampling']['max_abs_deviation']:.2e}")


if __name__ == "__main__":
    main()
