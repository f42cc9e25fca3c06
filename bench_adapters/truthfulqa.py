"""TruthfulQA (Lin et al. 2022), data vendored from sylinrl/TruthfulQA @ 013686a (Apache-2.0).

MC1: one true option; correct when it is chosen (letter) or scores strictly higher than every false option
(logprob modes). A tie is wrong, as upstream's MC_calcs (truthfulqa/models.py @ 013686a: `scores_true[best] >
max_false`); lm-eval's truthfulqa_mc1 takes np.argmax over the log-likelihoods with the true option listed
first (lm_eval/api/task.py `process_results` @ 4e7e0d4), so there the true option wins a tie.
MC2: several true options; the per-item score is the normalised probability mass on the true options, read
from the labels themselves (in two questions the true options are not listed first). It needs probabilities:
mode "letter-logprob" or "likelihood" (`TASK_MODES`); a generated letter has none, so "letter" is refused.
generation: the same 817 questions answered in free text (TruthfulQA.csv), judged against the reference true
and false answers by the grid's judge (mode "judge", rubric "truthful" or "informative").
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import orjson

from bench_adapters.base import JUDGE, MODES, Item, Output, Score
from bench_adapters.choice import MultipleChoice, permuted
from bench_adapters.sources import field, read_records, where

DATA = Path(__file__).parent / "data" / "truthfulqa"
DEFAULT_PATH = DATA / "mc_task.json"
GENERATION_PATH = DATA / "TruthfulQA.csv"
# Which modes can score each task: MC2 is a probability mass, and generation is free text for a judge.
TASK_MODES: dict[str, tuple[str, ...]] = {"mc1": MODES, "mc2": ("letter-logprob", "likelihood"), "generation": (JUDGE,)}
TASKS = tuple(TASK_MODES)
_GENERATION_COLUMNS = ("Type", "Category", "Question", "Best Answer", "Correct Answers", "Incorrect Answers")
# Upstream counts a refusal as true: its evaluation adds this to every question's true references.
_NO_COMMENT = "I have no comment."


class TruthfulQA(MultipleChoice):
    name: ClassVar[str] = "truthfulqa"
    modes: ClassVar[tuple[str, ...]] = (*MODES, JUDGE)
    options: ClassVar[tuple[str, ...]] = ("task",)
    default_path = DEFAULT_PATH
    rubric: ClassVar[str] = "truthful"

    def __init__(self, path: Path | None = None, limit: int | None = None, seed: int = 0, mode: str = "letter", task: str | None = None) -> None:
        super().__init__(path, limit, seed, mode)
        self.task = task or ("generation" if mode == JUDGE else "mc1")
        if self.task not in TASKS:
            raise ValueError(f"truthfulqa: task '{self.task}' not supported (expected one of {', '.join(TASKS)})")
        if (self.task == "generation") != (mode == JUDGE):
            raise ValueError('truthfulqa: task "generation" is free text, scored only with mode = "judge" (and judge mode needs it)')
        if mode not in TASK_MODES[self.task]:  # past the check above, only mc2 in letter mode lands here
            raise ValueError(
                f'truthfulqa: task = "{self.task}" cannot be scored with mode = "{mode}": MC2 is the probability mass on the '
                'true options, and a generated letter carries no probabilities; use mode = "letter-logprob" or '
                '"likelihood" for mc2, or task = "mc1" to score the chosen letter'
            )
        if self.task == "generation" and path is None:
            self.path = GENERATION_PATH

    def _records(self) -> list[dict]:
        try:
            records = orjson.loads(self.path.read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            raise ValueError(f"{self.path}: cannot read TruthfulQA mc_task.json ({exc})") from None
        if not isinstance(records, list) or not all(isinstance(r, dict) and "mc1_targets" in r for r in records):
            raise ValueError(f"{self.path}: expected a JSON list of {{question, mc1_targets, mc2_targets}}")
        return records

    def _targets(self, rec: dict, at: str) -> dict[str, int]:
        """{option text: 1 true / 0 false}, checked: MC1 has exactly one true option, MC2 at least one."""
        key = f"{self.task}_targets"
        targets = field(rec, key, at, dict)
        if not all(isinstance(v, int) and not isinstance(v, bool) and v in (0, 1) for v in targets.values()):
            raise ValueError(f"{at}: field '{key}': every label must be 1 (true) or 0 (false)")
        n_true = sum(targets.values())
        if n_true == 0 or (self.task == "mc1" and n_true != 1):
            raise ValueError(f"{at}: field '{key}' has {n_true} true options (expected {'exactly one' if self.task == 'mc1' else 'at least one'})")
        return targets

    def load(self) -> list[Item]:
        if self.task == "generation":
            return self._generation_items()
        items = []
        for i, rec in enumerate(self._records()):
            at = where(self.path, i)
            question = field(rec, "question", at)
            targets = self._targets(rec, at)
            item_id = f"tqa-{i:03d}"
            shown, order = permuted(list(targets), self.seed, item_id)
            labels = [targets[o] for o in shown]
            true = tuple(k for k, label in enumerate(labels) if label == 1)
            item = Item(item_id, question, shown, gold=true[0], meta={"task": self.task}, true=true if self.task == "mc2" else ())
            items.append(item)
        return items

    def score(self, item: Item, output: Output) -> Score:
        s = super().score(item, output)
        if self.task == "mc2":
            return Score(s.answer, s.correct, s.invalid, s.p_gold, score=s.p_gold if s.p_gold is not None else 0.0, invalid_kind=s.invalid_kind)
        return s

    def _generation_items(self) -> list[Item]:
        records = read_records(self.path)
        if records and (missing := [c for c in _GENERATION_COLUMNS if c not in records[0]]):
            raise ValueError(f"{self.path}: not TruthfulQA.csv: missing column(s) {', '.join(missing)}")
        items = []
        for i, rec in enumerate(records):
            at = where(self.path, i)
            for column in ("Question", "Best Answer", "Category", "Type"):
                field(rec, column, at)
            true = [a.strip() for a in (rec["Correct Answers"] or "").split(";") if a.strip()]
            false = [a.strip() for a in (rec["Incorrect Answers"] or "").split(";") if a.strip()]
            if _NO_COMMENT not in true:
                true.append(_NO_COMMENT)
            refs = {
                "best_answer": rec["Best Answer"].strip(),
                "correct_answers": "\n".join(f"- {a}" for a in true),
                "incorrect_answers": "\n".join(f"- {a}" for a in false),
            }
            meta = {"task": "generation", "category": rec["Category"], "type": rec["Type"]}
            items.append(Item(f"tqa-gen-{i:03d}", rec["Question"].strip(), (), gold=0, meta=meta, refs=refs))
        return items
