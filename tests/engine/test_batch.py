"""`transport = "batch"` end to end: a real `mtpa-engine run` (subprocess) against the OpenAI Batch test server on
127.0.0.1, driven by the official `openai` SDK, with the server's faults (a job that fails, a job that expires
half done, slow completion, 5xx on retrieve, results out of order, per-request errors) and counts.

Grid: 3 personas x 4 TruthfulQA questions x (baseline + prose) = 4 + 12 = 16 cells, 16 distinct requests."""

from __future__ import annotations

import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import orjson
import polars as pl
import pytest

from engine.results import read_results
from tests.engine.test_run_safety import root_only
from tests.conftest import run_until_killed, write_grid
from engine.testing.servers.anthropic_batch import AnthropicBatchServer
from engine.testing.servers.google_batch import GoogleBatchServer
from engine.testing.servers.openai_batch import BatchState, OpenAIBatchServer
from engine.testing.servers.openai_compat import OpenAICompatServer

KEY = "sk-batch-Q7hT2mVx9LpR4nWc8KzY3bJd6FsG1aEu5oHi"
CELLS = 16
PIECE = 12


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv("MTPA_TEST_KEY", KEY)


def _grid(tmp_path, server, batch: str = "poll_s = 0.05", name: str = "t", personas: int = 3, provider: str = "openai", **more):
    extra = f'api_key_env = "MTPA_TEST_KEY"\ntransport = "batch"\n[models.batch]\n{batch}'
    grid = write_grid(tmp_path, base_url=server.base_url, personas=personas, questions=4, extra_model=extra, **more)
    grid.write_text(grid.read_text().replace('name = "t"', f'name = "{name}"', 1).replace('provider = "openai"', f'provider = "{provider}"'))
    return grid


def _fail_prose(folder) -> None:
    """Every persona's prose says "<<fail:400>>": the servers answer each request holding it with an HTTP 400."""
    (folder / "personas.jsonl").write_text((folder / "personas.jsonl").read_text().replace('"United States"', '"Atlantis <<fail:400>>"'))


def _run(grid, *args, timeout=120):
    proc = subprocess.run([sys.executable, "-m", "engine.cli", "run", str(grid), "--no-progress", *args], capture_output=True, text=True, timeout=timeout)
    return proc


def _summary(tmp_path, grid, *args):
    out = tmp_path / "s.json"
    out.unlink(missing_ok=True)
    proc = _run(grid, "--summary-json", str(out), *args)
    return proc, orjson.loads(out.read_bytes()) if out.exists() else None


def _results(tmp_path, name="t") -> pl.DataFrame:
    return read_results(tmp_path / "out" / name).collect()


def _jobs(tmp_path) -> list[tuple]:
    """(status, provider_status, requests, done) of every job, oldest first; [] before the tables exist."""
    if not (tmp_path / "cache.sqlite").exists():
        return []
    with sqlite3.connect(tmp_path / "cache.sqlite") as db:
        try:
            return db.execute("SELECT status, provider_status, requests, done FROM batch_jobs ORDER BY created_at").fetchall()
        except sqlite3.OperationalError:  # the tables are not created yet
            return []


def _members(tmp_path) -> int:
    with sqlite3.connect(tmp_path / "cache.sqlite") as db:
        return db.execute("SELECT count(*) FROM batch_members").fetchone()[0]


def _after(condition, delay_s: float):
    """A kill predicate: true `delay_s` after `condition` first held."""
    first: list[float] = []

    def until() -> bool:
        if not first and condition():
            first.append(time.monotonic())
        return bool(first) and time.monotonic() - first[0] >= delay_s

    return until


def _kill_when(grid, until) -> bool:
    """Start `mtpa-engine run GRID`, SIGKILL it once `until()` holds; False when it ended first."""
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "run", str(grid), "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        if until():
            proc.send_signal(signal.SIGKILL)
            return proc.wait() == -signal.SIGKILL
        time.sleep(0.002)
    proc.kill()
    proc.wait()
    return False


