"""Benchmark options in grid.toml: validated against the adapter, and turned into per-mode requests."""

from __future__ import annotations

import pytest

from click.testing import CliRunner

from engine.cli import app
from engine.grid import GridError, load_grid
from engine.plan import Plan
from tests.conftest import write_grid


def _grid(tmp_path, benchmark: str):
    path = write_grid(tmp_path, base_url="http://127.0.0.1:1/v1", personas=1, questions=2)
    text = path.read_text().replace('[[benchmarks]]\nname = "truthfulqa"\nlimit = 2\n', benchmark)
    path.write_text(text)
    return path


def _problems(path) -> str:
    with pytest.raises(GridError) as info:
        load_grid(path)
    return str(info.value)


def test_option_of_another_adapter_is_reported(tmp_path):
    path = _grid(tmp_path, '[[benchmarks]]\nname = "bbq"\ntask = "mc2"\n')
    assert "benchmarks[0].task: not an option of bbq (its options: categories, hf_dataset, split)" in _problems(path)


def test_bad_option_value_is_reported_before_any_work(tmp_path):
    assert "truthfulqa: task 'mc3' not supported" in _problems(_grid(tmp_path, '[[benchmarks]]\nname = "truthfulqa"\ntask = "mc3"\n'))
    assert "bbq: unknown categories Height" in _problems(_grid(tmp_path, '[[benchmarks]]\nname = "bbq"\ncategories = ["Height"]\n'))
    assert "mode: 'guess' not supported" in _problems(_grid(tmp_path, '[[benchmarks]]\nname = "bbq"\nmode = "guess"\n'))


def test_mc2_in_letter_mode_is_a_grid_error_naming_what_to_use(tmp_path):
    path = _grid(tmp_path, '[[benchmarks]]\nname = "truthfulqa"\ntask = "mc2"\nmode = "letter"\n')
    before = [p.name for p in tmp_path.iterdir()]
    message = _problems(path)
    assert f'{path}: benchmarks[0]: truthfulqa: task = "mc2" cannot be scored with mode = "letter"' in message
    assert 'use mode = "letter-logprob" or "likelihood" for mc2, or task = "mc1"' in message
    # The CLI stops on it before any work: exit 2, the message, no traceback, no run folder or cache.
    result = CliRunner().invoke(app, ["run", str(path), "--no-progress"])
    assert result.exit_code == 2 and (result.exception is None or isinstance(result.exception, SystemExit))
    assert 'cannot be scored with mode = "letter"' in " ".join(result.output.split()) and "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(before)


def test_likelihood_requests_carry_the_options_and_no_letter_logprobs(tmp_path):
    path = _grid(tmp_path, '[[benchmarks]]\nname = "truthfulqa"\ntask = "mc2"\nmode = "likelihood"\nlimit = 2\n')
    path.write_text(path.read_text().replace('provider = "openai"\nmodel = "test"', 'provider = "local"\nmodel = "embedded"'))  # likelihood: a local backend
    grid = load_grid(path)
    plan = Plan.from_grid(grid)
    cell = next(iter(plan))
    req = plan.request(cell)
    assert req.mode == "likelihood" and req.continuations == cell.item.options and not req.want_logprobs
    assert req.messages[-1][1] == cell.item.question
    assert len(cell.item.true) >= 1


def test_letter_logprob_requests_always_want_logprobs(tmp_path):
    path = _grid(tmp_path, '[[benchmarks]]\nname = "crows_pairs"\nmode = "letter-logprob"\nlimit = 2\n')
    path.write_text(path.read_text().replace('max_tokens = 4', 'max_tokens = 4\nlogprobs = false'))
    plan = Plan.from_grid(load_grid(path))
    req = plan.request(next(iter(plan)))
    assert req.want_logprobs and req.letters == ("A", "B") and req.continuations == ()
