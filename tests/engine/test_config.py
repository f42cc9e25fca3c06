from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from engine.grid import GridError, load_grid
from tests.conftest import write_grid


def _problems(path: Path) -> str:
    with pytest.raises(GridError) as info:
        load_grid(path)
    return str(info.value)


def test_valid_grid_loads_with_defaults(tmp_path):
    grid = load_grid(write_grid(tmp_path, base_url="http://127.0.0.1:1/v1"))
    assert grid.models[0].limits.concurrency == 4
    assert grid.models[0].temperature == 0.0
    assert grid.baseline is not None and grid.baseline.name == "baseline"
    assert grid.output_dir == (tmp_path / "out" / "t").resolve()


def test_unknown_key_names_file_key_and_suggests(tmp_path):
    path = write_grid(tmp_path, base_url="http://x/v1", extra_model="temperatur = 0.5")
    message = _problems(path)
    assert str(path) in message
    assert "models[0].temperatur: unknown key" in message
    assert "did you mean 'temperature'" in message


def test_wrong_type_says_what_was_expected(tmp_path):
    path = write_grid(tmp_path, base_url="http://x/v1", extra_model='samples = "many"')
    assert "models[0].samples: expected an integer, got 'many'" in _problems(path)


def test_unknown_provider_lists_valid_ones(tmp_path):
    path = write_grid(tmp_path, base_url="http://x/v1")
    path.write_text(path.read_text().replace('provider = "openai"', 'provider = "opnai"'))
    message = _problems(path)
    assert "models[0].provider: unknown provider 'opnai'" in message
    assert "did you mean 'openai'" in message


def test_missing_persona_file_and_all_problems_reported_together(tmp_path):
    path = write_grid(tmp_path, base_url="http://x/v1")
    (tmp_path / "personas.jsonl").unlink()
    path.write_text(path.read_text().replace('name = "truthfulqa"', 'name = "truthfulqa"\nmode = "telepathy"'))
    message = _problems(path)
    assert "personas.source: file not found" in message
    assert "benchmarks[0].mode: 'telepathy' not supported by truthfulqa" in message


def test_missing_required_key(tmp_path):
    path = tmp_path / "grid.toml"
    path.write_text("[run]\nseed = 1\n")
    assert "run.name: required key missing (expected a string)" in _problems(path)


def test_invalid_toml_is_reported_with_position(tmp_path):
    path = tmp_path / "grid.toml"
    path.write_text("[run\nname = 1\n")
    assert "not valid TOML" in _problems(path)


