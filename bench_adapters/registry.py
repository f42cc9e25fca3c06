"""Benchmark name -> adapter class."""

from __future__ import annotations

from bench_adapters.base import Adapter
from bench_adapters.truthfulqa import TruthfulQA

ADAPTERS: dict[str, type[Adapter]] = {cls.name: cls for cls in (TruthfulQA,)}


def get_adapter(name: str, **options: object) -> Adapter:
    return ADAPTERS[name](**options)
