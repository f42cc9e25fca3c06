"""TruthfulQA multiple choice (Lin et al. 2022), data vendored from sylinrl/TruthfulQA @ 013686a (Apache-2.0).

MC1: one true option; correct when it is chosen (letter) or scores strictly highest (logprob modes).
MC2: several true options; the per-item score is the normalised probability mass on the true options, read
from the labels themselves (in two questions the true options are not listed first).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import orjson

from bench_adapters.base import Item, Output, Score
from bench_adapters.choice import MultipleChoice, permuted

DEFAULT_PATH = Path(__file__).parent / "data" / "truthfulqa" / "mc_task.json"
TASKS = ("mc1", "mc2")


class TruthfulQA(MultipleChoice):
    name: ClassVar[str] = "truthfulqa"
    options: ClassVar[tuple[str, ...]] = ("task",)
    default_path = DEFAULT_PATH

    def __init__(self, path: Path | None = None, limit: int | None = None, seed: int = 0, mode: str = "letter", task: str | None = None) -> None:
        super().__init__(path, limit, seed, mode)
        self.task = task or "mc1"
        if self.task not in TASKS:
            raise ValueError(f"truthfulqa: task '{self.task}' not supported (expected mc1 or mc2)")

    def _records(self) -> list[dict]:
        try:
            records = orjson.loads(self.path.read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            raise ValueError(f"{self.path}: cannot read TruthfulQA mc_task.json ({exc})") from None
        if not isinstance(records, list) or not all(isinstance(r, dict) and "mc1_targets" in r for r in records):
            raise ValueError(f"{self.path}: expected a JSON list of {{question, mc1_targets, mc2_targets}}")
        return records

    def load(self) -> list[Item]:
        items = []
        for i, rec in enumerate(self._records()):
            targets = rec[f"{self.task}_targets"]
            item_id = f"tqa-{i:03d}"
            shown, order = permuted(list(targets), self.seed, item_id)
            labels = [targets[o] for o in shown]
            true = tuple(k for k, label in enumerate(labels) if label == 1)
            item = Item(item_id, rec["question"], shown, gold=true[0], meta={"task": self.task}, true=true if self.task == "mc2" else ())
            items.append(item)
        return items

    def score(self, item: Item, output: Output) -> Score:
        s = super().score(item, output)
        if self.task == "mc2" and self.mode != "letter":
            return Score(s.answer, s.correct, s.invalid, s.p_gold, score=s.p_gold if s.p_gold is not None else 0.0)
        return s