def test_batch_run_packs_jobs_answers_every_cell_once_and_deletes_its_inputs(tmp_path):
    with OpenAIBatchServer(BatchState(process_s=0.2, shuffle=True, retrieve_5xx_every=3), api_key=KEY) as server:
        grid = _grid(tmp_path, server, "poll_s = 0.05\nmax_requests = 5")
        proc, summary = _summary(tmp_path, grid)
        assert proc.returncode == 0, proc.stderr
        # 16 requests in jobs of at most 5, in plan order: 5 + 5 + 5 + 1.
        assert [r for _, _, r, _ in _jobs(tmp_path)] == [5, 5, 5, 1]
        assert all(status == "closed" and done == n for status, _, n, done in _jobs(tmp_path))
        assert server.batch.creates == 4 and server.batch.uploads == 4
        assert server.batch.duplicates() == 0 and len(server.batch.submitted) == CELLS
        assert server.batch.live_files("batch") == []  # every uploaded input deleted once its job ended
        assert server.state.requests == 0  # no online call
        assert summary["cells_done"] == CELLS and summary["errors_total"] == 0 and summary["model_calls"] == CELLS
        assert summary["batch"] == {
            "jobs_submitted": 4, "jobs_resumed": 0, "jobs_in_progress": 0, "jobs_done": 4, "requests_submitted": 16, "requests_resumed": 0, "requests_done": 16, "failed_jobs": [],
        }
        assert _members(tmp_path) == 0
        batch_rows = _results(tmp_path).sort("cell_id")

        # A rerun is all cache hits; `batches list` shows the four closed jobs.
        proc, summary = _summary(tmp_path, grid)
        assert proc.returncode == 0 and summary["cache_hits"] == CELLS and summary["batch"]["jobs_submitted"] == 0
        assert "batch jobs" not in proc.stdout  # no job this run: no batch line
        listed = subprocess.run([sys.executable, "-m", "engine.cli", "batches", "list", str(grid), "--json"], capture_output=True, text=True)
        jobs = orjson.loads(listed.stdout)
        table = subprocess.run([sys.executable, "-m", "engine.cli", "batches", "list", str(grid)], capture_output=True, text=True).stdout
        assert "…" not in table and all(j["remote_id"] in table for j in jobs)  # whole ids, to copy into `batches cancel`
        assert [j["requests"] for j in jobs] == [5, 5, 5, 1] and {j["grid"] for j in jobs} == {"t"}

    # The same cells online, on a fresh cache: the same answers, and the same cache keys.
    online = tmp_path / "online"
    online.mkdir()
    with OpenAICompatServer(api_key=KEY) as plain:
        grid2 = write_grid(online, base_url=plain.base_url, personas=3, questions=4, extra_model='api_key_env = "MTPA_TEST_KEY"')
        assert _run(grid2).returncode == 0
    online_rows = _results(online).sort("cell_id")
    assert batch_rows["response"].to_list() == online_rows["response"].to_list()
    assert batch_rows["p_gold"].to_list() == online_rows["p_gold"].to_list()
    assert batch_rows["key"].to_list() != online_rows["key"].to_list()  # two endpoints: two identities


def test_a_batch_answer_and_an_online_answer_are_one_cache_entry(tmp_path):
    with OpenAIBatchServer(BatchState(process_s=0.1), api_key=KEY) as server:
        grid = _grid(tmp_path, server)
        assert _run(grid).returncode == 0
        keys = set(_results(tmp_path)["key"].to_list())
        # The same grid online, against the same endpoint: every cell a cache hit, no call made.
        grid.write_text(grid.read_text().replace('transport = "batch"', 'transport = "aiohttp"').replace("[models.batch]\npoll_s = 0.05", ""))
        proc, summary = _summary(tmp_path, grid)
        assert proc.returncode == 0, proc.stderr
        assert summary["cache_hits"] == CELLS and server.state.requests == 0
        assert set(_results(tmp_path)["key"].to_list()) == keys


def test_a_cell_answered_by_this_runs_job_is_no_cache_hit(tmp_path):
    """1 persona (8 cells) answered by a first run; then 3 personas (16 cells): the first 8 are cache hits (cached
    rows), the 8 new ones come from this run's job: model calls, not hits, `cached` false."""
    with OpenAIBatchServer(BatchState(process_s=0.05), api_key=KEY) as server:
        proc, summary = _summary(tmp_path, _grid(tmp_path, server, personas=1))
        assert proc.returncode == 0 and summary["model_calls"] == 8 and summary["cache_hits"] == 0, proc.stderr
        first = set(_results(tmp_path)["key"].to_list())
        proc, summary = _summary(tmp_path, _grid(tmp_path, server, personas=3))
        assert proc.returncode == 0, proc.stderr
        assert summary["cells_done"] == CELLS and summary["cache_hits"] == 8 and summary["model_calls"] == 8
        rows = _results(tmp_path)
        assert sorted(rows.filter(pl.col("cached"))["key"].to_list()) == sorted(first)
        assert server.batch.duplicates() == 0 and len(server.batch.submitted) == CELLS


