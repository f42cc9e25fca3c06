"""Answers lost to a SIGKILL (issue 12 item 18): answers the server had sent before the kill minus rows committed.

For each concurrency C it runs a baseline + persona TruthfulQA grid against the test suite's OpenAI-compatible
server (50 ms latency, in this process's thread), SIGKILLs the engine once the server has sent a random 600-1,400
answers, and counts what the cache holds. What is lost is at most the answers still on the wire (fewer than C)
plus those received but not yet committed. It prints mean and max over the trials.

    python bench/sigkill_loss.py [--trials 5] [--concurrency 50 200] [--repo PATH]   # PATH: the engine tree to run
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._common import REPO, write_grid  # noqa: E402
from engine.testing.servers.openai_compat import OpenAICompatServer  # noqa: E402


def one_kill(repo: Path, concurrency: int, target: int) -> int:
    with OpenAICompatServer(latency=0.05) as server, tempfile.TemporaryDirectory() as tmp:
        grid = write_grid(Path(tmp), server.base_url, personas=15, questions=500, concurrency=concurrency)
        proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "run", str(grid), "--no-progress"], cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 300
        while server.state.statuses[200] < target and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.001)
        sent = server.state.statuses[200]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        with sqlite3.connect(Path(tmp) / "bench.sqlite") as db:
            committed = db.execute("SELECT count(*) FROM responses").fetchone()[0]
        return sent - committed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--repo", type=Path, default=REPO)
    args = parser.parse_args()
    rng = random.Random(0)
    for c in args.concurrency:
        lost = [one_kill(args.repo, c, rng.randint(600, 1400)) for _ in range(args.trials)]
        print(f"C={c:<4} lost per SIGKILL (sent by the server, not in the cache): mean {sum(lost) / len(lost):.1f}  max {max(lost)}  {lost}")


if __name__ == "__main__":
    main()
