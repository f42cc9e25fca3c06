"""`executor = "ray"` and `[run.ray]` in grid.toml, and `run --ray`: checked before anything runs, with or without Ray."""

from __future__ import annotations

import sys

import pytest
from click.testing import CliRunner

from engine.cli import app
from engine.grid import GridError, load_grid
from tests.conftest import write_grid

cli = CliRunner()


def _with_run_keys(tmp_path, keys: str):
    tmp_path.mkdir(exist_ok=True)
    grid = write_grid(tmp_path, base_url="http://127.0.0.1:9/v1")
    grid.write_text(grid.read_text().replace('cache = "cache.sqlite"\n', f'cache = "cache.sqlite"\n{keys}\n', 1))
    return grid


def test_executor_ray_without_ray_is_one_clear_grid_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # importlib.util.find_spec("ray") is then None: as if not installed
    grid = _with_run_keys(tmp_path, 'executor = "ray"')
    with pytest.raises(GridError) as err:
        load_grid(grid)
    assert err.value.problems == [f"{grid}: run.executor: executor \"ray\" needs Ray, which is not installed: pip install 'mtpa-engine[ray]'"]
    result = cli.invoke(app, ["run", str(_with_run_keys(tmp_path / "b", "")), "--ray", "auto"])
    assert result.exit_code == 2
    assert "--ray: executor \"ray\" needs Ray, which is not installed: pip install 'mtpa-engine[ray]'" in " ".join(result.output.split())
    assert not (tmp_path / "b" / "out").exists() and not (tmp_path / "b" / "cache.sqlite").exists()


@pytest.mark.parametrize(
    ("keys", "problem"),
    [
        ('executor = "dask"', "run.executor: expected local or ray, got 'dask'"),
        ("[run.ray]\nworkers = 2", 'run.ray: only used with executor = "ray"'),
        ('executor = "ray"\n[run.ray]\nworkers = -1', "run.ray.workers: expected an integer in [0, 10,000] (0 = as many as the cluster holds)"),
        ('executor = "ray"\n[run.ray]\ncpus_per_worker = 0', "run.ray: cpus_per_worker and gpus_per_worker must be non-negative, and not both 0"),
        ('executor = "ray"\n[run.ray]\nbatches_per_worker = 0', "run.ray.batches_per_worker: expected an integer in [1, 64], got 0"),
        ('executor = "ray"\n[run.ray]\nadress = "auto"', "run.ray.adress: unknown key (did you mean 'address'?)"),
    ],
)
def test_bad_ray_keys_name_the_key(tmp_path, keys, problem):
    if 'executor = "ray"' in keys:
        pytest.importorskip("ray")  # without it, the first problem is the missing install (the test above)
    grid = _with_run_keys(tmp_path, keys)
    with pytest.raises(GridError) as err:
        load_grid(grid)
    assert err.value.problems == [f"{grid}: {problem}"]