def test_failed_job_expired_half_and_per_request_errors_become_cell_errors_resubmitted_next_run(tmp_path):
    state = BatchState(process_s=0.1, fail_jobs={1}, expire_jobs={2})
    with OpenAIBatchServer(state, api_key=KEY) as server:
        grid = _grid(tmp_path, server, "poll_s = 0.05\nmax_requests = 8")
        _fail_prose(tmp_path)
        proc, summary = _summary(tmp_path, grid)
        # Plan order: cells 0-3 baseline, 4-15 prose (persona by persona). Job 1 (cells 0-7) fails validation: 8
        # batch_failed. Job 2 (cells 8-15) expires with the first half done: cells 8-11 answered HTTP 400 lines,
        # cells 12-15 batch_expired lines.
        assert proc.returncode == 0, proc.stderr
        assert summary["errors"] == {"batch_failed": 8, "bad_request": 4, "expired": 4}
        rows = _results(tmp_path).sort("cell")
        assert rows["error_kind"].to_list() == ["batch_failed"] * 8 + ["bad_request"] * 4 + ["expired"] * 4
        assert rows["error"][:8].str.contains("injected validation failure of job 1").all()
        assert rows["error"][8:12].str.contains("injected failure 400").all()
        assert rows["error"][12:].str.contains("batch_expired").all()
        assert not rows["error"].str.contains(KEY[:PIECE]).any() and not rows["error"].str.contains(KEY[-PIECE:]).any()
        assert [(s, p) for s, p, _, _ in _jobs(tmp_path)] == [("closed", "failed"), ("closed", "expired")]
        assert len(summary["batch"]["failed_jobs"]) == 2 and _members(tmp_path) == 0

        # Rerun: every failed cell is submitted again (16, in jobs 3 and 4); the baseline answers, prose is 400.
        proc, summary = _summary(tmp_path, grid)
        assert proc.returncode == 0, proc.stderr
        assert summary["batch"]["requests_submitted"] == 16 and summary["errors"] == {"bad_request": 12}
        # The server ran cells 8-15 twice (job 2, then now) and job 1's cells once: it never ran them.
        assert server.batch.duplicates() == 8

        # Third run: only the twelve 400s again.
        proc, summary = _summary(tmp_path, grid)
        assert summary["batch"]["requests_submitted"] == 12 and summary["cache_hits"] == 4
    with sqlite3.connect(tmp_path / "cache.sqlite") as db:
        text = "\n".join(str(r) for t in ("batch_jobs", "errors") for r in db.execute(f"SELECT * FROM {t}"))
    assert KEY[:PIECE] not in text and KEY[-PIECE:] not in text


def test_budget_counts_submitted_requests_at_their_estimated_batch_cost(tmp_path):
    with OpenAIBatchServer(BatchState(process_s=0.05), api_key=KEY) as server:
        grid = _grid(tmp_path, server, "poll_s = 0.05\ninput_price = 1000.0\noutput_price = 0.0")
        # A chunk of the 16 requests costs far more than $0.01 at $1,000 per million input tokens: nothing is submitted.
        proc, summary = _summary(tmp_path, grid, "--budget", "0.01")
        assert proc.returncode == 75 and summary["budget_exhausted"] and server.batch.creates == 0 and summary["cells_done"] == 0
        assert "budget of $0.01 reached" in proc.stderr
        # A budget that covers the first 5 requests in plan order (each at its estimated cost): exactly those go.
        from engine.grid import load_grid
        from engine.limits import estimate_prompt_tokens
        from engine.runner import prepare

        plan, _ = prepare(load_grid(grid))
        costs = [estimate_prompt_tokens(plan.request(c)) * 1000.0 / 1e6 for c in plan]
        proc, summary = _summary(tmp_path, grid, "--budget", repr(sum(costs[:5]) + min(costs) / 2))
        assert proc.returncode == 75 and summary["batch"]["requests_submitted"] == 5 and summary["cells_done"] == 5
        assert f"budget of ${sum(costs[:5]) + min(costs) / 2:.3g} reached" in proc.stderr  # not rounded to cents
        proc, summary = _summary(tmp_path, grid, "--budget", "100")
        assert proc.returncode == 0 and summary["cells_done"] == CELLS and server.batch.creates == 2


def test_a_job_of_another_grid_is_left_alone_and_cancel_ends_a_job(tmp_path):
    with OpenAIBatchServer(BatchState(process_s=600), api_key=KEY) as server:
        other = tmp_path / "other.toml"
        other.write_text(_grid(tmp_path, server, name="other").read_text())
        run_until_killed(other, lambda: ("submitted", None, CELLS, 0) in _jobs(tmp_path))
        retrieves = server.batch.retrieves
        mine = _grid(tmp_path, server, name="t")
        proc, summary = _summary(tmp_path, mine)
        # Every request is in the other grid's live job: not submitted again, not polled, not cancelled.
        assert proc.returncode == 0, proc.stderr
        assert summary["errors"] == {"batch_elsewhere": CELLS} and server.batch.creates == 1
        assert server.batch.retrieves == retrieves and server.batch.duplicates() == 0
        assert _results(tmp_path)["error"].str.contains("of grid 'other'").all()

        # `batches cancel --all --grid other`, then the other grid's run collects it: half done, half cancelled.
        listed = subprocess.run([sys.executable, "-m", "engine.cli", "batches", "cancel", "--all", "--grid", str(other)], capture_output=True, text=True)
        assert listed.returncode == 0 and "cancelling" in listed.stdout, listed.stderr
        proc, summary = _summary(tmp_path, other)
        assert proc.returncode == 0, proc.stderr
        assert summary["errors"] == {"cancelled": CELLS - CELLS // 2} and summary["model_calls"] == CELLS
        assert server.batch.live_files("batch") == [] and _members(tmp_path) == 0


def _kill_at_random_instants(tmp_path, server, phases: dict, kills: int, provider: str = "openai") -> tuple:
    """SIGKILL `mtpa-engine run` `kills` times (at most 24 tries), each at a random instant after a phase began
    (`phases`: name -> predicate on the server's counts before the try), then rerun it to completion and check:
    every cell answered, no request submitted twice (the server counts), every input file deleted, no
    membership left, every job closed, the cache intact. Each round of the phases grows the grid by 20 personas
    (80 cells), so every phase has work left to be killed in however fast the earlier rounds went (with one
    fixed grid the runs often finished first). Returns the phases killed in."""
    rng = random.Random(18)
    b = server.batch
    killed: list[str] = []
    for i in range(24):
        name = list(phases)[i % len(phases)]
        if name == "start":  # a new round: 20 personas more (the first: 4 + 80 cells, 17 jobs of at most 5)
            personas = 20 * (i // len(phases) + 1)
            grid = _grid(tmp_path, server, "poll_s = 0.05\nmax_requests = 5", personas=personas, provider=provider)
            cells = 4 + personas * 4
        counts = {"uploads": b.uploads, "creates": b.creates, "retrieves": b.retrieves, "downloads": b.downloads}
        delay = rng.uniform(0.0, 1.0) if name == "start" else rng.uniform(0.0, 0.08)
        if _kill_when(grid, _after(lambda name=name, counts=counts: phases[name](counts), delay)):
            killed.append(name)
        if len(killed) == kills:
            break
    proc, summary = _summary(tmp_path, grid)
    assert proc.returncode == 0, proc.stderr
    rows = _results(tmp_path)
    assert rows.height == cells and rows["status"].to_list() == ["ok"] * cells
    assert b.duplicates() == 0 and set(rows["key"].to_list()) <= set(b.submitted)  # earlier rounds' grids differ
    assert b.live_files("batch") == []
    assert _members(tmp_path) == 0 and all(s == "closed" for s, *_ in _jobs(tmp_path))
    with sqlite3.connect(tmp_path / "cache.sqlite") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".batch-")] == []
    return killed


