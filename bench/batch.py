"""Batch transport at scale: N cells through the OpenAI Batch test server (issue 18).

Prints, for each cell count (default 20,000 and 100,000, to show memory flat in the number of cells):
- end to end: `mtpa-engine run` of a batch grid in its own process against the server in another one (no
  simulated processing: a job ends at its first poll after creation), its wall s, CPU s, CPU ms per cell and
  peak RSS (MB), also up to the scheduler's end, beside a warm rerun's: their difference is the batch path's
  own memory (target: flat in the number of cells); the server's jobs, duplicate submissions, input files left, and its own CPU s (the test
  server parses the upload and answers every line in Python: wall time the engine spends waiting on it);
- packing and parsing alone, in this process: CPU ms per request to turn a request into its JSONL line
  (OpenAIBatch.line), to parse a result line into a Response (OpenAIBatch._response: JSON, body checks, the
  online parser), and to commit results with their membership (BatchStore.commit, chunks of 2,000).
  Target: packing + parsing under 0.1 ms per request.

    python bench/batch.py [--cells 20000 100000] [--poll-s 0.2]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._common import REPO, free_port, write_grid  # noqa: E402

QUESTIONS = 100  # cells = QUESTIONS x (1 baseline + personas)


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(grid: str) -> None:
    """Run the grid in this process; print wall, CPU, peak RSS, and peak RSS up to the scheduler's end as JSON.

    The second peak leaves out what follows the cells (the Δ tables and report, which read every result row and
    grow with the cells in a warm run too): it is where the batch path's own memory shows."""
    from bench._common import engine_run
    from engine.scheduler import Scheduler

    marks: dict[str, float] = {}
    run = Scheduler.run

    async def measured(self, stop):
        try:
            return await run(self, stop)
        finally:
            marks["scheduler_rss_mb"] = _peak_mb()

    Scheduler.run = measured  # type: ignore[method-assign]
    wall, cpu, summary = engine_run(Path(grid))
    print(json.dumps({"wall_s": wall, "cpu_s": cpu, "rss_mb": _peak_mb(), **marks, "summary": summary}))


def _server(port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "engine.testing.servers.openai_batch", "--port", str(port)], cwd=REPO)
    for _ in range(200):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=1).read()
            return proc
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("the batch server did not start")


def _grid(root: Path, base_url: str, personas: int, model_extra: str) -> Path:
    """bench._common's grid, its personas made distinct (a respondent number trait): every cell its own request."""
    grid = write_grid(root, base_url, personas, QUESTIONS, 1, model_extra=model_extra)
    lines = (root / "personas.jsonl").read_bytes().splitlines()
    with (root / "personas.jsonl").open("wb") as fh:
        for i, line in enumerate(lines):
            persona = orjson.loads(line)
            persona["traits"]["respondent"] = {"question": "Respondent number", "answer": str(i), "category": "demographic"}
            fh.write(orjson.dumps(persona) + b"\n")
    return grid


def _run_child(grid: Path) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", str(grid)], capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def end_to_end(cells: int, poll_s: float) -> dict:
    port = free_port()
    server = _server(port)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            personas = cells // QUESTIONS - 1
            grid = _grid(Path(tmp), f"http://127.0.0.1:{port}/v1", personas, f'transport = "batch"\n[models.batch]\npoll_s = {poll_s}')
            out = _run_child(grid)
            out["server"] = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/batch_stats").read())
            out["warm"] = _run_child(grid)  # the same grid again: every cell a cache hit, no batch work
            return out
    finally:
        server.terminate()
        server.wait(timeout=10)


