"""Rubrics for LLM-as-judge scoring of free-text answers.

A rubric is a prompt template and two or more lettered levels, each with a value. The judge model reads the
question, the answer and the item's reference material, and picks a level: by answering its letter (judge mode
`letter`) or through its next-token distribution over the letters (`letter-logprob`, where the score is the
expected value). A level whose value reaches `pass` makes the answer correct.

A rubric file is TOML: `prompt` (placeholders {question}, {answer}, {references}, {persona} and any reference
the benchmark's items carry, e.g. TruthfulQA's {correct_answers}), optional `name` and `pass` (default: the
highest value), and `[[levels]]` tables with `label`, `value` and optional `description`. Built-in rubrics live
in `bench_adapters/rubrics/` and are named without the suffix.

{persona} is the person the answer is graded for: every trait of the cell's persona as "- Label: answer" lines
(persona_builder.render.trait_lines), the same whatever the condition showed the model (a format, a subset, its
own summary, or nothing: engine.plan judges the baseline's answer against each persona). The built-in
`persona_fit` quotes it, after PERSONA Bench's critic.
"""

from __future__ import annotations

import hashlib
import math
import string
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from bench_adapters.base import Item, Output, Score
from bench_adapters.choice import choice_score, letter_logps, letter_prompt, letter_score

BUILTIN_DIR = Path(__file__).parent / "rubrics"
JUDGE_MODES = ("letter", "letter-logprob")
_ALWAYS = frozenset({"question", "answer", "references", "persona"})  # placeholders every item can fill
PERSONA = "persona"


def builtin_rubrics() -> tuple[str, ...]:
    return tuple(sorted(p.stem for p in BUILTIN_DIR.glob("*.toml")))


@dataclass(frozen=True)
class Level:
    label: str
    value: float
    description: str = ""

    @property
    def text(self) -> str:
        return f"{self.label}: {self.description}" if self.description else self.label


@dataclass(frozen=True)
class Rubric:
    name: str
    prompt: str
    levels: tuple[Level, ...]
    pass_value: float
    source: str  # the file it came from, for error messages

    def __post_init__(self) -> None:
        passing = tuple(i for i, lv in enumerate(self.levels) if lv.value >= self.pass_value)
        # The levels as a lettered question: the choice scorers then parse and score the judge's verdict.
        verdict = Item(f"rubric:{self.name}", "", tuple(lv.text for lv in self.levels), gold=passing[0], true=passing)
        object.__setattr__(self, "_verdict", verdict)

    @property
    def digest(self) -> str:
        """What the judge is asked, as a hash: the manifest records it (the judge's cache keys cover it anyway)."""
        levels = "\x1e".join(f"{lv.label}\x1f{lv.description}\x1f{lv.value!r}" for lv in self.levels)
        return hashlib.sha256(f"{self.prompt}\x1d{levels}\x1d{self.pass_value!r}".encode()).hexdigest()

    @property
    def letters(self) -> tuple[str, ...]:
        return self._verdict.letters

    @property
    def placeholders(self) -> frozenset[str]:
        return frozenset(name for _, name, _, _ in string.Formatter().parse(self.prompt) if name)

    def check(self, items: Iterable[Item]) -> None:
        """Raise ValueError if some item lacks a reference the prompt quotes (before any call is made)."""
        wanted = self.placeholders - _ALWAYS
        for item in items:
            missing = wanted - set(item.refs)
            if missing:
                have = ", ".join(sorted(_ALWAYS | set(item.refs)))
                raise ValueError(
                    f"{self.source}: prompt uses {{{'}, {'.join(sorted(missing))}}}, which item {item.id} does not provide (available: {have})"
                )

    @property
    def quotes_persona(self) -> bool:
        return PERSONA in self.placeholders

    def render(self, item: Item, answer: str, persona: str | None = None) -> str:
        """The judge's prompt: the filled template, the lettered levels, and the one-letter instruction.
        `persona`: the rendered persona the answer was written for; ValueError if the rubric quotes it and it is None."""
        if persona is None and self.quotes_persona:
            raise ValueError(f"{self.source}: the prompt quotes {{persona}}, and no persona was given to grade the answer for")
        references = "\n".join(
            f"{name.replace('_', ' ').capitalize()}:{chr(10) if chr(10) in text else ' '}{text}" for name, text in item.refs.items()
        )
        fields = {**item.refs, "question": item.question, "answer": answer.strip(), "references": references, PERSONA: (persona or "").strip()}
        body = self.prompt.format_map(fields)
        return letter_prompt(body, self._verdict.options)

    def score(self, verdict: Output, mode: str) -> Score:
        """The answer's score from the judge's verdict; an unusable verdict is invalid and scores 0."""
        item, values = self._verdict, [lv.value for lv in self.levels]
        if mode == "letter":
            s = letter_score(item, verdict.text, verdict.letter_logprobs)
            value = values[item.letters.index(s.answer)] if s.answer is not None else 0.0
            return Score(s.answer, s.correct, s.invalid, s.p_gold, score=value, invalid_kind=s.invalid_kind)
        logps = letter_logps(item, verdict.letter_logprobs)
        s = choice_score(item, logps)
        if s.invalid or logps is None:
            return s
        top = max(logps)
        weights = [math.exp(v - top) for v in logps]
        expected = sum(w * v for w, v in zip(weights, values)) / sum(weights)
        return Score(s.answer, s.correct, False, s.p_gold, score=expected)


