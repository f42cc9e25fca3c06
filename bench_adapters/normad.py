"""NormAd-Eti (Rao et al. 2024): is a character's action in a short story socially acceptable? (CC BY 4.0)

The data is not bundled (see data/normad/SOURCE.md): point `path` at upstream's
normad_etiquette_final_data.csv (columns ID, Country, Background, Axis, Subaxis, Value, Rule-of-Thumb,
Story, Explanation, Gold Label), e.g. from the Hugging Face dataset akhilayerukola/NormAd. `context`
selects upstream's prompt conditions: the story alone, or with the country, the value, country + value,
or the rule of thumb. Answers Yes / No / Neither map to the gold labels yes / no / neutral.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar

from bench_adapters.base import Item, Output, Score
from bench_adapters.choice import MultipleChoice, letter_score
from bench_adapters.sources import field, read_records, require_unique, where

ANSWERS = ("Yes", "No", "Neither")
LABELS = {"yes": 0, "no": 1, "neutral": 2}
CONTEXTS = ("none", "country", "value", "cval", "rot")
COLUMNS = ("ID", "Country", "Value", "Rule-of-Thumb", "Story", "Gold Label")
_WORD = re.compile(r"^\W*(yes|no|neither)\b", re.IGNORECASE)


def country_name(code: str) -> str:
    return code.replace("_", " ").title()


class NormAd(MultipleChoice):
    name: ClassVar[str] = "normad"
    options: ClassVar[tuple[str, ...]] = ("context",)

    def __init__(self, path: Path | None = None, limit: int | None = None, seed: int = 0, mode: str = "letter", context: str | None = None) -> None:
        super().__init__(path, limit, seed, mode)
        if self.path is None:
            raise ValueError("normad: set `path` to normad_etiquette_final_data.csv (the data is not bundled)")
        self.context = context or "none"
        if self.context not in CONTEXTS:
            raise ValueError(f"normad: context '{self.context}' not supported (expected one of {', '.join(CONTEXTS)})")

    def _preamble(self, row: dict[str, str]) -> str:
        country = f"Country: {country_name(row['Country'])}\n"
        value = f"Value: {row['Value']}\n"
        return {
            "none": "",
            "country": country,
            "value": value,
            "cval": country + value,
            "rot": f"Rule of thumb: {row['Rule-of-Thumb']}\n",
        }[self.context]

    def load(self) -> list[Item]:
        rows = read_records(self.path)
        if rows and (missing := [c for c in COLUMNS if c not in rows[0]]):
            raise ValueError(f"{self.path}: not the NormAd CSV schema (missing columns {', '.join(missing)})")
        items = []
        # Columns the prompt of this context quotes, besides those every item needs.
        quoted = {"country": ("Country",), "value": ("Value",), "cval": ("Country", "Value"), "rot": ("Rule-of-Thumb",)}.get(self.context, ())
        for n, row in enumerate(rows):
            at = where(self.path, n)
            for column in ("ID", "Country", "Story", "Gold Label", *quoted):
                field(row, column, at)
            label = row["Gold Label"].strip().lower()
            if label not in LABELS:
                raise ValueError(f"{at}: ID {row['ID']}: gold label '{row['Gold Label']}' is not yes, no or neutral")
            question = f"{self._preamble(row)}Story: {row['Story'].strip()}\nAnswer Yes, No or Neither."
            meta = {"category": row["Country"], "label": label, "context": self.context}
            # Upstream's fixed Yes/No/Neither order is kept: it is a label scale, not a shuffled option list.
            items.append(Item(f"normad-{row['ID']}", question, ANSWERS, gold=LABELS[label], meta=meta))
        require_unique([i.id for i in items], lambda k: where(self.path, k))
        return items

    def score(self, item: Item, output: Output) -> Score:
        scored = super().score(item, output)
        if self.mode == "letter" and scored.invalid and output.text and (word := _WORD.match(output.text)):
            # A plain "Yes" / "no." / "Neither, because ..." is the natural reply here: its leading word names
            # the option. Anything else stays invalid (upstream defaulted to neutral; we never default).
            letter = item.letters[item.options.index(word.group(1).capitalize())]  # wherever `orders` put it
            return letter_score(item, letter, output.letter_logprobs)
        return scored
