"""Prompt templates (grid key `template`): a Jinja2 file or a named preset, rendered into chat turns or one
completion string per cell.

Rendering is sandboxed (`jinja2.sandbox.ImmutableSandboxedEnvironment`: no attribute starting with `_`, no
method that mutates a value, so a grid file cannot reach Python internals) and strict (`StrictUndefined`: a
field the data lacks is an error, never an empty string). Every error is a `TemplateError` whose message names
the template file, the line and what was wrong; engine.plan renders every item once before any call, so a
missing field stops the run before anything is written.

A template sees `item`, `persona` (None for the baseline), `condition`, `shots`, `format` and `mode` (README,
"Prompt templates"). Chat turns are marked with `{{ turn("system") }}`, `{{ turn("user") }}` and
`{{ turn("assistant") }}`: the text after a marker, up to the next one, is that turn's content (surrounding
whitespace stripped; a turn left empty, e.g. the system turn of the baseline, is dropped). Text before the
first marker must be blank; a chat template without markers is one user turn. In completion format the
rendered text is the prompt, byte for byte, and markers are an error.

In likelihood mode each option is scored as `target_delimiter + option` after the prompt, as lm-eval's
`target_delimiter` (lm_eval/api/task.py @ 4e7e0d4): a template may set it with
`{% set target_delimiter = "" %}`; by default it is "" in chat format (options follow the assistant header)
and " " in completion format (lm-eval's default).

Presets ship in engine/presets/ as `<preset>/<benchmark>.jinja`; `mtpa` is no file: it names the adapters'
own prompts (bench_adapters), today's prompts with unchanged cache keys.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import TemplateError

FORMATS = ("chat", "completion")
ROLES = ("system", "user", "assistant")
MTPA = "mtpa"  # the built-in prompts: no template file
PRESETS_DIR = Path(__file__).parent / "presets"
# The scoring modes a preset's prompts make sense in: lm-eval's TruthfulQA and CrowS-Pairs tasks are
# `output_type: multiple_choice` (each option scored by its log-likelihood; no option is ever shown).
PRESET_MODES: dict[str, tuple[str, ...]] = {"lm-eval": ("likelihood",)}
# A sentinel no dataset or persona text contains (a NUL): turn() emits it, render() splits on it.
_TURN = "\x00turn:{}\x00"
_TURN_RE = re.compile("\x00turn:([a-z]+)\x00")
_DEFAULT_DELIMITER = {"chat": "", "completion": " "}


class Fields(dict):
    """A template variable (item, persona, condition, a shot): a dict whose missing keys name what is there."""

    def __init__(self, label: str, values: Mapping[str, Any]) -> None:
        super().__init__(values)
        self.label = label


def presets() -> dict[str, tuple[str, ...]]:
    """Shipped presets → the benchmarks each has a template for (`mtpa`: every benchmark, no files)."""
    found = {d.name: tuple(sorted(p.stem for p in d.glob("*.jinja"))) for d in sorted(PRESETS_DIR.iterdir()) if d.is_dir()}
    return {MTPA: (), **found}


def _environment() -> Any:
    from jinja2 import StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class Strict(StrictUndefined):
        """StrictUndefined whose message names the variable and its fields: "item has no field 'context'"."""

        @property
        def _undefined_message(self) -> str:
            obj = self._undefined_obj
            if isinstance(obj, Fields) and self._undefined_hint is None:  # a hint: the sandbox's refusal
                return f"{obj.label} has no field {self._undefined_name!r} (it has: {', '.join(sorted(obj))})"
            if obj is None and self._undefined_hint is None:  # most often `persona` in the baseline condition
                return f"field {self._undefined_name!r} of None (the baseline has no persona: guard it with {{% if persona %}})"
            return super()._undefined_message

    env = ImmutableSandboxedEnvironment(undefined=Strict, keep_trailing_newline=False, autoescape=False)
    env.globals["turn"] = _turn
    return env


def _turn(role: str) -> str:
    if role not in ROLES:
        raise ValueError(f"turn({role!r}): expected one of {', '.join(ROLES)}")
    return _TURN.format(role)


@dataclass(frozen=True)
class Rendered:
    """One cell's prompt: chat turns, or (completion format) one string; the likelihood options' prefix."""

    messages: tuple[tuple[str, str], ...]  # (role, content); () in completion format
    prompt: str | None  # completion format: the prompt as sent; None in chat format
    target_delimiter: str


class PromptTemplate:
    """A compiled template; `name` is what errors call it (the file's path)."""

    def __init__(self, source: str, filename: str) -> None:
        from jinja2 import TemplateSyntaxError, nodes

        self.filename = filename
        env = _environment()
        try:
            tree = env.parse(source, filename, filename)
            # A template is one file: there is no loader to find another (and a grid's files are its only inputs).
            for node in tree.find_all((nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)):
                tag = {nodes.Include: "include", nodes.Import: "import", nodes.FromImport: "from … import", nodes.Extends: "extends"}[type(node)]
                raise TemplateError(f"{filename}: line {node.lineno}: {{% {tag} %}} is not supported: a template is one self-contained file")
            self._template = env.template_class.from_code(env, env.compile(tree, filename, filename), env.globals, None)
        except TemplateSyntaxError as exc:
            raise TemplateError(f"{filename}: line {exc.lineno}: template syntax error: {exc.message}") from None

    @classmethod
    def load(cls, spec: str, benchmark: str, root: Path) -> PromptTemplate | None:
        """The grid's `template` value: a preset name or a .jinja file (relative to `root`); None for `mtpa`.

        Raises TemplateError: unknown preset, a preset without a template for this benchmark, an unreadable
        file, bad syntax."""
        if spec == MTPA:
            return None
        known = presets()
        if spec in known:
            path = PRESETS_DIR / spec / f"{benchmark}.jinja"
            if not path.is_file():
                raise TemplateError(f"preset '{spec}' has no template for {benchmark} (it has: {', '.join(known[spec])})")
        else:
            path = Path(spec).expanduser()
            path = path if path.is_absolute() else root / path
            if not spec.endswith(".jinja"):
                raise TemplateError(f"'{spec}' is neither a preset ({', '.join(known)}) nor a .jinja file")
        try:
            source = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise TemplateError(f"{path}: cannot read the template ({getattr(exc, 'strerror', None) or exc})") from None
        return cls(source, str(path))

    def render(self, variables: Mapping[str, Any], fmt: str) -> Rendered:
        """Render one cell; raises TemplateError naming the file, the line and the missing field or refused access."""
        from jinja2.exceptions import SecurityError, UndefinedError

        try:
            module = self._template.make_module(dict(variables))
            text = str(module)
            delimiter = getattr(module, "target_delimiter", _DEFAULT_DELIMITER[fmt])
        except UndefinedError as exc:
            raise TemplateError(f"{self.filename}: {self._line(exc)}missing field: {exc.message}") from None
        except SecurityError as exc:
            raise TemplateError(f"{self.filename}: {self._line(exc)}refused by the sandbox: {exc}") from None
        except ValueError as exc:  # turn("bogus"), int("x"): the message says what was wrong
            raise TemplateError(f"{self.filename}: {self._line(exc)}{exc}") from None
        except Exception as exc:  # any other filter or test failing on the data: still one clear line
            raise TemplateError(f"{self.filename}: {self._line(exc)}{type(exc).__name__}: {exc}") from None
        if not isinstance(delimiter, str):
            raise TemplateError(f"{self.filename}: target_delimiter must be a string, got {delimiter!r}")
        parts = _TURN_RE.split(text)
        if fmt == "completion":
            if len(parts) > 1:
                raise TemplateError(f'{self.filename}: format = "completion" takes one prompt string, but the template marks chat turns (turn("{parts[1]}"))')
            return Rendered((), text, delimiter)
        if len(parts) > 1 and parts[0].strip():
            raise TemplateError(f"{self.filename}: text before the first turn() marker: {parts[0].strip()[:60]!r}")
        turns = _turns([("user", text)] if len(parts) == 1 else zip(parts[1::2], parts[2::2]))
        if not turns:
            raise TemplateError(f'{self.filename}: renders no chat turn (an empty prompt can only be sent with format = "completion")')
        return Rendered(turns, None, delimiter)

    def _line(self, exc: BaseException) -> str:
        """'line N: ' of the template line that raised: the innermost frame of the compiled template, mapped
        back to its source line through Jinja's debug info (make_module does not rewrite tracebacks)."""
        lines = [f.lineno for f in traceback.extract_tb(exc.__traceback__) if f.filename == self.filename and f.lineno]
        return f"line {self._template.get_corresponding_lineno(lines[-1])}: " if lines else ""


def _turns(pairs: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    return tuple((role, content.strip()) for role, content in pairs if content.strip())


def item_fields(item: Any, prompt: str, label: str = "item") -> Fields:
    """A benchmark item as a template sees it (bench_adapters.base.Item; `prompt`: the adapter's own task text).

    Fields: id, question, options (texts, in the order shown), letters, choices (each {letter, text}),
    options_text ("A. ...\\nB. ..." as the built-in prompts show them), gold and gold_text (the correct
    option's letter and text), true (the letters of every correct option), context (the item's context
    field, "" when it has none), prompt, and every metadata and reference field the adapter keeps (e.g.
    category; TruthfulQA generation's best_answer). An item without options has options = [] and gold "".
    """
    from bench_adapters.letters import format_options

    letters = list(item.letters)
    options = list(item.options)
    fields: dict[str, Any] = {**item.meta, **item.refs}
    fields.update(
        id=item.id,
        question=item.question,
        options=options,
        letters=letters,
        choices=[Fields("option", {"letter": k, "text": t}) for k, t in zip(letters, options)],
        options_text=format_options(item.options) if options else "",
        gold=letters[item.gold] if letters else "",
        gold_text=options[item.gold] if options else "",
        true=[letters[i] for i in item.accepted] if letters else [],
        context=item.meta.get("context", ""),
        prompt=prompt,
    )
    return Fields(label, fields)


def persona_fields(persona: Any, text: str, traits: Mapping[str, Any]) -> Fields:
    """A persona as a template sees it: id, source, text (rendered in the condition's format and trait subset),
    traits ({key: answer} of the traits the condition shows) and each shown trait by its key (persona.age)."""
    answers = {k: t.answer for k, t in traits.items()}
    return Fields("persona", {**answers, "id": persona.id, "source": persona.source, "text": text, "traits": answers})


def condition_fields(condition: Any) -> Fields:
    return Fields("condition", {"name": condition.name, "format": condition.format, "traits": condition.traits, "placement": condition.placement})
