"""TruthfulQA multiple choice (Lin et al. 2022), data vendored from sylinrl/TruthfulQA @ 013686a (Apache-2.0)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import ClassVar

import orjson

from bench_adapters.base import Item, Score
from bench_adapters.choice import letter_prompt, letter_score, sample_indices, shuffled

DEFAULT_PATH = Path(__file__).parent / "data" / "truthfulqa" / "mc_task.json"


class TruthfulQA:
    name: ClassVar[str] = "truthfulqa"
    modes: ClassVar[tuple[str, ...]] = ("letter",)

    def __init__(self, path: Path | None = None, limit: int | None = None, seed: int = 0) -> None:
        self.path = Path(path) if path else DEFAULT_PATH
        self.limit = limit
        self.seed = seed

    def _records(self) -> list[dict]:
        try:
            records = orjson.loads(self.path.read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            raise ValueError(f"{self.path}: cannot read TruthfulQA mc_task.json ({exc})") from None
        if not isinstance(records, list) or not all(isinstance(r, dict) and "mc1_targets" in r for r in records):
            raise ValueError(f"{self.path}: expected a JSON list of {{question, mc1_targets, mc2_targets}}")
        return records

    def items(self) -> Iterator[Item]:
        records = self._records()
        for i in sample_indices(len(records), self.limit, self.seed):
            rec = records[i]
            targets = rec["mc1_targets"]
            options = list(targets)
            gold = [targets[o] for o in options].index(1)
            item_id = f"tqa-{i:03d}"
            shown, gold_pos = shuffled(options, gold, self.seed, item_id)
            yield Item(id=item_id, question=rec["question"], options=shown, gold=gold_pos, meta={"task": "mc1"})

    def task_prompt(self, item: Item) -> str:
        return letter_prompt(item.question, item.options)

    def score(self, item: Item, text: str | None, letter_logprobs: Mapping[str, float] | None) -> Score:
        return letter_score(item, text, letter_logprobs)