def test_cli_exits_2_and_writes_nothing(tmp_path):
    path = write_grid(tmp_path, base_url="http://x/v1", extra_model="bogus_key = 1")
    proc = subprocess.run([sys.executable, "-m", "engine.cli", "run", str(path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "models[0].bogus_key: unknown key" in proc.stderr
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "cache.sqlite").exists()


def test_config_hash_ignores_nothing_but_is_stable(tmp_path):
    a = load_grid(write_grid(tmp_path, base_url="http://x/v1"))
    b = load_grid(write_grid(tmp_path, base_url="http://x/v1"))
    assert a.config_hash() == b.config_hash()
    c = load_grid(write_grid(tmp_path, base_url="http://x/v1", concurrency=9))
    assert c.config_hash() != a.config_hash()


def _judge_grid(tmp_path: Path, benchmarks: str, judge: str | None) -> Path:
    path = write_grid(tmp_path, base_url="http://x/v1")
    text = path.read_text().replace('[[benchmarks]]\nname = "truthfulqa"\nlimit = 5\n', benchmarks)
    assert benchmarks in text
    return_path = tmp_path / "judge.toml"
    return_path.write_text(text + ("\n" + judge if judge else ""))
    return return_path


JUDGE = '[judge]\n[judge.model]\nid = "grader"\nprovider = "openai"\nmodel = "test"\nbase_url = "http://x/v1"\n'
JUDGED = '[[benchmarks]]\nname = "truthfulqa"\nmode = "judge"\nlimit = 5\n'


def test_judge_grid_loads_and_its_problems_are_named(tmp_path):
    grid = load_grid(_judge_grid(tmp_path, JUDGED, JUDGE))
    assert grid.judge is not None and grid.judge.model.id == "grader" and grid.judge.mode == "letter"
    assert 'benchmarks[0].mode: "judge" needs a [judge] table' in _problems(_judge_grid(tmp_path, JUDGED, None))
    assert 'judge: no benchmark has mode = "judge"' in _problems(_judge_grid(tmp_path, '[[benchmarks]]\nname = "truthfulqa"\n', JUDGE))
    bad_judge = JUDGE.replace('id = "grader"', 'id = "m"').replace("[judge]\n", '[judge]\nmode = "likelihood"\n') + "samples = 2\n"
    message = _problems(_judge_grid(tmp_path, JUDGED, bad_judge))
    assert "judge.mode: expected one of letter, letter-logprob, got 'likelihood'" in message
    assert "judge.model.id: 'm' is also a model under test" in message
    assert "judge.model.samples: the judge gives one verdict per answer" in message
    anthropic = JUDGE.replace('provider = "openai"', 'provider = "anthropic"').replace("[judge]\n", '[judge]\nmode = "letter-logprob"\n')
    assert 'provider "anthropic" never returns; use "letter"' in _problems(_judge_grid(tmp_path, JUDGED, anthropic))
    typo = _problems(_judge_grid(tmp_path, JUDGED, JUDGE.replace('provider = "openai"', 'provider = "opnai"')))
    assert "judge.model.provider: unknown provider 'opnai'" in typo and "did you mean 'openai'" in typo


def test_rubric_and_benchmark_id_problems_are_named(tmp_path):
    message = _problems(_judge_grid(tmp_path, JUDGED + 'rubric = "truthfull"\n', JUDGE))
    assert "benchmarks[0].rubric: rubric 'truthfull': no such built-in rubric" in message
    (tmp_path / "r.toml").write_text('prompt = "Is it good?"\n[[levels]]\nlabel = "yes"\nvalue = 1\n[[levels]]\nlabel = "no"\nvalue = 0\n')
    message = _problems(_judge_grid(tmp_path, JUDGED + 'rubric = "r.toml"\n', JUDGE))
    assert f"benchmarks[0].rubric: {tmp_path / 'r.toml'}: prompt: must contain {{answer}}" in message
    assert 'benchmarks[0].rubric: only used with mode = "judge"' in _problems(_judge_grid(tmp_path, '[[benchmarks]]\nname = "truthfulqa"\nrubric = "truthful"\n', None))
    twice = '[[benchmarks]]\nname = "truthfulqa"\n[[benchmarks]]\nname = "truthfulqa"\ntask = "mc2"\nmode = "letter-logprob"\n'
    assert "benchmarks[1].id: duplicate value 'truthfulqa'" in _problems(_judge_grid(tmp_path, twice, None))
    load_grid(_judge_grid(tmp_path, twice + 'id = "truthfulqa-mc2"\n', None))  # an id tells them apart


def test_a_rubric_quoting_a_reference_the_data_lacks_exits_2_and_writes_nothing(tmp_path):
    (tmp_path / "free.jsonl").write_text('{"q": "Why is the sky blue?", "ref": "Rayleigh scattering"}\n')
    dataset = '[[benchmarks]]\nname = "dataset"\npath = "free.jsonl"\nmode = "judge"\nquestion_field = "q"\nreference_fields = ["ref"]\nrubric = "truthful"\n'
    path = _judge_grid(tmp_path, dataset, JUDGE)
    proc = subprocess.run([sys.executable, "-m", "engine.cli", "run", str(path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "truthful.toml: prompt uses {correct_answers}, {incorrect_answers}, which item 000000 does not provide" in proc.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache.sqlite").exists()


@pytest.mark.parametrize("name", ["grid.toml", "judge.toml"])
def test_example_grids_are_valid(name):
    grid = load_grid(Path(__file__).resolve().parents[2] / "examples" / name)
    assert grid.models and grid.benchmarks
