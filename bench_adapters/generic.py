"""Any labelled multiple-choice dataset, configured from grid.toml alone.

Records come from a JSONL/JSON/CSV/Parquet file (`path`) or a Hugging Face dataset (`hf_dataset`,
`hf_config`, `split`). Fields: `question_field`; the options either as one list-valued field
(`options_field`; in CSV a JSON list) or one field per option (`option_fields`); `gold_field` as a 0-based
index, a letter, or the text of the correct option; optional `category_field` (results are sliced by it)
and `id_field`. Options keep the dataset's order: labelled datasets normally balance the gold position
already, and keeping it makes scores comparable with published ones.

Free-text datasets run in mode "judge": the model answers in its own words and the grid's judge grades the
answer against `reference_fields` (the fields a rubric may quote, by name or all together as {references});
no options or gold are needed then.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import orjson

from bench_adapters.base import JUDGE, MODES, Item
from bench_adapters.choice import MultipleChoice
from bench_adapters.letters import LETTERS
from bench_adapters.sources import field, hub_records, read_records, require_unique, where


class Dataset(MultipleChoice):
    name: ClassVar[str] = "dataset"
    modes: ClassVar[tuple[str, ...]] = (*MODES, JUDGE)
    rubric: ClassVar[str] = "correctness"
    options: ClassVar[tuple[str, ...]] = (
        "question_field",
        "options_field",
        "option_fields",
        "gold_field",
        "category_field",
        "id_field",
        "reference_fields",
        "hf_dataset",
        "hf_config",
        "split",
    )

    def __init__(
        self,
        path: Path | None = None,
        limit: int | None = None,
        seed: int = 0,
        mode: str = "letter",
        question_field: str | None = None,
        options_field: str | None = None,
        option_fields: tuple[str, ...] = (),
        gold_field: str | None = None,
        category_field: str | None = None,
        id_field: str | None = None,
        reference_fields: tuple[str, ...] = (),
        hf_dataset: str | None = None,
        hf_config: str | None = None,
        split: str | None = None,
    ) -> None:
        super().__init__(path, limit, seed, mode)
        if (path is None) == (hf_dataset is None):
            raise ValueError("dataset: set exactly one of `path` (a local file) or `hf_dataset` (a hub dataset)")
        if mode == JUDGE:
            if not question_field or not reference_fields:
                raise ValueError('dataset: mode "judge" needs question_field and reference_fields (what the judge compares the answer with)')
        elif not question_field or not gold_field or bool(options_field) == bool(option_fields):
            raise ValueError("dataset: set question_field, gold_field, and one of options_field (a list) or option_fields (one per option)")
        self.question_field = question_field
        self.options_field = options_field
        self.option_fields = tuple(option_fields)
        self.gold_field = gold_field
        self.category_field = category_field
        self.id_field = id_field
        self.reference_fields = tuple(reference_fields)
        self.hf = (hf_dataset, hf_config, split or "test")

    def _records(self) -> list[dict[str, Any]]:
        if self.path is not None:
            return read_records(self.path)
        return hub_records(*self.hf)

    def _options(self, rec: dict[str, Any], at: str) -> tuple[str, ...]:
        if self.option_fields:
            return tuple(_text(field(rec, f, at, object), f, at) for f in self.option_fields)
        value = field(rec, self.options_field, at, object)
        if isinstance(value, str):
            try:
                value = orjson.loads(value)
            except orjson.JSONDecodeError:
                raise ValueError(f"{at}: field '{self.options_field}' is text but not a JSON list of options") from None
        if not isinstance(value, list) or not value:
            raise ValueError(f"{at}: field '{self.options_field}' is not a non-empty list of options")
        return tuple(_text(v, self.options_field, at) for v in value)

    @staticmethod
    def _gold(value: Any, options: tuple[str, ...]) -> int:
        text = str(value).strip()
        if isinstance(value, int) or text.isdigit():
            index = int(text)
        elif len(text) == 1 and text.upper() in LETTERS:
            index = LETTERS.index(text.upper())
        elif text in options:
            index = options.index(text)
        else:
            raise ValueError(f"gold '{text}' is not an index, a letter or one of the options")
        if not 0 <= index < len(options):
            raise ValueError(f"gold index {index} is out of range for {len(options)} options")
        return index

    def load(self) -> list[Item]:
        items, free_text = [], self.mode == JUDGE
        source = self.path or f"hub dataset {self.hf[0]}"
        for n, rec in enumerate(self._records()):
            at = where(source, n)
            question = _text(field(rec, self.question_field, at, object), self.question_field, at)
            options, gold = (), 0
            if not free_text:
                options = self._options(rec, at)
                try:
                    gold = self._gold(field(rec, self.gold_field, at, object), options)
                except ValueError as exc:
                    raise ValueError(f"{at}: {exc}") from None
            item_id = _text(field(rec, self.id_field, at, object), self.id_field, at) if self.id_field else f"{n:06d}"
            meta = {"category": _text(field(rec, self.category_field, at, object), self.category_field, at)} if self.category_field else {}
            refs = {f: _text(field(rec, f, at, object, empty=True), f, at) for f in self.reference_fields}
            items.append(Item(item_id, question, options, gold=gold, meta=meta, refs=refs))
        require_unique([i.id for i in items], lambda n: where(source, n))
        return items


def _text(value: Any, key: str, at: str) -> str:
    """A scalar field as text (numbers are fine: ids, labels); a nested list or object is a wrong type."""
    if isinstance(value, (dict, list)) or value is None:
        raise ValueError(f"{at}: field '{key}': expected text or a number, got {type(value).__name__}")
    return str(value)