@pytest.mark.slow
def test_sigkill_at_random_instants_then_rerun_answers_every_cell_submitting_nothing_twice(tmp_path):
    """12 SIGKILLs of `mtpa-engine run` across the OpenAI batch life cycle (start-up and packing, upload, create,
    polling, collecting), then a rerun to completion (checks: `_kill_at_random_instants`)."""
    state = BatchState(process_s=0.3, retrieve_5xx_every=5, shuffle=True)
    with OpenAIBatchServer(state, api_key=KEY) as server:
        b = server.batch
        phases = {
            "start": lambda n: True,
            "upload": lambda n: b.uploads > n["uploads"],
            "create": lambda n: b.creates > n["creates"],
            "poll": lambda n: b.retrieves > n["retrieves"] + 1,
            "collect": lambda n: b.downloads > n["downloads"],
        }
        killed = _kill_at_random_instants(tmp_path, server, phases, kills=12)
    assert len(killed) >= 10 and {"upload", "create", "poll", "collect"} <= set(killed), killed


@pytest.mark.slow
def test_anthropic_sigkill_at_random_instants_then_rerun_answers_every_cell_submitting_nothing_twice(tmp_path):
    """6 SIGKILLs across the Message Batches life cycle (start-up and packing, create, polling, collecting), for
    the provider whose recovery of an unrecorded create leans on the batch's results (engine.batch.anthropic's
    `find`), then a rerun to completion (checks: `_kill_at_random_instants`)."""
    state = BatchState(process_s=0.3, retrieve_5xx_every=5, shuffle=True)
    with AnthropicBatchServer(state, api_key=KEY) as server:
        b = server.batch
        phases = {
            "start": lambda n: True,
            "create": lambda n: b.creates > n["creates"],
            "poll": lambda n: b.retrieves > n["retrieves"] + 1,
            "collect": lambda n: b.downloads > n["downloads"],
        }
        killed = _kill_at_random_instants(tmp_path, server, phases, kills=6, provider="anthropic")
    assert len(killed) >= 4 and {"create", "poll", "collect"} <= set(killed), killed


@root_only
def test_a_full_disk_stops_a_batch_run_with_one_line_and_the_rerun_submits_nothing_twice(tmp_path):
    """The cache (and so the spool files and job tables) on a 256 KiB tmpfs: the batch run stops with exit 74 and
    one line naming the file (the cache or a spool file), without a traceback; the same grid on a roomy disk with the kept cache answers
    every cell, no request submitted twice, every uploaded input deleted."""
    disk = tmp_path / "disk"
    disk.mkdir()
    with OpenAIBatchServer(BatchState(process_s=0.05), api_key=KEY) as server:
        grid = _grid(disk, server, "poll_s = 0.05\nmax_requests = 20", personas=8)
        grid.write_text(grid.read_text().replace("limit = 4", "limit = 30", 1))  # 30 questions: 270 cells
        shutil.move(disk / "personas.jsonl", tmp_path / "personas.jsonl")
        text = grid.read_text().replace('"cache.sqlite"', '"disk/cache.sqlite"').replace('output_dir = "out/{name}"', 'output_dir = "disk/out/{name}"')
        grid.unlink()
        grid = tmp_path / "grid.toml"
        grid.write_text(text)
        script = f"mount -t tmpfs -o size=256k tmpfs {disk} && timeout 120 {sys.executable} -m engine.cli run {grid} --no-progress; rc=$?; cp {disk}/cache.sqlite* {tmp_path}/; exit $rc"
        proc = subprocess.run(["unshare", "-m", "bash", "-c", script], capture_output=True, text=True, timeout=180)
        assert proc.returncode == 74 and "Traceback" not in proc.stderr, proc.stderr
        # The file that met the full disk first: the cache, or the spool file of the job being packed.
        assert proc.stderr.count("\n") == 1 and proc.stderr.startswith(f"error: {disk}/") and "rerun to resume" in proc.stderr, proc.stderr
        assert "database or disk is full" in proc.stderr or "No space left on device" in proc.stderr
        assert server.batch.creates >= 1

        grid.write_text(grid.read_text().replace("disk/", ""))
        proc, summary = _summary(tmp_path, grid)
        assert proc.returncode == 0, proc.stderr
        assert summary["cells_done"] == 270 and summary["errors"] == {} and server.batch.duplicates() == 0
        assert server.batch.live_files("batch") == [] and _members(tmp_path) == 0


