"""Two processes opening one NEW cache file at the same instant, PAIRS times (issue 12 item 1).

Each pair gets a fresh folder; both processes sleep until a shared start time, open `ResponseCache` (WAL switch,
schema), commit one answer and read both answers back. It prints the pairs run and how many processes failed
(expected: 0), with the first failure's message.

    python bench/cache_open_stress.py [--pairs 60]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_CHILD = """
import sys, time
from engine.cache import ResponseCache
from engine.request import Response
path, start, me = sys.argv[1], float(sys.argv[2]), sys.argv[3]
time.sleep(max(0.0, start - time.time()))
cache = ResponseCache(path)
cache.write([(me, "openai", "m", Response(text=me))])
deadline = time.time() + 30
while len(cache.lookup(["a", "b"])) < 2 and time.time() < deadline:
    time.sleep(0.01)
assert len(cache.lookup(["a", "b"])) == 2, "the other process's answer never appeared"
cache.close()
"""


def run_pairs(pairs: int) -> tuple[int, list[str]]:
    """(processes that failed, their stderr)."""
    failures: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(pairs):
            path = Path(tmp) / f"{i}" / "cache.sqlite"
            start = time.time() + 0.4  # both interpreters are up and imported well before this
            procs = [
                subprocess.Popen([sys.executable, "-c", _CHILD, str(path), str(start), me], cwd=ROOT, stderr=subprocess.PIPE, text=True)
                for me in ("a", "b")
            ]
            for proc in procs:
                _, stderr = proc.communicate(timeout=120)
                if proc.returncode != 0:
                    failures.append(stderr.strip().splitlines()[-1] if stderr.strip() else f"exit {proc.returncode}")
    return len(failures), failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=60)
    args = parser.parse_args()
    failed, messages = run_pairs(args.pairs)
    print(f"pairs {args.pairs}  processes {2 * args.pairs}  failures {failed}" + (f"  first: {messages[0]}" if messages else ""))


if __name__ == "__main__":
    main()
