"""Benchmark name -> adapter class. Adding a benchmark is one module and one entry here."""

from __future__ import annotations

from bench_adapters.base import Adapter
from bench_adapters.bbq import BBQ
from bench_adapters.crows_pairs import CrowsPairs
from bench_adapters.generic import Dataset
from bench_adapters.normad import NormAd
from bench_adapters.traits import Traits
from bench_adapters.truthfulqa import TruthfulQA

ADAPTERS: dict[str, type[Adapter]] = {cls.name: cls for cls in (TruthfulQA, BBQ, CrowsPairs, NormAd, Dataset, Traits)}


def get_adapter(name: str, **options: object) -> Adapter:
    return ADAPTERS[name](**options)
