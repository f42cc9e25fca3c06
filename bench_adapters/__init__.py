"""Downstream benchmarks: items, task prompts, answer parsing and scoring."""

from bench_adapters.base import JUDGE, MODES, Adapter, Item, Output, Score
from bench_adapters.registry import ADAPTERS, get_adapter

__all__ = ["ADAPTERS", "JUDGE", "MODES", "Adapter", "Item", "Output", "Score", "get_adapter"]
