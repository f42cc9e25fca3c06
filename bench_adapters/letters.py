"""Option letters: lettered option lists, and reading a model's letter answer as a careful grader would.

`parse_letter` works by kinds of rule, not by listed strings:

1. Normalise Unicode and markup: NFKC (full-width Ａ, （Ｂ）, ：), CJK punctuation (。、【】「」), curly quotes, a
   `<think>` block dropped, `<answer>X</answer>` and LaTeX `\\boxed{X}` read as an answer cue, `$B$`,
   `\\text{B}`, `**C**`, backticks and Markdown headings stripped, ~~struck-through~~ text dropped.
2. Find *answer mentions*, in three tiers (the first tier that has any decides):
   - explicit: an answer cue ("Answer:", "The answer is", "Final answer", "I choose", "It's", "so"; after a
     hedge, "I think B", "Probably C", capitals only) followed by a standalone option token, or "B is correct" /
     "option B is the best answer";
   - answer form: an option token opening the reply or a line, followed by the end, a line break,
     punctuation, a dash, a comma, a connective ("because") or that option's text ("C - the hills…",
     "B\\n\\nExplanation: …", "B, because…", "Option B", "(A) yes"); or a reply that is exactly one option's text;
   - reference: a bracketed "(C)" or a prefixed "option C" anywhere.
   A token is *standalone* when it cannot be a word: "Answer: I don't know" and "I cannot answer: A question
   like…" name no option (a capital that starts a word is not an answer). A negated token ("not A", "rather
   than B") is not a mention, and a refused cue ("cannot answer") is not a cue.
3. Options joined in answer form ("A or B", "(A) or (B)", "B and C") are all mentioned, so the reply is
   ambiguous; so is a reply naming two different options in the deciding tier ("Answer: A\\nAnswer: B", a
   reply listing the options back, "B. <option C's text>", "A: B"). Ambiguous is invalid. A leading "A:" that
   is followed by prose ("A: I think so") is a Q/A-style answer line, not option A.
4. A self-correction ("A… Actually, no: B", "wait", "on second thought") splits the reply: the last part that
   mentions an option decides, as a grader takes the last explicit answer.

Whatever no rule reads is invalid (None): nothing is ever defaulted to an option, and invalid is always better
than wrong. The rules were checked against the replies in tests/bench_adapters/test_letters.py, among them
the failing inputs of shared/cases/2026-11-29/letter-* (kinds of lm-evaluation-harness#4187/#4188 and
inspect_ai#2216).
"""

from __future__ import annotations

import functools
import re
import string
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

LETTERS = string.ascii_uppercase


def letters_for(n_options: int) -> tuple[str, ...]:
    if not 1 <= n_options <= len(LETTERS):
        raise ValueError(f"cannot letter {n_options} options (1..{len(LETTERS)} supported)")
    return tuple(LETTERS[:n_options])


def format_options(options: tuple[str, ...]) -> str:
    return "\n".join(f"{letter}. {text}" for letter, text in zip(letters_for(len(options)), options))


# ---- 1. normalisation -------------------------------------------------------------------------------------

# What NFKC leaves alone: CJK sentence punctuation and brackets, curly quotes, and the Chinese "answer (is)".
_CJK = str.maketrans({"。": ".", "、": ",", "【": "[", "】": "]", "「": '"', "」": '"', "『": '"', "』": '"',
                      "〔": "(", "〕": ")", "“": '"', "”": '"', "‘": "'", "’": "'", "\u200b": None, "\u200c": None,
                      "\u200d": None, "\ufeff": None})
_REWRITES = (
    (re.compile(r"答案\s*(?:是|为|為)"), "answer is "),
    (re.compile(r"答案"), "answer"),
    (re.compile(r"<think>.*?</think>", re.S | re.I), " "),  # a reasoning model's scratchpad is not its answer
    (re.compile(r"~~.*?~~", re.S), " "),  # struck through: withdrawn
    (re.compile(r"<answer>\s*(.*?)\s*</answer>", re.S | re.I), r"\nAnswer: \1\n"),
    (re.compile(r"</?(?:b|i|u|em|strong|p|br|span|code|final_answer)\s*/?>", re.I), ""),
)
_LATEX_WRAPPER = re.compile(r"\\(?:text|textbf|textrm|mathrm|mathbf|mbox|mathit|emph)\s*\{([^{}]*)\}")
_BOXED = re.compile(r"\\boxed\s*\{([^{}]*)\}")
_LATEX_DELIMS = re.compile(r"\\[()\[\]]|\$")
_MARKUP = re.compile(r"[*`]+|(?<![A-Za-z0-9])_+|_+(?![A-Za-z0-9])|^[ \t]*(?:#+|>)[ \t]*", re.M)