def test_batch_price_is_half_the_online_price_unless_overridden():
    from engine.config import BatchConfig, ModelConfig
    from engine.pricing import batch_price, online_price, price_for

    online = ModelConfig(id="m", provider="openai", model="gpt-4o-mini")  # list price $0.15 / $0.60 per M tokens
    batch = ModelConfig(id="m", provider="openai", model="gpt-4o-mini", transport="batch")
    assert price_for(online) == online_price(batch) == (0.15, 0.60)
    assert price_for(batch) == batch_price(online) == (0.075, 0.30)
    custom = ModelConfig(id="m", provider="openai", model="gpt-4o-mini", transport="batch", batch=BatchConfig(input_price=0.1))
    assert price_for(custom) == (0.1, 0.30)
    assert price_for(ModelConfig(id="m", provider="openai", model="unlisted", transport="batch")) is None


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ('provider = "local"\nmodel = "x"\ntransport = "batch"', "models[0].transport: \"batch\" is offered for providers openai, anthropic, google, not 'local'"),
        ('provider = "openai"\nmodel = "x"\n[models.batch]\npoll_s = 5', 'models[0].batch: applies only to transport = "batch"'),
        ('provider = "openai"\nmodel = "x"\ntransport = "batch"\n[models.batch]\nmax_requests = 50001', "models[0].batch.max_requests: expected an integer in [1, 50,000], got 50,001"),
        ('provider = "openai"\nmodel = "x"\ntransport = "batch"\n[models.batch]\ncompletion_window = "1h"', "models[0].batch.completion_window: OpenAI offers only \"24h\", got '1h'"),
    ],
)
def test_bad_batch_keys_are_one_line_exit_2(tmp_path, model, message):
    (tmp_path / "grid.toml").write_text(f'[run]\nname = "t"\n\n[[benchmarks]]\nname = "truthfulqa"\n\n[[models]]\nid = "m"\n{model}\n\n[[conditions]]\nname = "baseline"\n')
    proc = _run(tmp_path / "grid.toml")
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_summary_conditions_go_in_two_rounds_summaries_then_the_answers_built_on_them(tmp_path):
    """A summary = true condition's answer can be asked only once its persona summary exists: round 1 submits the
    4 baseline answers and the 3 personas' summaries (one job of 7), round 2 the 12 answers built on them (one
    job of 4: the test server summarises every persona as "A", so the 12 are 4 distinct requests, each asked
    once), and the rows are written from the cache. A summary answered with an error is written on each of
    its cells as summary_<kind> and not asked again in the run."""
    conditions = '[[conditions]]\nname = "baseline"\n\n[[conditions]]\nname = "summ"\nformat = "prose"\nsummary = true\n'
    with OpenAIBatchServer(BatchState(process_s=0.05), api_key=KEY) as server:
        grid = _grid(tmp_path, server, conditions=conditions)
        proc, summary = _summary(tmp_path, grid)
        assert proc.returncode == 0, proc.stderr
        assert [r for _, _, r, _ in _jobs(tmp_path)] == [7, 4] and server.batch.duplicates() == 0
        assert summary["cells_done"] == CELLS and summary["errors"] == {} and summary["model_calls"] == 11 and summary["cache_hits"] == 0
        rows = _results(tmp_path)
        assert rows.filter(pl.col("condition") == "summ")["summary"].null_count() == 0 and not rows["cached"].any()
        proc, summary = _summary(tmp_path, grid)
        assert summary["cache_hits"] == CELLS and summary["batch"]["jobs_submitted"] == 0 and _results(tmp_path)["cached"].all()

    failing = tmp_path / "failing"
    failing.mkdir()
    with OpenAIBatchServer(BatchState(process_s=0.05), api_key=KEY) as server:
        grid = _grid(failing, server, conditions=conditions)
        _fail_prose(failing)
        proc, summary = _summary(failing, grid)
        assert proc.returncode == 0, proc.stderr
        assert [r for _, _, r, _ in _jobs(failing)] == [7] and summary["errors"] == {"bad_request": 3}
        rows = _results(failing).sort("cell")
        assert rows["error_kind"].to_list() == [None] * 4 + ["summary_bad_request"] * 12


