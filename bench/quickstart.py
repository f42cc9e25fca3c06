"""The quick start as a user runs it: `mtpa-engine run examples/grid.toml`, end to end, from a cold cache.

Copies examples/ to a temporary folder (so the run's cache and results start empty and the repo's stay
untouched), runs the installed CLI next to this interpreter in a subprocess (start-up, model load and report
included; the one-time GGUF conversion is cached under ~/.cache/mtpa-engine and not redone), and prints the
wall time, the cells and cells/s. Then, unless --no-warm, the same command again on the now full cache.

    python bench/quickstart.py [--grid examples/grid.toml]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def timed_run(cli: Path, grid: Path) -> tuple[float, dict]:
    summary = grid.parent / "summary.json"
    started = time.perf_counter()
    proc = subprocess.run([str(cli), "run", str(grid), "--no-progress", "--summary-json", str(summary)], capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if proc.returncode:
        sys.exit(f"run failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return wall, json.loads(summary.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", type=Path, default=REPO / "examples" / "grid.toml")
    parser.add_argument("--no-warm", action="store_true", help="skip the second, fully cached run")
    args = parser.parse_args()
    cli = Path(sys.executable).with_name("mtpa-engine")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "examples"
        shutil.copytree(args.grid.resolve().parent, work)
        grid = work / args.grid.name
        for label in ("cold cache", "warm cache")[: 1 if args.no_warm else 2]:
            wall, summary = timed_run(cli, grid)
            cells = summary["cells_done"]
            print(
                f"{args.grid.name} ({label}): {wall:.1f} s wall, {cells} cells ({summary['model_calls']} model calls, "
                f"{summary['errors_total']} errors), {cells / wall:.2f} cells/s",
                flush=True,
            )


if __name__ == "__main__":
    main()