def normalise(text: str) -> str:
    """The reply as plain text: Unicode compatibility forms folded, markup and LaTeX unwrapped, trimmed."""
    text = unicodedata.normalize("NFKC", text).translate(_CJK)
    for pattern, repl in _REWRITES:
        text = pattern.sub(repl, text)
    while True:  # innermost first: \boxed{\text{B}}
        unwrapped = _LATEX_WRAPPER.sub(r"\1", text)
        if unwrapped == text:
            break
        text = unwrapped
    text = _BOXED.sub(r"\nAnswer: \1\n", text)
    text = _LATEX_DELIMS.sub("", text)
    return _MARKUP.sub("", text).strip()


# ---- 2. answer mentions ---------------------------------------------------------------------------------

EXPLICIT, FORM, REFERENCE = 0, 1, 2  # mention tiers, strongest first


@dataclass(frozen=True, slots=True)
class _Token:
    letter: str  # as written (case kept: a lower-case letter needs a firmer delimiter)
    start: int
    end: int
    marked: bool  # bracketed, quoted or prefixed ("option B"): cannot be an English word


_TOKEN = re.compile(
    r"(?P<prefix>(?:option|choice|letter)\s+)?"
    r"(?:(?P<open>[(\[{\"'])\s*(?P<inner>[A-Za-z])\s*[)\]}\"']|(?P<plain>[A-Za-z])(?![A-Za-z0-9'\-]))",
    re.I,
)
# A cue, then an optional verb and filler, then the token ("The correct answer to this question is: (B)").
_CUE = re.compile(
    r"(?:(?:\b(?:(?:final|correct|right|best|my|the)\s+)*answer|\b(?:final|correct|right|best|my)\s+(?:choice|option|selection))\b"
    r"(?:\s+(?:to|for)\s+(?:this|the)\s+question)?"
    r"\s*(?:(?:is|would\s+be|will\s+be|should\s+be|must\s+be|seems\s+to\s+be|=|:|-|—|–)\s*)?"
    r"|\bans\b\.?\s*:\s*"
    r"|\b(?:I(?:\s+would|\s+will|'d|'ll)\s+(?:choose|pick|select|go\s+with|say|guess)|I\s+(?:choose|pick|select|say|mean)"
    r"|it(?:\s+is|'s|\s+must\s+be|\s+has\s+to\s+be)|I(?:'m|\s+am)\s+going\s+with)\s*:?\s*"
    r"|\b(?:choice|option|selection|letter)\s*[:=]\s*"
    r"|\b(?:therefore|thus|so|hence|but|rather),?\s+)"
    r"(?:(?:likely|probably|clearly|definitely|therefore|then|actually|most\s+likely)\s+)?:?\s*",
    re.I,
)
# Hedged cues ("I think B", "Probably C."): after these a lower-case "a" is the article, so only capitals count.
_HEDGE = re.compile(r"(?:\bI\s+(?:think|believe|guess)|\b(?:probably|likely|definitely|most\s+likely)),?\s+", re.I)
# "B is correct", "option C is the best answer", "(A) is right", "B is my answer", "B seems most likely".
_IS_CORRECT = re.compile(
    r"\s+(?:is|seems|would\s+be|must\s+be)\s+(?:the\s+|my\s+)?(?:correct|right|best|true|answer|choice"
    # "B seems most likely.", but not "A is likely wrong": these predicates must close the clause
    r"|(?:the\s+)?(?:most\s+)?(?:likely|plausible|accurate|appropriate)(?=\s*(?:[.,;!?]|$)))\b",
    re.I,
)
_LINE_START = re.compile(r"^[ \t]*(?:[-•][ \t]+)?", re.M)
_MARKED_ANYWHERE = re.compile(r"(?<![A-Za-z0-9])(?:[(\[]\s*[A-Z]\s*[)\]]|(?i:option|choice)\s+[A-Za-z](?![A-Za-z0-9]))")
_JOIN = re.compile(r"\s*(?:,|/|&|\band/or\b|\bor\b|\band\b|\bnor\b|\bvs\.?|\bversus\b)\s*(?:(?:maybe|perhaps|possibly)\s+)?", re.I)
_NEGATED = re.compile(
    r"(?:\bnot|n't|\bnever|\bthan|\binstead\s+of|\bexcept|\bexcluding|\bneither|\bnor|\bcannot|\bunable\s+to"
    r"|\brefuse\s+to)\s+(?:(?:option|choice|letter|the|just|only|really|be|answer|say|pick|choose)\s+)*$",
    re.I,
)
_TOKEN_AT_END = re.compile(r"(?:(?:option|choice|letter)\s+)?(?:[(\[]\s*[A-Za-z]\s*[)\]]|[A-Za-z])$", re.I)
_COLON = re.compile(r"[ \t]*:[ \t]*")
_LISTED = re.compile(r"(?<![A-Za-z0-9])([A-Z])[.):]\s+")
_CONNECTIVES = frozenset({"because", "since", "as", "given", "due"})
_END_PUNCT = re.compile(r"[.!?;:)\]]+(?=\s|$)")
_DASH = re.compile(r"[ \t]*(?:[-–—]+(?:\s|$)|[–—])")
_WORD = re.compile(r"[ \t]+([^\s,.;:!?]+)")
_WORD_LETTERS = frozenset("AI")  # capitals that are English words ("A question…", "I don't know")