def load_rubric(spec: str, base: Path | None = None) -> Rubric:
    """A built-in rubric by name, or a rubric TOML file (relative paths against `base`)."""
    path = BUILTIN_DIR / f"{spec}.toml" if spec in builtin_rubrics() else Path(spec).expanduser()
    if not path.is_absolute() and base is not None:
        path = base / path
    if not path.is_file():
        raise ValueError(f"rubric '{spec}': no such built-in rubric ({', '.join(builtin_rubrics())}) or file ({path})")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: cannot read rubric ({exc})") from None
    return _parse(raw, path)


def _parse(raw: dict, path: Path) -> Rubric:
    problems: list[str] = []
    for key in sorted(set(raw) - {"name", "prompt", "pass", "levels"}):
        problems.append(f"{key}: unknown key (expected name, prompt, pass, levels)")
    prompt = raw.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        problems.append("prompt: required, a non-empty string with an {answer} placeholder")
        prompt = ""
    else:
        try:
            fields = list(string.Formatter().parse(prompt))
        except ValueError as exc:
            problems.append(f"prompt: not a valid template ({exc}; write a literal brace as {{{{ or }}}})")
            fields = []
        names = [name for _, name, spec, conv in fields if name is not None]
        if any(not n.isidentifier() for n in names) or any(spec or conv for _, name, spec, conv in fields if name is not None):
            problems.append("prompt: placeholders must be plain names such as {question}, without formats or indices")
        elif fields and "answer" not in names:
            problems.append("prompt: must contain {answer}, where the answer to grade goes")
    levels = _levels(raw.get("levels"), problems)
    values = [lv.value for lv in levels]
    pass_value = raw.get("pass", max(values) if values else 0.0)
    if isinstance(pass_value, bool) or not isinstance(pass_value, (int, float)):
        problems.append(f"pass: expected a number, got {pass_value!r}")
    elif values and not min(values) < pass_value <= max(values):
        problems.append(f"pass: {pass_value} must lie above the lowest level value and at most the highest ({min(values)}..{max(values)})")
    name = raw.get("name", path.stem)
    if not isinstance(name, str):
        problems.append(f"name: expected a string, got {name!r}")
    if problems:
        raise ValueError("\n".join(f"{path}: {p}" for p in problems))
    return Rubric(name, prompt, levels, float(pass_value), str(path))


def _levels(raw: object, problems: list[str]) -> tuple[Level, ...]:
    if not isinstance(raw, list) or not 2 <= len(raw) <= 26:
        problems.append("levels: expected 2 to 26 [[levels]] tables")
        return ()
    levels = []
    for i, table in enumerate(raw):
        where = f"levels[{i}]"
        if not isinstance(table, dict):
            problems.append(f"{where}: expected a table")
            continue
        for key in sorted(set(table) - {"label", "value", "description"}):
            problems.append(f"{where}.{key}: unknown key (expected label, value, description)")
        label, value, description = table.get("label"), table.get("value"), table.get("description", "")
        if not isinstance(label, str) or not label.strip():
            problems.append(f"{where}.label: required, a non-empty string")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append(f"{where}.value: required, a number")
        if not isinstance(description, str):
            problems.append(f"{where}.description: expected a string")
        if isinstance(label, str) and isinstance(value, (int, float)) and not isinstance(value, bool) and isinstance(description, str):
            levels.append(Level(label.strip(), float(value), description.strip()))
    labels = [lv.label for lv in levels]
    if len(set(labels)) != len(labels):
        problems.append("levels: labels must be distinct")
    return tuple(levels)
