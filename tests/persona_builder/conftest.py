"""Shared synthetic survey files (generated, never real respondents) and one build over all three surveys."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from persona_builder.build import build


def _load_generator():
    # Loaded by path under a unique name: tests/ is not a package and other suites may have a fixtures.py.
    name = "persona_builder_test_fixtures"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("fixtures.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="session")
def gen():
    """The fixture generator module (tests/persona_builder/fixtures.py)."""
    return _load_generator()


@pytest.fixture(scope="session")
def files(gen, tmp_path_factory) -> dict[str, Path]:
    return gen.write_all(tmp_path_factory.mktemp("surveys"))


@pytest.fixture(scope="session")
def built(files, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("build")
    return out, build(files, out, n=300, seed=0)