def _key(text: str) -> str:
    """Text compared with an option's: case-folded, spaces collapsed, outer punctuation and quotes dropped."""
    return " ".join(text.casefold().split()).strip(" .,;:!?\"'()[]")


@functools.lru_cache(maxsize=4096)
def _option_keys(options: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(_key(o) for o in options)


def _option_follows(rest: str, letter: str, options: tuple[str, ...]) -> bool:
    """Whether `rest` starts with the text of `letter`'s option (`options`: the options' `_key`s)."""
    index = LETTERS.find(letter.upper())
    option = options[index] if 0 <= index < len(options) else ""
    if not option:
        return False
    text = " ".join(rest[: 4 * len(option) + 16].casefold().split()).lstrip(" .,;:-–—()")
    return text.startswith(option) and (len(text) == len(option) or not text[len(option)].isalnum())


def _stands_alone(s: str, tok: _Token, options: tuple[str, ...]) -> bool:
    """Whether what follows the token makes it an option rather than a word ("A question", "I don't")."""
    if tok.marked:
        return True
    rest = s[tok.end :]
    if not rest.strip(" \t") or rest.lstrip(" \t").startswith("\n") or _END_PUNCT.match(rest):
        return True
    if tok.letter.islower() and tok.letter.upper() in _WORD_LETTERS:  # "a dog", "i think"
        return False
    if _option_follows(rest, tok.letter, options) or _DASH.match(rest):
        return True
    if rest.startswith(","):  # "B, because…", but "I, for one, …" is a sentence
        if tok.letter not in _WORD_LETTERS:
            return True
        rest = rest[1:]
    word = _WORD.match(rest)
    return word is not None and word.group(1).lower() in _CONNECTIVES


def _token(s: str, at: int) -> _Token | None:
    m = _TOKEN.match(s, at)
    if m is None or (at > 0 and (s[at - 1].isalnum() or s[at - 1] == "'")):
        return None
    letter = m.group("inner") or m.group("plain")
    # "option B" is marked; "an option a user…" is not (a lower-case letter needs a firmer delimiter).
    return _Token(letter, m.start(), m.end(), bool(m.group("open") or (m.group("prefix") and letter.isupper())))


def _negated(s: str, at: int) -> bool:
    return _NEGATED.search(s[max(0, at - 40) : at]) is not None


def _read(s: str, at: int, options: tuple[str, ...]) -> list[str]:
    """The option letters named in answer form at `at`: one, several ("A or B"), or none."""
    first = _token(s, at)
    if first is None or _negated(s, at):
        return []
    found, last = [first], first
    while (join := _JOIN.match(s, last.end)) and (nxt := _token(s, join.end())):
        # A following word-capital joins the list only when it stands alone: "B, I think" is B.
        if nxt.letter.islower() != first.letter.islower() or (nxt.letter in _WORD_LETTERS and not _stands_alone(s, nxt, options)):
            break
        found.append(nxt)
        last = nxt
    if len(found) > 1:
        return [t.letter.upper() for t in found]
    return [first.letter.upper()] if _stands_alone(s, first, options) else []


def _mentions(s: str, options: tuple[str, ...]) -> dict[int, list[str]]:
    """Tier -> letters mentioned in `s` (one reply, or one part of a self-corrected reply)."""
    tiers: dict[int, list[str]] = {EXPLICIT: [], FORM: [], REFERENCE: []}
    for cue in _CUE.finditer(s):
        if not _negated(s, cue.start()):
            tiers[EXPLICIT] += _read(s, cue.end(), options)
    for cue in _HEDGE.finditer(s):
        if not _negated(s, cue.start()) and (tok := _token(s, cue.end())) and tok.letter.isupper():
            tiers[EXPLICIT] += _read(s, cue.end(), options)
    for m in _IS_CORRECT.finditer(s):
        tok = _last_token_before(s, m.start())
        if tok is not None and tok.letter.isupper() and not _negated(s, tok.start):
            tiers[EXPLICIT].append(tok.letter)
    for line in _LINE_START.finditer(s):
        letters = _read(s, line.end(), options)
        colon = _COLON.match(s, _token(s, line.end()).end) if letters else None
        if colon and letters == ["A"] and not _qa_safe(s, colon.end(), options):
            continue  # "A: I think so" is a Q/A-style answer line, not option A
        tiers[FORM] += letters
        if len(letters) == 1:
            tiers[FORM] += _contradicting_text(s, line.end(), letters[0], options)
            if colon:  # "A: B": a Q/A-style answer line or option A then B; either way two options are named
                tiers[FORM] += _read(s, colon.end(), options)
    if options and (whole := _key(s)):
        tiers[FORM] += [LETTERS[i] for i, option in enumerate(options) if option == whole]
    # The options listed back on one line ("A. Ape B. Bear C. Crow"): each letter followed by its own text.
    candidates = list(_LISTED.finditer(s)) if options else []
    if len({m.group(1) for m in candidates}) > 1:
        listed = {m.group(1) for m in candidates if _option_follows(s[m.end() :], m.group(1), options)}
        tiers[FORM] += sorted(listed) if len(listed) > 1 else []
    for m in _MARKED_ANYWHERE.finditer(s):
        tiers[REFERENCE] += _read(s, m.start(), options)
    return tiers


def _qa_safe(s: str, at: int, options: tuple[str, ...]) -> bool:
    """After a leading "A:", what makes it option A: nothing more on the line, option A's text, or a token."""
    line = s[at:].split("\n", 1)[0]
    return not line.strip() or _option_follows(line, "A", options) or bool(_read(s, at, options))


def _last_token_before(s: str, end: int) -> _Token | None:
    base = max(0, end - 24)  # a token with its prefix is short: search a window, not the whole reply
    m = _TOKEN_AT_END.search(s, base, end)
    return _token(s, m.start()) if m else None


def _contradicting_text(s: str, at: int, letter: str, options: tuple[str, ...]) -> list[str]:
    """'B. <option C's text>': the letter and the text disagree, so the text's letter is mentioned too."""
    tok = _token(s, at)
    if tok is None or not options or _option_follows(s[tok.end :], letter, options):
        return []
    rest = s[tok.end :].split("\n", 1)[0]
    return [LETTERS[i] for i in range(len(options)) if LETTERS[i] != letter and _option_follows(rest, LETTERS[i], options)]


# ---- 4. self-correction ------------------------------------------------------------------------------------

_CORRECTION = re.compile(
    r"(?:\b(?:correction|on\s+second\s+thought|on\s+reflection|scratch\s+that|let\s+me\s+reconsider"
    r"|I\s+take\s+(?:that|it)\s+back)\b"
    # These are also ordinary words ("it is actually B", "I mean A"): a correction only before a pause or "no".
    r"|\b(?:actually|wait|oops|sorry|I\s+mean)\b(?=\s*(?:[,:;.!\-–—]|no\b))"
    r"|(?<=[.!?\n])\s*no\b(?=\s*[,:;!.-]))"
    r"[\s,:;.!\-–—]*(?:no\b[\s,:;.!\-–—]*)?",
    re.I,
)


# The common reply ("B", "(c)", "D."), read without the full pass.
_BARE = re.compile(r"\s*[(\[]?\s*([A-Za-z])\s*[)\]]?\s*[.:]?\s*")


def parse_letter(text: str | None, valid: tuple[str, ...], options: Sequence[str] = ()) -> str | None:
    """The option letter (upper case) a reply gives, or None when it gives none of `valid` unambiguously.

    `text`: the model's reply. `valid`: the offered letters (A, B, … in order). `options`: the options' texts in
    the same order, optional; with them a reply that is exactly an option's text, or a leading letter followed
    by its option's text, is read, and a letter followed by another option's text is ambiguous.
    """
    if not text:
        return None
    if bare := _BARE.fullmatch(text):
        letter = bare.group(1).upper()
        return letter if letter in valid else None
    s, keys = normalise(text), _option_keys(tuple(options))
    corrections = list(_CORRECTION.finditer(s))
    bounds = [0, *(m.end() for m in corrections), len(s)]
    starts = [0, *(m.start() for m in corrections), len(s)]
    # Part k runs from the end of correction k-1 to the start of correction k; the last part with a mention decides.
    for k in range(len(bounds) - 2, -1, -1):
        part = s[bounds[k] : starts[k + 1]].strip()
        tiers = _mentions(part, keys) if part else {}
        for tier in (EXPLICIT, FORM, REFERENCE):
            named = set(tiers.get(tier, ()))
            if named:
                answer = named.pop()
                return answer if not named and answer in valid else None
    return None
