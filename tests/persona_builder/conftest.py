"""Shared synthetic survey files (generated, never real respondents) and one build over all three surveys."""

from __future__ import annotations

from pathlib import Path

import pytest

import persona_builder.testing
from persona_builder.build import build


@pytest.fixture(scope="session")
def gen():
    """The synthetic survey file generator module (persona_builder/testing.py)."""
    return persona_builder.testing


@pytest.fixture(scope="session")
def files(gen, tmp_path_factory) -> dict[str, Path]:
    return gen.write_all(tmp_path_factory.mktemp("surveys"))


@pytest.fixture(scope="session")
def built(files, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("build")
    return out, build(files, out, n=300, seed=0)
