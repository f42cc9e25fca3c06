"""Start-up and a small API run, end to end: what a user waits for before and around a handful of calls.

For each checkout (this one, and with --vs OTHER the other one, interleaved run by run so both see the same
load on a shared machine) it times in fresh subprocesses:

- `import engine.cli` (what every command pays before it does anything), and the modules a run imports
  (engine.cli, engine.runner, the OpenAI provider: aiohttp, polars, numpy, ...);
- `python -m engine run GRID --no-progress` (what the `mtpa-engine` console script runs; `-m engine.cli` in a
  checkout from before engine/__main__.py) on a 10-call grid (2 TruthfulQA questions, baseline + 4
  personas) against the test suite's OpenAI-compatible server with no latency, a new cache each time:
  start-up, preflight, the calls, results, manifest and the Δ tables.

It prints the median and minimum wall seconds and CPU seconds of each over --runs. On a busy machine wall
time is mostly waiting for a core: compare CPU seconds, and this checkout against OTHER in the same run.

    python bench/startup.py [--runs 7] [--vs /path/to/other/checkout] [--importtime]

--importtime adds the 15 slowest top-level imports of one run (`python -X importtime`), cumulative ms.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from bench._common import openai_server, write_grid  # noqa: E402

RUN_IMPORTS = "import engine.cli, engine.runner, engine.providers.openai"


def timed(cmd: list[str], code: str, env: dict[str, str]) -> tuple[float, float, str]:
    """(wall s, CPU s of the child, its stderr) of one subprocess run with `code` first on sys.path."""
    before, started = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**env, "PYTHONPATH": code}, cwd=code)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed in {code} (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    return wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, proc.stderr


def console(code: str) -> str:
    """The module the `mtpa-engine` console script runs in that checkout."""
    return "engine" if (Path(code) / "engine" / "__main__.py").is_file() else "engine.cli"


def slowest_imports(stderr: str, n: int = 15) -> list[tuple[int, str]]:
    """Top-level modules of a `-X importtime` report by cumulative µs."""
    rows = []
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            _, cumulative, name = line.split("|")
            if name.startswith(" ") and not name.startswith("  ") and cumulative.strip().isdigit():
                rows.append((int(cumulative), name.strip()))
    return sorted(rows, reverse=True)[:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--vs", metavar="OTHER", help="another checkout, measured interleaved with this one")
    parser.add_argument("--importtime", action="store_true", help="also list the slowest imports of a run")
    args = parser.parse_args()
    codes = {"this": str(REPO)} | ({"other": str(Path(args.vs).resolve())} if args.vs else {})
    env = {"OPENAI_API_KEY": "x", "PATH": os.environ.get("PATH", "")}
    py = sys.executable
    cases = {
        "import engine.cli": lambda grid, code: [py, "-c", "import engine.cli"],
        "import a run's modules": lambda grid, code: [py, "-c", RUN_IMPORTS],
        "10-call API run": lambda grid, code: [py, "-m", console(code), "run", str(grid), "--no-progress"],
    }
    got: dict[tuple[str, str], list[tuple[float, float]]] = {}
    with openai_server(0.0) as base_url, tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            for case, cmd in cases.items():
                for name, code in codes.items():
                    grid = write_grid(Path(tmp), base_url, 4, 2, 10, name=f"s{i}{name}")  # a new cache: 10 calls
                    wall, cpu, _ = timed(cmd(grid, code), code, env)
                    got.setdefault((case, name), []).append((wall, cpu))
        print(f"median (min) over {args.runs} runs, seconds; " + "; ".join(f"{k}: {v}" for k, v in codes.items()))
        print(f"{'':24} {'checkout':>8} {'wall':>14} {'CPU':>14}")
        for case in cases:
            for name in codes:
                walls, cpus = zip(*got[(case, name)])
                print(f"{case:24} {name:>8} {statistics.median(walls):>7.3f} ({min(walls):.3f}) {statistics.median(cpus):>7.3f} ({min(cpus):.3f})")
        if args.importtime:
            grid = write_grid(Path(tmp), base_url, 4, 2, 10, name="importtime")
            _, _, stderr = timed([py, "-X", "importtime", "-m", console(str(REPO)), "run", str(grid), "--no-progress"], str(REPO), env)
            print("\nslowest top-level imports of a run (this checkout), cumulative ms:")
            print(", ".join(f"{name} {us / 1000:.0f}" for us, name in slowest_imports(stderr)))


if __name__ == "__main__":
    main()