def test_no_piece_of_the_key_in_any_file_job_table_or_output(tmp_path):
    """As tests/engine/providers/test_key_never_written.py, for batch: the server echoes the key in a failed
    job's message and in every per-request error line; no 12-character piece of it may reach the cache (its
    job tables included), the run folder, a spool file, stdout/stderr or `batches list`."""
    from tests.engine.providers.test_key_never_written import _text_of

    with OpenAIBatchServer(BatchState(process_s=0.05, fail_jobs={1}), api_key=KEY) as server:
        grid = _grid(tmp_path, server, "poll_s = 0.05\nmax_requests = 4")
        _fail_prose(tmp_path)
        proc, summary = _summary(tmp_path, grid)
        assert proc.returncode == 0, proc.stderr
        assert summary["errors"] == {"batch_failed": 4, "bad_request": 12}
        listed = subprocess.run([sys.executable, "-m", "engine.cli", "batches", "list", str(grid), "--json"], capture_output=True, text=True)
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p.name not in ("grid.toml", "personas.jsonl")]
    haystack = {str(p.relative_to(tmp_path)): _text_of(p) for p in written}
    haystack |= {"stdout": proc.stdout, "stderr": proc.stderr, "list": listed.stdout + listed.stderr}
    pieces = {KEY[i : i + PIECE] for i in range(len(KEY) - PIECE + 1)}
    assert sorted((name, piece) for name, text in haystack.items() for piece in pieces if piece in text) == []
    assert "[redacted]" in "".join(text for name, text in haystack.items() if name.startswith("cache.sqlite"))
    assert [j["provider_status"] for j in orjson.loads(listed.stdout)] == ["failed", "completed", "completed", "completed"]


def test_a_job_the_provider_refuses_ends_as_cell_errors_and_the_next_run_submits_it(tmp_path):
    state = BatchState(process_s=0.05, max_file_bytes=1000)  # every 16-request input file is larger: HTTP 413
    with OpenAIBatchServer(state, api_key=KEY) as server:
        grid = _grid(tmp_path, server)
        proc, summary = _summary(tmp_path, grid)
        assert proc.returncode == 0, proc.stderr
        assert summary["errors"] == {"bad_request": CELLS} and server.batch.creates == 0
        assert _results(tmp_path)["error"].str.contains("batch job not accepted: HTTP 413").all()
        assert [(s, p) for s, p, *_ in _jobs(tmp_path)] == [("closed", "refused")] and _members(tmp_path) == 0
        state.max_file_bytes = 10**9
        proc, summary = _summary(tmp_path, grid)
        assert summary["errors"] == {} and summary["cells_done"] == CELLS and server.batch.duplicates() == 0


def test_anthropic_message_batches_expired_errored_out_of_order_then_resumed_after_a_kill(tmp_path):
    """Anthropic through the official SDK: job 1 (8 requests) expires with its first half done; the prose cells'
    "<<fail:400>>" come back as errored results (bad_request); results out of order, a 5xx on every third
    retrieve. Reruns submit again only the requests that failed."""
    state = BatchState(process_s=0.1, expire_jobs={1}, shuffle=True, retrieve_5xx_every=3)
    with AnthropicBatchServer(state, api_key=KEY) as server:
        grid = _grid(tmp_path, server, "poll_s = 0.05\nmax_requests = 8", provider="anthropic")
        proc, summary = _summary(tmp_path, grid)
        assert proc.returncode == 0, proc.stderr
        # Job 1: cells 0-7 (shuffled; the first 4 of the shuffled order answered, the other 4 expired), job 2: 8-15.
        assert summary["errors"].get("expired") == 4 and summary["cells_done"] == CELLS
        assert summary["batch"]["jobs_submitted"] == 2 and server.batch.duplicates() == 0
        # Only the job with expired requests is reported: Anthropic's "ended" is its normal end.
        assert len(summary["batch"]["failed_jobs"]) == 1 and "4 expired" in summary["batch"]["failed_jobs"][0]
        expired = set(_results(tmp_path).filter(pl.col("error_kind") == "expired")["key"].to_list())
        proc, summary = _summary(tmp_path, grid)
        assert summary["batch"]["requests_submitted"] == 4 and summary["errors"] == {}
        assert {k for k, n in server.batch.submitted.items() if n > 1} == expired


def test_gemini_batch_mode_inline_requests_errors_expired_job_and_resume_after_a_kill(tmp_path):
    """Gemini through google-genai: inline requests with the cache key in each request's metadata; job 1 (8
    requests) expires (Gemini returns no output for it: 8 expired); the prose cells' "<<fail:400>>" come back
    as error entries; a 5xx on every third get."""
    state = BatchState(process_s=0.1, expire_jobs={1}, shuffle=True, retrieve_5xx_every=3)
    with GoogleBatchServer(state, api_key=KEY) as server:
        grid = _grid(tmp_path, server, "poll_s = 0.05\nmax_requests = 8", provider="google")
        _fail_prose(tmp_path)
        proc, summary = _summary(tmp_path, grid)
        assert proc.returncode == 0, proc.stderr
        # Job 1: cells 0-7 expired (8); job 2: cells 8-15, all prose: 8 HTTP 400 entries.
        assert summary["errors"] == {"expired": 8, "bad_request": 8} and server.batch.duplicates() == 0
        # The expired job is reported; the one that ended JOB_STATE_SUCCEEDED (with per-request errors) is not.
        (failed,) = summary["batch"]["failed_jobs"]
        assert "JOB_STATE_EXPIRED" in failed
        rows = _results(tmp_path).sort("cell")
        assert rows["error_kind"].to_list() == ["expired"] * 8 + ["bad_request"] * 8
        assert rows["error"][:8].str.contains("JOB_STATE_EXPIRED").all()
        proc, summary = _summary(tmp_path, grid)
        # All 16 again: the 4 baseline cells answer now, the 12 prose cells are 400s.
        assert summary["batch"]["requests_submitted"] == 16 and summary["errors"] == {"bad_request": 12}


