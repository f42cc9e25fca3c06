"""Option letters: lettered option lists and robust parsing of a model's single-letter answer.

Parsing is deliberately strict: a response either names exactly one of the offered letters in a
recognisable answer form, or it is invalid. Nothing is ever defaulted to an option.
"""

from __future__ import annotations

import re
import string

LETTERS = string.ascii_uppercase


def letters_for(n_options: int) -> tuple[str, ...]:
    if not 1 <= n_options <= len(LETTERS):
        raise ValueError(f"cannot letter {n_options} options (1..{len(LETTERS)} supported)")
    return tuple(LETTERS[:n_options])


def format_options(options: tuple[str, ...]) -> str:
    return "\n".join(f"{letter}. {text}" for letter, text in zip(letters_for(len(options)), options))


_DECOR = r"[\s*_`'\"]*"
# "Answer: B", "The answer is (b)", "Final answer - C." A lower-case letter counts only when bracketed or
# closing the response, so "the answer is a dog" is not read as option A.
_EXPLICIT = re.compile(
    rf"(?i:\banswer)\s*(?:is|:|-|=)?{_DECOR}(?:[(\[]([A-Za-z])[)\]]|([A-Z])(?![A-Za-z])|([a-z]){_DECOR}[.)]?{_DECOR}$)"
)
# A bare letter, optionally bracketed or emphasised: "B", "(B)", "**B**", "b."
_BARE = re.compile(rf"^{_DECOR}[(\[]?{_DECOR}([A-Za-z]){_DECOR}[)\]]?{_DECOR}[.:)]?{_DECOR}$")
# A letter that opens the response followed by a delimiter: "B. Paris", "C) the third", "(A) yes", "D: ..."
_LEADING = re.compile(rf"^{_DECOR}(?:\(([A-Za-z])\)|\[([A-Za-z])\]|([A-Za-z])[.):\]])")


def parse_letter(text: str | None, valid: tuple[str, ...]) -> str | None:
    """Return the answered letter (upper case) if the response gives one of `valid`, else None."""
    if not text:
        return None
    text = text.strip()
    for pattern in (_BARE, _LEADING, _EXPLICIT):
        match = pattern.search(text)
        if match:
            letter = next(g for g in match.groups() if g).upper()
            return letter if letter in valid else None
    return None
