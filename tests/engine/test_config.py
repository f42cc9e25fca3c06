from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from engine.config import GridError, load_grid
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