@pytest.mark.parametrize(("provider", "server_class"), [("anthropic", AnthropicBatchServer), ("google", GoogleBatchServer)])
def test_killed_right_after_a_create_resumes_without_submitting_twice(tmp_path, provider, server_class):
    """A SIGKILL right after the first create (before or after its id is recorded), then a rerun: the job is
    found at the provider (Anthropic: by its results once it ended; Gemini: by its displayName), every cell
    answered, no request submitted twice."""
    with server_class(BatchState(process_s=0.3), api_key=KEY) as server:
        grid = _grid(tmp_path, server, "poll_s = 0.05\nmax_requests = 8", provider=provider)
        assert _kill_when(grid, lambda: server.batch.creates >= 1)
        proc, summary = _summary(tmp_path, grid)
        assert proc.returncode == 0, proc.stderr
        assert summary["cells_done"] == CELLS and summary["errors"] == {} and server.batch.duplicates() == 0
        assert summary["batch"]["failed_jobs"] == []  # a job that ran to its normal end is no failure
        assert _members(tmp_path) == 0 and all(s == "closed" for s, *_ in _jobs(tmp_path))


def test_progress_line_and_dry_run_cost_online_beside_batch(tmp_path):
    from engine.batch import BatchStats
    from engine.dryrun import dry_run
    from engine.grid import load_grid
    from engine.progress import batch_line

    stats = BatchStats(jobs_submitted=3, jobs_in_progress=2, jobs_done=1, requests_submitted=150, requests_done=50, next_poll_at=130.0)
    assert batch_line(stats, now=100.0) == "batch jobs 3 submitted / 2 in progress / 1 done, requests 50/150 done, next poll in 30s"
    resumed = BatchStats(jobs_resumed=3, jobs_done=3, requests_resumed=12, requests_done=12)  # a rerun collecting a killed run's jobs
    assert batch_line(resumed) == "batch jobs 0 submitted + 3 resumed / 0 in progress / 3 done, requests 12/12 done"

    grid = write_grid(tmp_path, base_url="http://127.0.0.1:9/v1", personas=3, questions=4, extra_model='transport = "batch"')
    grid.write_text(grid.read_text().replace('model = "test"', 'model = "gpt-4o-mini"'))
    (e,) = [m for m in dry_run(load_grid(grid)).models if m.model == "m"]
    # gpt-4o-mini: $0.15 / $0.60 per million tokens online, half in batch; max_tokens 4 per call.
    assert e.calls == CELLS and e.max_output_tokens == 4 * CELLS
    assert e.usd_online == (e.input_tokens * 0.15 + e.max_output_tokens * 0.60) / 1e6
    assert e.usd_batch == (e.input_tokens * 0.075 + e.max_output_tokens * 0.30) / 1e6 == e.usd
    proc = subprocess.run([sys.executable, "-m", "engine.cli", "run", str(grid), "--dry-run"], capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
    header = next(line for line in proc.stdout.splitlines() if "usd_online" in line)
    assert proc.returncode == 0 and header.index("usd") < header.index("usd_online") < header.index("usd_batch"), proc.stdout


def test_two_runs_over_one_cache_never_submit_a_request_twice(tmp_path):
    """Two processes of one grid (two output folders, one cache) started together: the keys each claims are
    its own (one SQLite transaction), the other waits for them and both collect; every cell answered in both."""
    with OpenAIBatchServer(BatchState(process_s=0.3), api_key=KEY) as server:
        grid = _grid(tmp_path, server, "poll_s = 0.05\nmax_requests = 3", personas=6)  # 4 + 24 = 28 cells
        text = grid.read_text()
        grids = []
        for name in ("a", "b"):
            path = tmp_path / f"{name}.toml"
            path.write_text(text.replace('output_dir = "out/{name}"', f'output_dir = "out/{name}"'))
            grids.append(path)
        procs = [subprocess.Popen([sys.executable, "-m", "engine.cli", "run", str(g), "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for g in grids]
        errs = [p.communicate(timeout=120)[1] for p in procs]
        assert [p.returncode for p in procs] == [0, 0], errs
        assert server.batch.duplicates() == 0 and len(server.batch.submitted) == 28
        assert server.batch.live_files("batch") == []
    for name in ("a", "b"):
        rows = read_results(tmp_path / "out" / name).collect()
        assert rows.height == 28 and rows["status"].to_list() == ["ok"] * 28


def test_ctrl_c_while_waiting_exits_130_and_the_rerun_polls_the_same_jobs(tmp_path):
    with OpenAIBatchServer(BatchState(process_s=600), api_key=KEY) as server:
        grid = _grid(tmp_path, server, "poll_s = 0.05\nmax_requests = 8")
        proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "run", str(grid), "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while [s for s, *_ in _jobs(tmp_path)] != ["submitted", "submitted"] and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)  # polling
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 130 and "rerun the same command to resume" in err, err
        assert [s for s, *_ in _jobs(tmp_path)] == ["submitted", "submitted"] and _members(tmp_path) == CELLS
        for bid in server.batch.ready_at:
            server.batch.ready_at[bid] = 0.0  # the jobs finish now
        proc, summary = _summary(tmp_path, grid)
        assert proc.returncode == 0 and summary["cells_done"] == CELLS and summary["batch"]["jobs_submitted"] == 0
        assert (summary["batch"]["jobs_resumed"], summary["batch"]["requests_resumed"], summary["batch"]["requests_done"]) == (2, CELLS, CELLS)
        assert f"requests {CELLS}/{CELLS} done" in proc.stdout
        assert server.batch.creates == 2 and server.batch.duplicates() == 0 and server.batch.live_files("batch") == []


def test_claim_leaves_out_a_key_another_run_answered_since_the_lookup(tmp_path):
    """The race two runs over one cache had: run B looked a key up (a miss), run A committed its answer and
    released its membership, then B claimed it and submitted it a second time. The claim's own transaction now
    checks the responses: such a key comes back as ANSWERED (a cache hit), and is not put in B's job."""
    from engine.batch.store import ANSWERED, BatchStore
    from engine.cache import ResponseCache
    from engine.request import Response

    cache = ResponseCache(tmp_path / "cache.sqlite")
    try:
        cache.write([("k1", "openai", "x", Response(text="A"))])
        store = BatchStore(cache)
        job, held = store.claim(None, "t", "m", "openai", "acct", [("k1", None), ("k2", None)])
        assert held == {"k1": ANSWERED} and job is not None
        assert list(store.members(job.id)) == ["k2"] and store.job(job.id).requests == 1
    finally:
        cache.close()


def test_anthropic_find_is_exact_between_close_jobs_and_another_grids_batch(tmp_path):
    """A Message Batch carries no tag of ours: after a kill between create and recording its id, `find` picks
    among the batches created since the job's claim with its request count, and only its results' custom_ids
    tell which is which. Jobs A and B (4 requests each) are created together with another grid's batch C of 4;
    job D (4) and job E (5) never were. While the three run nobody can tell (Undecided; E has no candidate at
    all); once they end each job finds its own, D none, and a batch recorded for another job is never taken."""
    import asyncio

    from engine.batch import Undecided
    from engine.batch.anthropic import AnthropicBatch
    from engine.batch.store import Job
    from engine.config import ModelConfig
    from engine.providers import create_provider

    def job(name: str, keys: list[str], claimed: float) -> Job:
        return Job(name, "t", "m", "anthropic", "acct", None, None, "new", None, None, len(keys), 0, "host:1", claimed, None, None)

    def spool(keys: list[str]):
        path = tmp_path / f"{keys[0]}.jsonl"
        params = {"model": "claude-x", "max_tokens": 4, "messages": [{"role": "user", "content": "Q?\nA. yes\nB. no"}]}
        path.write_bytes(b"".join(orjson.dumps({"custom_id": k, "params": params}) + b"\n" for k in keys))
        return path

    keys = {name: [f"{name}{i}" for i in range(5 if name == "e" else 4)] for name in "abcde"}
    with AnthropicBatchServer(BatchState(process_s=0.3), api_key=KEY) as server:
        config = ModelConfig(id="m", provider="anthropic", model="claude-x", base_url=server.base_url, transport="batch", api_key_env="MTPA_TEST_KEY")
        transport = AnthropicBatch(create_provider(config))  # type: ignore[arg-type]

        async def scenario() -> None:
            claimed = time.time()
            jobs = {name: job(name, keys[name], claimed) for name in "abde"}
            ids = {name: await transport.create(name, None, spool(keys[name])) for name in "abc"}

            async def find(name: str, taken=lambda remote: False):
                return await transport.find(jobs[name], taken, lambda: set(keys[name]))

            for name in "abd":
                with pytest.raises(Undecided):
                    await find(name)
            assert await find("e") == (None, None)  # no batch of 5: never created, known at once
            await asyncio.sleep(0.35)  # every batch ends
            assert await find("a") == (ids["a"], None) and await find("b") == (ids["b"], None)
            assert await find("d") == (None, None)  # C is another grid's: its custom_ids are not D's
            assert await find("a", taken=lambda remote: remote == ids["a"]) == (None, None)
            late = job("a", keys["a"], time.time() + 120)  # claimed after every batch was created: none can be it
            assert await transport.find(late, lambda remote: False, lambda: set(keys["a"])) == (None, None)
            await transport.aclose()

        asyncio.run(scenario())
        assert server.batch.creates == 3
