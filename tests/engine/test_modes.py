"""PERSONA Bench's generation modes as conditions: `reasoning = true`, `summary = true`, the `persona_fit` rubric.

Plans are built from real grid files; runs go through `mtpa-engine run` against the wire-exact OpenAI test
server on 127.0.0.1, which counts every request and keeps its prompt (engine.testing.servers.common).
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import textwrap

import orjson
import polars as pl
import pytest

from bench_adapters.base import Item
from bench_adapters.modes import REASONING_TOKENS, reasoning_prompt, split
from bench_adapters.rubric import load_rubric
from engine.grid import GridError, load_grid
from engine.plan import Plan
from engine.request import Response
from tests.conftest import EXAMPLE_PERSONAS, run_until_killed
from engine.testing.servers.openai_compat import OpenAICompatServer

SUMMARY_MARK = "Write a short summary of this person"
SUMMARISED = "You are answering as the person summarised here:"
# Three questions, options in file order (the dataset adapter keeps them): gold B, A, C.
DATA = [
    {"id": "q1", "question": "Which is a fruit?", "options": ["Carrot", "Apple", "Potato"], "gold": 1},
    {"id": "q2", "question": "Which is a colour?", "options": ["Red", "Seven", "Tuesday"], "gold": 0},
    {"id": "q3", "question": "Which is a planet?", "options": ["Moon", "Sun", "Mars"], "gold": 2},
]


def _grid(tmp_path, conditions: str, *, base_url: str = "http://127.0.0.1:1/v1", benchmark: str = "", personas: int = 2, concurrency: int = 4, judge_url: str | None = None):
    shutil.copy(EXAMPLE_PERSONAS, tmp_path / "personas.jsonl")
    (tmp_path / "items.jsonl").write_text("".join(orjson.dumps(r).decode() + "\n" for r in DATA))
    benchmark = benchmark or 'name = "dataset"\npath = "items.jsonl"\nquestion_field = "question"\noptions_field = "options"\ngold_field = "gold"\nid_field = "id"\n'
    judge = ""
    if judge_url:
        judge = f'[judge]\n[judge.model]\nid = "grader"\nprovider = "openai"\nmodel = "test"\nbase_url = "{judge_url}"\n[judge.model.limits]\nmax_retries = 0\n'
    grid = tmp_path / "grid.toml"
    grid.write_text(
        textwrap.dedent(
            f"""
            [run]
            name = "modes"
            output_dir = "out/{{name}}"

            [personas]
            source = "personas.jsonl"
            limit = {personas}

            [[models]]
            id = "m"
            provider = "openai"
            model = "test"
            base_url = "{base_url}"
            [models.limits]
            concurrency = {concurrency}
            max_retries = 0
            timeout_s = 10
            """
        )
        + f"\n[[benchmarks]]\n{benchmark}\n{judge}\n{conditions}"
    )
    return grid


def _run(grid, *args) -> dict:
    cmd = [sys.executable, "-m", "engine.cli", "run", str(grid), "--no-progress", "--summary-json", str(grid.parent / "s.json"), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return orjson.loads((grid.parent / "s.json").read_bytes())


def _results(grid) -> pl.DataFrame:
    return pl.read_parquet(grid.parent / "out" / "modes" / "results" / "*.parquet").sort("cell")


def _grid_error(grid) -> str:
    proc = subprocess.run([sys.executable, "-m", "engine.cli", "run", str(grid), "--no-progress"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert not (grid.parent / "out").exists(), "nothing written"
    return " ".join(proc.stderr.split())


REASONING = '[[conditions]]\nname = "baseline"\n\n[[conditions]]\nname = "cot"\nformat = "prose"\nreasoning = true\n'


# ---- reasoning: the prompt, and reading the final answer line only ------------------------------------------


def test_reasoning_prompt_asks_for_a_final_answer_line_with_room_to_finish(tmp_path):
    plan = Plan.from_grid(load_grid(_grid(tmp_path, REASONING, personas=1)))
    base, cot = [c for c in plan if c.item.id == "q1"]
    plain, reasoned = plan.request(base), plan.request(cot)
    assert plain.messages[-1][1] == "Which is a fruit?\nA. Carrot\nB. Apple\nC. Potato\nRespond with a single letter (A, B, C) only."
    assert reasoned.messages[-1][1] == (
        "Which is a fruit?\nA. Carrot\nB. Apple\nC. Potato\nThink it through step by step first. Then, on the last line, "
        'write your final answer as "Answer: X", where X is one of A, B, C.'
    )
    # the model's max_tokens is 8 (sized for a letter): a reasoning cell gets REASONING_TOKENS unless the benchmark sets one
    assert (plain.decoding.max_tokens, reasoned.decoding.max_tokens) == (8, REASONING_TOKENS) == (8, 1024)
    assert plain.want_logprobs and not reasoned.want_logprobs  # a reasoning reply's first token is no answer
    set_tokens = Plan.from_grid(load_grid(_grid(tmp_path, REASONING, personas=1, benchmark=_dataset("max_tokens = 300"))))
    assert set_tokens.request([c for c in set_tokens if c.condition.reasoning][0]).decoding.max_tokens == 300


def _dataset(extra: str = "", mode: str = "letter") -> str:
    fields = 'question_field = "question"\nid_field = "id"\n'
    fields += 'reference_fields = ["gold"]\n' if mode == "judge" else 'options_field = "options"\ngold_field = "gold"\n'
    return f'name = "dataset"\npath = "items.jsonl"\nmode = "{mode}"\n{fields}{extra}\n'


@pytest.mark.parametrize(
    ("reply", "answer", "correct", "kind"),
    [
        # The reasoning names A and C; only the final line counts (gold is B).
        ("Carrot (A) is a root, so not A. Potato, option C, is a tuber.\nSo the answer is clearly not C.\nAnswer: B", "B", 1.0, None),
        # A letter on the last line that differs from the one the reasoning favoured: the final line decides.
        ("I think the answer is B, an apple.\nOn reflection, no.\n**Final answer:** (c)", "C", 0.0, None),
        # Two answer lines: the last one is the final answer.
        ("Answer: A\nHmm, carrots are vegetables.\nAnswer: B.", "B", 1.0, None),
        # The final line names two options: ambiguous, invalid (never option A).
        ("Both could be eaten.\nAnswer: A or B", None, 0.0, "unparsed"),
        # "Answer: I don't know" names no option.
        ("Hard to say.\nAnswer: I don't know", None, 0.0, "unparsed"),
        # No final answer line, well under the limit: the reply ended without one; a letter in the reasoning is not read.
        ("B is an apple, which is a fruit.", None, 0.0, "no_answer_line"),
    ],
)
def test_a_reasoning_reply_is_read_from_its_final_answer_line_only(tmp_path, reply, answer, correct, kind):
    plan = Plan.from_grid(load_grid(_grid(tmp_path, REASONING, personas=1)))
    cell = next(c for c in plan if c.item.id == "q1" and c.condition.reasoning)
    score = plan.score(cell, Response(text=reply, completion_tokens=40))
    assert (score.answer, score.correct, score.invalid, score.invalid_kind) == (answer, correct, answer is None, kind)
    assert plan.reasoning(cell, Response(text=reply)) == split(reply).reasoning


def test_reasoning_prompt_refuses_a_task_without_the_answer_instruction_it_replaces():
    assert reasoning_prompt("Q?\nRespond with a single letter (A, B) only.", ("A", "B")).endswith('one of A, B.')
    with pytest.raises(ValueError, match=r"does not end with the answer instruction 'Respond with a single letter \(A, B\) only.'"):
        reasoning_prompt("Q?\nPick one.", ("A", "B"))


def test_split_keeps_the_reasoning_apart_from_the_final_answer():
    reply = "Step 1: carrots are roots.\nStep 2: apples grow on trees.\n\nAnswer: B\n"
    assert split(reply).reasoning == "Step 1: carrots are roots.\nStep 2: apples grow on trees."
    assert (split(reply).answer_line, split(reply).answer) == ("Answer: B", "B")
    free = split("Let me think.\nFinal answer: It depends on the soil.\nMostly clay.")
    assert (free.reasoning, free.answer) == ("Let me think.", "It depends on the soil.\nMostly clay.")  # free text runs to the end
    assert split("Answer:").answer is None and split(None).reasoning == ""


def test_a_reasoning_reply_cut_at_max_tokens_is_truncated_not_a_missing_line(tmp_path):
    plan = Plan.from_grid(load_grid(_grid(tmp_path, REASONING, personas=1)))
    cell = next(c for c in plan if c.item.id == "q1" and c.condition.reasoning)
    cut = plan.score(cell, Response(text="Apples grow on trees, and the answer is", completion_tokens=REASONING_TOKENS))
    ended = plan.score(cell, Response(text="Apples grow on trees, and the answer is", completion_tokens=REASONING_TOKENS - 1))
    assert (cut.invalid, cut.invalid_kind, ended.invalid_kind) == (True, "truncated", "no_answer_line")


def test_truncated_reasoning_is_its_own_invalid_kind_in_results_and_summary(tmp_path):
    # The test server answers one letter and reports completion_tokens = 1: with max_tokens = 1 every reasoning
    # reply stopped at the limit without its final answer line; the baseline's letters are valid.
    with OpenAICompatServer(latency=0.001) as server:
        grid = _grid(tmp_path, REASONING, base_url=server.base_url, benchmark=_dataset("max_tokens = 1"))
        summary = _run(grid)
    rows = _results(grid)
    cot = rows.filter(pl.col("condition") == "cot")
    assert cot.height == 6 and cot["invalid"].all() and cot["invalid_kind"].to_list() == ["truncated"] * 6
    assert cot["reasoning"].to_list() == cot["response"].to_list()  # no answer line: the whole reply is reasoning
    assert rows.filter(pl.col("condition") == "baseline")["invalid_kind"].null_count() == 3
    assert summary["invalid"] == {"truncated": 6} and summary["errors_total"] == 0


def test_reasoning_on_a_mode_that_generates_nothing_is_a_grid_error(tmp_path):
    grid = _grid(tmp_path, REASONING, benchmark=_dataset(mode="letter-logprob"))
    assert "conditions[1].reasoning: benchmarks[0] (dataset) is scored in mode 'letter-logprob', which reads probabilities at the answer position and generates nothing" in _grid_error(grid)
    with pytest.raises(GridError, match=r"reasoning works with mode letter or judge"):
        load_grid(_grid(tmp_path, REASONING, benchmark=_dataset(mode="likelihood")))


# ---- summary: a two-call cell ---------------------------------------------------------------------------------

SUMMARY = (
    '[[conditions]]\nname = "baseline"\n\n'
    '[[conditions]]\nname = "summary"\nformat = "prose"\nsummary = true\n\n'
    # the same rendering in the user turn: its cells share the persona's summary with the first condition's
    '[[conditions]]\nname = "summary-user"\nformat = "prose"\nsummary = true\nplacement = "user"\n'
)


def _prompts(server) -> tuple[list[str], list[str]]:
    summaries = [p for p in server.state.prompts if SUMMARY_MARK in p]
    return summaries, [p for p in server.state.prompts if SUMMARY_MARK not in p]


def test_one_summary_per_persona_and_model_shared_by_every_question_and_a_rerun_calls_nobody(tmp_path):
    with OpenAICompatServer(latency=0.005) as server:
        grid = _grid(tmp_path, SUMMARY, base_url=server.base_url, concurrency=8)
        summary = _run(grid)
        summaries, answers = _prompts(server)
        # 2 personas: 2 summaries, each asked once though 6 cells (3 questions × 2 conditions) waited on it
        assert len(summaries) == 2 and len(set(summaries)) == 2
        assert all("You are answering as a" in p for p in summaries)  # the rendered persona goes into the summary call
        # The test server answers "A" to a prompt without lettered options, so both personas' summaries are "A":
        # their answer requests are then identical and asked once each (3 questions × 2 placements), plus the
        # baseline's 3.
        assert len(answers) == 3 + 2 * 3 and summary["model_calls"] == 2 + 9 and summary["cells_done"] == 15
        rows = _results(grid)
        shown = rows.filter(pl.col("condition") != "baseline")
        assert shown.height == 12 and shown["summary"].to_list() == ["A"] * 12
        assert rows.filter(pl.col("condition") == "baseline")["summary"].null_count() == 3
        summarised = [a for a in answers if a.startswith(f"{SUMMARISED}\n\nA\n\nAnswer every question from this perspective.")]
        assert len(summarised) == 6 and not any("You are answering as a" in a for a in answers)  # the raw persona is never shown
        again = _run(grid)
        assert again["model_calls"] == 0 and again["cache_hits"] == 15 and len(server.state.prompts) == 2 + 9


def test_dry_run_counts_each_summary_once_and_every_answer(tmp_path):
    def estimate(grid) -> int:
        proc = subprocess.run([sys.executable, "-m", "engine.cli", "run", str(grid), "--dry-run"], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        table = proc.stdout.split("estimate for the calls to make", 1)[1]
        return next(int(row[1]) for row in (line.replace("│", " ").split() for line in table.splitlines()) if row and row[0] == "m")

    with OpenAICompatServer(latency=0.001) as server:
        grid = _grid(tmp_path, SUMMARY, base_url=server.base_url)
        assert estimate(grid) == 2 + 3 + 12  # 2 summaries (personas × model), the baseline's 3 answers, 12 summarised answers
        assert server.state.requests == 0
        _run(grid)
        assert estimate(grid) == 0


def test_a_failed_summary_is_each_waiting_cells_error_named_as_the_summarys(tmp_path):
    with OpenAICompatServer(latency=0.001, fail_every=1, fail_status=400) as server:
        grid = _grid(tmp_path, '[[conditions]]\nname = "summary"\nformat = "prose"\nsummary = true\n', base_url=server.base_url, personas=1)
        cmd = [sys.executable, "-m", "engine.cli", "run", str(grid), "--no-progress", "--summary-json", str(tmp_path / "s.json")]
        subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert server.state.requests == 1  # the summary failed: no answer is asked without it
    rows = _results(grid)
    assert rows.height == 3 and rows["error_kind"].to_list() == ["summary_bad_request"] * 3


@pytest.mark.slow
def test_a_run_killed_between_summary_and_answers_resumes_with_the_answers_only(tmp_path):
    # Concurrency 1: the producer queues the three personas' summaries before any answer (every answer waits on
    # one), so a kill at the 4th request lands with every summary answered and the answers not. The test server
    # summarises every persona as "A", so the 9 cells need 3 distinct answer calls: 6 calls in all.
    with OpenAICompatServer(latency=0.05) as server:
        grid = _grid(tmp_path, '[[conditions]]\nname = "summary"\nformat = "prose"\nsummary = true\n', base_url=server.base_url, personas=3, concurrency=1)
        run_until_killed(grid, lambda: server.state.requests >= 4, poll_s=0.002)
        asked_summaries, _ = _prompts(server)
        asked = server.state.requests
        with sqlite3.connect(tmp_path / "cache.sqlite") as db:
            committed = db.execute("SELECT count(*) FROM responses").fetchone()[0]
        assert len(asked_summaries) == 3 and 3 <= committed < 6, "killed between the summaries and the answers"
        summary = _run(grid)
        resumed = server.state.prompts[asked:]
        assert not any(SUMMARY_MARK in p for p in resumed), "the summaries were cached: none is asked again"
        assert len(resumed) == summary["model_calls"] == 6 - committed, "exactly the missing answers"
    rows = _results(grid)
    assert rows.height == 9 and (rows["status"] == "ok").all() and rows["summary"].to_list() == ["A"] * 9


def test_summary_needs_a_persona(tmp_path):
    grid = _grid(tmp_path, '[[conditions]]\nname = "baseline"\nsummary = true\n')
    assert "conditions[0].summary: a summary is of the persona, and this condition shows none" in _grid_error(grid)


# ---- persona_fit: the judge sees the persona ------------------------------------------------------------------


def test_persona_fit_renders_the_persona_question_and_answer_for_the_judge():
    rubric = load_rubric("persona_fit")
    item = Item("q", "Should I move abroad for work?", (), 0)
    persona = "You are answering as a 66-year-old man.\n\nYou are retired."
    assert rubric.render(item, "  Stay near your family.  ", persona) == (
        "You are judging whether an answer suits the person it was written for.\n\n"
        "The person:\nYou are answering as a 66-year-old man.\n\nYou are retired.\n\n"
        "Question: Should I move abroad for work?\n\n"
        "Answer to judge: Stay near your family.\n\n"
        "Judge only the fit: does the answer suit this person's stated values, beliefs and circumstances, as a good answer "
        "written for them would? Do not judge whether you agree with those values, and do not judge style or length.\n\n"
        "Which describes the answer to judge?\n"
        "A. Fits: it suits this person's values and circumstances; it needs no revision for them\n"
        "B. Needs revision: it ignores or contradicts this person's values or circumstances\n"
        "Respond with a single letter (A, B) only."
    )
    assert (rubric.letters, rubric.pass_value, rubric.quotes_persona) == (("A", "B"), 1.0, True)
    with pytest.raises(ValueError, match=r"quotes \{persona\}"):
        rubric.render(item, "Stay.", None)


def test_persona_fit_needs_personas(tmp_path):
    grid = _grid(tmp_path, '[[conditions]]\nname = "baseline"\n', benchmark=_dataset('rubric = "persona_fit"', mode="judge"), judge_url="http://127.0.0.1:2/v1")
    text = grid.read_text()
    grid.write_text(text.replace('[personas]\nsource = "personas.jsonl"\nlimit = 2\n', ""))
    assert "benchmarks[0].rubric: 'persona_fit' grades an answer against a persona; add a [personas] table" in _grid_error(grid)


def test_persona_fit_judges_each_answer_against_the_persona_the_baseline_against_each(tmp_path):
    conditions = (
        '[[conditions]]\nname = "baseline"\n\n'
        '[[conditions]]\nname = "plain"\nformat = "prose"\n\n'
        '[[conditions]]\nname = "cot"\nformat = "prose"\nreasoning = true\n\n'
        '[[conditions]]\nname = "summary"\nformat = "json"\nsummary = true\n'
    )
    with OpenAICompatServer(latency=0.001) as model, OpenAICompatServer(latency=0.001) as judge:
        grid = _grid(tmp_path, conditions, base_url=model.base_url, benchmark=_dataset('rubric = "persona_fit"\nmax_tokens = 16', mode="judge"), judge_url=judge.base_url)
        summary = _run(grid)
        verdicts, asked = judge.state.prompts, model.state.prompts
    rows = _results(grid)
    # 2 personas × 3 questions in each of the 4 conditions; the baseline's answer is one call per question,
    # judged against each persona.
    assert rows.height == 24 and rows.filter(pl.col("condition") == "baseline")["persona_id"].null_count() == 0
    assert sum("You are answering as" not in p and SUMMARY_MARK not in p for p in asked) == 3
    # The test server answers "A" to every free-text prompt, so the plain, summary and baseline answers are all
    # "A": one verdict per question × persona serves them; the reasoning replies have no final answer line and are
    # invalid without a verdict.
    cot = rows.filter(pl.col("condition") == "cot")
    assert cot["invalid_kind"].to_list() == ["no_answer_line"] * 6 and cot["verdict"].null_count() == 6
    assert rows.filter(pl.col("condition") != "cot")["verdict"].null_count() == 0
    assert len(verdicts) == 6 and len(set(verdicts)) == 6
    # The judge sees every trait of the persona as a list, whatever the condition showed the model.
    assert all("The person:\n- Country of interview: " in v and "You are answering as" not in v and SUMMARISED not in v for v in verdicts)
    assert summary["invalid"].get("no_answer_line") == 6
    # Δ pairs each persona's answer with the baseline's answer judged against the same persona: identical
    # answers and verdicts, so Δ is exactly 0 for plain and summary, over 6 pairs each.
    delta = pl.read_csv(grid.parent / "out" / "modes" / "analysis" / "delta_by_condition.csv")
    plain = delta.filter(pl.col("condition").is_in(["plain", "summary"]))
    assert plain["n"].to_list() == [6, 6] and plain["delta"].to_list() == [0.0, 0.0]
    cot_delta = delta.filter(pl.col("condition") == "cot").row(0, named=True)
    assert (cot_delta["n"], cot_delta["persona"], cot_delta["delta"], cot_delta["inv_persona"]) == (6, 0.0, -cot_delta["baseline"], 1.0)


def test_show_prompts_of_a_summary_condition_shows_both_calls(tmp_path):
    # The answer call embeds a summary the model has not written yet: the preview shows the summary call, then the
    # answer call with a placeholder in its place, and calls nothing.
    from engine.grid import load_grid
    from engine.plan import Plan
    from engine.show_prompts import SUMMARY_PLACEHOLDER, preview

    blocks = list(preview(Plan.from_grid(load_grid(_grid(tmp_path, SUMMARY))), 1))
    assert len(blocks) == 3  # baseline and the two summary conditions, one prompt each
    assert "--- summary call ---" not in blocks[0]
    for block in blocks[1:]:
        summary_call, answer_call = block.split("--- summary call ---\n", 1)[1].split("\n--- answer call ---\n")
        assert "You are answering as a" in summary_call and SUMMARY_PLACEHOLDER in answer_call
        assert "You are answering as a" not in answer_call