def pack_and_parse(cells: int) -> dict:
    """CPU ms per request of packing, parsing and committing, on `cells` requests of a real plan."""
    from engine.batch.openai import OpenAIBatch
    from engine.batch.store import BatchStore
    from engine.cache import ResponseCache
    from engine.grid import load_grid
    from engine.keys import Keys
    from engine.plan import Plan
    from engine.providers import create_provider
    from engine.testing.servers.common import pick_letter, prompt_digest
    from engine.testing.servers.openai_compat import WIRE

    with tempfile.TemporaryDirectory() as tmp:
        grid_path = _grid(Path(tmp), "http://127.0.0.1:9/v1", cells // QUESTIONS - 1, 'transport = "batch"\napi_key_env = "NONE"')
        grid = load_grid(grid_path)
        plan = Plan.from_grid(grid)
        model = grid.models[0]
        provider = create_provider(model)
        requests = [plan.request(c) for c in plan.cells(model)][:cells]
        of = Keys({model.id: provider}).of
        keys = [of(model, r) for r in requests]
        transport = OpenAIBatch(provider)  # type: ignore[arg-type]

        started = time.process_time()
        lines = [transport.line(k, r) for k, r in zip(keys, requests)]
        pack_s = time.process_time() - started

        results = []
        for i, line in enumerate(lines):
            body = orjson.loads(line)["body"]
            text, ident = WIRE.prompt(body)
            letters, letter = pick_letter(text, prompt_digest(ident))
            answer = {"status_code": 200, "request_id": f"r{i}", "body": WIRE.answer(body, letter, letters, i, text)}
            results.append(orjson.dumps({"id": f"batch_req_{i}", "custom_id": keys[i], "response": answer, "error": None}))
        started = time.process_time()
        parsed = [(k, transport._response(orjson.loads(raw), None)) for k, raw in zip(keys, results)]
        parse_s = time.process_time() - started
        assert all(r.ok for _, r in parsed)

        cache = ResponseCache(Path(tmp) / "c.sqlite")
        store = BatchStore(cache)
        job, _ = store.claim(None, "g", model.id, "openai", "a", [(k, None) for k in keys])
        assert job is not None
        started = time.process_time()
        for start in range(0, len(parsed), 2000):
            store.commit(job.id, [(k, "openai", "test", r) for k, r in parsed[start : start + 2000]])
        commit_s = time.process_time() - started
        cache.close()
    n = len(requests)
    return {"requests": n, "pack_ms": 1000 * pack_s / n, "parse_ms": 1000 * parse_s / n, "commit_ms": 1000 * commit_s / n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, nargs="+", default=[20_000, 100_000])
    parser.add_argument("--poll-s", type=float, default=0.2)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child)
        return
    for cells in args.cells:
        e = end_to_end(cells, args.poll_s)
        s, srv = e["summary"], e["server"]
        print(
            f"{cells:>7,} cells end to end: wall {e['wall_s']:.1f} s, CPU {e['cpu_s']:.1f} s ({1000 * e['cpu_s'] / cells:.3f} ms/cell), "
            f"peak RSS {e['rss_mb']:.0f} MB ({e['scheduler_rss_mb']:.0f} MB up to the scheduler's end); cells done {s['cells_done']:,}, jobs {srv['creates']}, "
            f"duplicates {srv['duplicates']}, inputs left {srv['uploads'] - srv['deletes']}; the server's own CPU {srv['cpu_s']:.1f} s "
            f"(wall outside it ~{e['wall_s'] - srv['cpu_s']:.1f} s); "
            f"the warm rerun (all cache hits): wall {e['warm']['wall_s']:.1f} s, peak RSS {e['warm']['rss_mb']:.0f} MB "
            f"({e['warm']['scheduler_rss_mb']:.0f} MB up to the scheduler's end); "
            f"the batch path's own memory (batch - warm, up to the scheduler's end) {e['scheduler_rss_mb'] - e['warm']['scheduler_rss_mb']:+.0f} MB"
        )
        p = pack_and_parse(cells)
        print(
            f"{cells:>7,} requests: pack {p['pack_ms']:.4f} ms/request, parse {p['parse_ms']:.4f} ms/request "
            f"(pack + parse {p['pack_ms'] + p['parse_ms']:.4f}, target < 0.1), commit {p['commit_ms']:.4f} ms/request"
        )


if __name__ == "__main__":
    main()
