"""Downstream benchmarks: items, task prompts, answer parsing and scoring."""

from bench_adapters.base import Adapter, Item, Score
from bench_adapters.registry import ADAPTERS, get_adapter

__all__ = ["ADAPTERS", "Adapter", "Item", "Score", "get_adapter"]
