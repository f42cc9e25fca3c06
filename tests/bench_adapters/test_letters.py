"""The answer parser, rule by rule, on realistic replies with their right reading (None = invalid).

Each table is one kind of rule from bench_adapters/letters.py; the first rows of several are the failing
inputs of shared/cases/2026-11-29/letter-*/rules.json, whose repro.sh scripts run at the end.
"""

from __future__ import annotations

import json
import string
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench_adapters.letters import format_options, letters_for, normalise, parse_letter

ANIMALS = ("Ape", "Bear", "Crow", "Deer")  # the shared cases' coin question; gold B
PEAKS = ("Mt Alba", "Mt Brin", "Mt Cor", "Mt Dree", "Mt Esk", "Mt Fal", "Mt Gorn", "Mt Hale", "Mt Ivo", "Mt Jarl")
METALS = ("Zinc", "Lead", "Tin", "Iron")


def read(reply: str, options: tuple[str, ...] = ANIMALS) -> str | None:
    return parse_letter(reply, letters_for(len(options)), options)


# No option named: a capital that starts a word after an answer cue is not an option (letter-refusal-read-as-option).
REFUSALS = [
    ("Answer: I don't know.", PEAKS, None),
    ("I cannot answer: A question like this depends on where one grew up.", ANIMALS, None),
    ("Answer: A question like this has no single answer.", ANIMALS, None),
    ("I don't know.", PEAKS, None),
    ("I'm not sure.", PEAKS, None),
    ("As an AI, I cannot choose.", PEAKS, None),
    ("I, for one, think it is the bear.", PEAKS, None),
    ("Answer: It depends on the region.", ANIMALS, None),
    ("I cannot answer that.", ANIMALS, None),
    ("A dog barks at the crow.", ANIMALS, None),
    ("the answer is a dog", ANIMALS, None),
    ("None of the above.", ANIMALS, None),
    ("Answer: None", ANIMALS, None),
    ("e.g. the bear", ANIMALS, None),
    ("I think a", ANIMALS, None),
    ('A is likely wrong.', ANIMALS, None),
    ("I'd guess a bear", ANIMALS, None),
    ('It is likely a bear.', ANIMALS, None),
    ('A: I think so', ANIMALS, None),
    ('A bear.', ANIMALS, None),
    ('It is a bear', ANIMALS, None),
    ("Hmm, I'm not sure, maybe B?", ANIMALS, None),
    # ...while the same letters standing alone are answers.
    ("Answer: I", PEAKS, "I"),
    ("I", PEAKS, "I"),
    ("I. Mt Ivo", PEAKS, "I"),
    ("The answer is A.", ANIMALS, "A"),
]

# Two or more different options offered in answer form are ambiguous (letter-hedge-two-letters).
AMBIGUOUS = [
    ("Answer: A or B, I cannot decide.", ANIMALS, None),
    ("(A) or (B)", ANIMALS, None),
    ("A or B", ANIMALS, None),
    ("Either (A) or (C).", ANIMALS, None),
    ("B and C are both correct.", ANIMALS, None),
    ("Both A and D.", ANIMALS, None),
    ("A, B", ANIMALS, None),
    ("B/C", ANIMALS, None),
    ("Answer: N/A", ANIMALS, None),
    ("Neither A nor B.", ANIMALS, None),
    ("Answer: A\nAnswer: B", ANIMALS, None),
    ("I think (A) and (C) both fit.", ANIMALS, None),
    ("A. Ape\nB. Bear\nC. Crow\nD. Deer", ANIMALS, None),  # the options listed back
    ("A. Ape B. Bear C. Crow D. Deer", ANIMALS, None),
    ("C) Crow\nD) Deer", ANIMALS, None),
    ("C. Bear", ANIMALS, None),  # the letter says C, the text says B
    ("The answer is B or C.", ANIMALS, None),
    ("E", ANIMALS, None),  # one option, but not one of the four offered
    ("Answer: E", ANIMALS, None),
    ('The answer is C.\n\nFinal answer: D', ANIMALS, None),
    ('A: B', ANIMALS, None),
    ('Q: Which animal?\nA: B', ANIMALS, None),
    ('B. Bear\n\nA. Ape is incorrect because apes are rare.', ANIMALS, None),
    ('D. Ape', ANIMALS, None),
    ('So, A or C.', ANIMALS, None),
]

# A leading letter followed by a line break, punctuation, a dash, a comma, a connective or its option's text
# is an answer (letter-then-explanation-invalid).
LEADING = [
    ("B\n\nExplanation: the bear appears on most coins.", ANIMALS, "B"),
    ("C - the hills are known for it.", METALS, "C"),
    ("B, because bears are on the coin.", ANIMALS, "B"),
    ("B because bears are on the coin.", ANIMALS, "B"),
    ("A, because apes are on it.", ANIMALS, "A"),
    ("B, I think.", ANIMALS, "B"),
    ("Option B", ANIMALS, "B"),
    ("option b", ANIMALS, "B"),
    ("B. Bear", ANIMALS, "B"),
    ("B) Bear", ANIMALS, "B"),
    ("B: Bear", ANIMALS, "B"),
    ("B Bear", ANIMALS, "B"),
    ("A Ape", ANIMALS, "A"),
    ("B (Bear)", ANIMALS, "B"),
    ("C\u2014the crow.", ANIMALS, "C"),
    ("D -- deer", ANIMALS, "D"),
    ("B.\n\nThe bear is on the coin because it is the national animal.", ANIMALS, "B"),
    ("b. because reasons", ANIMALS, "B"),
    ("Bear", ANIMALS, "B"),  # exactly an option's text
    ("bear.", ANIMALS, "B"),
    ('B.Bear', ANIMALS, 'B'),
    ('B..', ANIMALS, 'B'),
    ('B!', ANIMALS, 'B'),
    ('**B. Bear**\n\nThe bear appears on the coin of Mire.', ANIMALS, 'B'),
    ('A: Ape', ANIMALS, 'A'),
    ('- B', ANIMALS, 'B'),
    ('B?', ANIMALS, 'B'),
    ('Bear (B)', ANIMALS, 'B'),
]

# Answer cues followed by a standalone option token.
CUES = [
    ("The correct answer is B.", ANIMALS, "B"),
    ("The answer is (b)", ANIMALS, "B"),
    ("Final answer: D", ANIMALS, "D"),
    ("ANSWER: C", ANIMALS, "C"),
    ("Answer - D", ANIMALS, "D"),
    ("Answer:\nB", ANIMALS, "B"),
    ("The answer to this question is: (B)", ANIMALS, "B"),
    ("Therefore, the answer is A.", ANIMALS, "A"),
    ("The answer is c because crows are clever.", ANIMALS, "C"),
    ("I would choose B.", ANIMALS, "B"),
    ("I'd go with C", ANIMALS, "C"),
    ("I'm going with A.", ANIMALS, "A"),
    ("I choose A.", ANIMALS, "A"),
    ("It's B.", ANIMALS, "B"),
    ("I think it's D.", ANIMALS, "D"),
    ("I think B.", ANIMALS, "B"),
    ("Probably C.", ANIMALS, "C"),
    ("Choice: B", ANIMALS, "B"),
    ("Correct option: B", ANIMALS, "B"),
    ("The best choice is D.", ANIMALS, "D"),
    ("Option B is correct.", ANIMALS, "B"),
    ("B is correct.", ANIMALS, "B"),
    ("A is correct.", ANIMALS, "A"),
    ("D is the answer.", ANIMALS, "D"),
    ("I think A is wrong, B is right.", ANIMALS, "B"),
    ("I'd say B, but C is also possible.", ANIMALS, "B"),
    # An explicit answer outranks options merely listed or discussed around it.
    ("A. Ape\nB. Bear\nC. Crow\nD. Deer\n\nThe answer is B.", ANIMALS, "B"),
    ("The answer is B.\n\nA) is wrong since apes are rare.\nC) is wrong too.", ANIMALS, "B"),
    ("Answer: B\nExplanation: Option A is wrong.", ANIMALS, "B"),
    ("B. Option A is wrong because apes are rare.", ANIMALS, "B"),
    # A bracketed or prefixed option anywhere, when nothing stronger is said.
    ("I think (B) is the one.", ANIMALS, "B"),
    ("I'm torn, but I lean towards option C.", ANIMALS, "C"),
    ("The grandfather (A).", ANIMALS, "A"),
    ('Based on the information provided, the answer is **B**.', ANIMALS, 'B'),
    ('The correct option is B) Bear.', ANIMALS, 'B'),
    ('My answer is B.', ANIMALS, 'B'),
    ('B is my answer.', ANIMALS, 'B'),
    ("I'll choose option B.", ANIMALS, 'B'),
    ('(B) is correct.', ANIMALS, 'B'),
    ('Among the options, B seems most likely.', ANIMALS, 'B'),
    ("It's probably B.", ANIMALS, 'B'),
    ('Ans: B', ANIMALS, 'B'),
    ('The right choice would be C.', ANIMALS, 'C'),
    ("Between A and B, I'd go with B.", ANIMALS, 'B'),
    ("Not sure, but I'd guess C.", ANIMALS, 'C'),
    ('The answer is B. The other options, A, C and D, are incorrect.', ANIMALS, 'B'),
    ('A bear (B).', ANIMALS, 'B'),
    ('The answer is likely C.', ANIMALS, 'C'),
    ('A: The answer is B', ANIMALS, 'B'),
    ('The bear (option B) is shown.', ANIMALS, 'B'),
    ("I'd say it's a bear, so B.", ANIMALS, 'B'),
    ('A bear is on the coin, so the answer is B.', ANIMALS, 'B'),
    ('Answer: (B) Bear', ANIMALS, 'B'),
    ('The answer is: **B) Bear**', ANIMALS, 'B'),
    ('B is the correct answer, not A.', ANIMALS, 'B'),
    ("Either A or B could be right, but I'd pick B.", ANIMALS, 'B'),
    ('Answer: b) bear', ANIMALS, 'B'),
    ('Respond with a single letter (A, B, C, D) only.\nB', ANIMALS, 'B'),
    ('Which animal is on the coin?\nA. Ape\nB. Bear\nC. Crow\nD. Deer\nAnswer: B', ANIMALS, 'B'),
]

# Negated options are not answers; a self-correction takes the last explicit answer.
CORRECTIONS = [
    ("A\u2026 Actually, no: B", ANIMALS, "B"),
    ("A... Actually, no: B", ANIMALS, "B"),
    ("The answer is A. Wait, no, it's C.", ANIMALS, "C"),
    ("B. On second thought, D.", ANIMALS, "D"),
    ("C. Sorry, I mean A.", ANIMALS, "A"),
    ("A. No, B.", ANIMALS, "B"),
    ("B. It's actually the bear because it is on the flag.", ANIMALS, "B"),
    ("The answer is actually B", ANIMALS, "B"),
    ("Not A, but B.", ANIMALS, "B"),
    ("The answer is not A; it is C.", ANIMALS, "C"),
    ("The answer is B, not A.", ANIMALS, "B"),
    ("I would not pick option A. Option C is right.", ANIMALS, "C"),
    ("It is not B, it's C", ANIMALS, 'C'),
    ('B. Actually, bears are common on coins.', ANIMALS, 'B'),
    ('B. Wait, let me reconsider: A is wrong and B is right.', ANIMALS, 'B'),
    ('A. No wait, I mean C.', ANIMALS, 'C'),
]

# Unicode and markup are normalised before any rule reads the reply.
MARKUP = [
    ("\uff22", ANIMALS, "B"),  # full-width B
    ("\uff08\uff23\uff09", ANIMALS, "C"),  # full-width (C)
    ("\u7b54\u6848\uff1a\uff22", ANIMALS, "B"),  # 答案：Ｂ
    ("\u7b54\u6848\u662fC\u3002", ANIMALS, "C"),  # 答案是C。
    ("\u3010B\u3011", ANIMALS, "B"),  # 【B】
    ("B\u3002", ANIMALS, "B"),
    ("$B$", ANIMALS, "B"),
    ("$\\boxed{C}$", ANIMALS, "C"),
    ("\\boxed{\\text{D}}", ANIMALS, "D"),
    ("The answer is $\\boxed{B}$.", ANIMALS, "B"),
    ("Final Answer: The final answer is $\\boxed{B}$", ANIMALS, "B"),
    ("**C**", ANIMALS, "C"),
    ("**Answer:** C", ANIMALS, "C"),
    ("### Final Answer\nThe correct answer is **C**.", ANIMALS, "C"),
    ("<answer>C</answer>", ANIMALS, "C"),
    ("<think>A or B? The bear fits.</think>\nB", ANIMALS, "B"),
    ("`B`", ANIMALS, "B"),
    ("'B'", ANIMALS, "B"),
    ("\u201cB\u201d", ANIMALS, "B"),
    ("Answer: \u200bB", ANIMALS, "B"),
    ("~~A~~ B", ANIMALS, "B"),  # struck through
]

TABLE = REFUSALS + AMBIGUOUS + LEADING + CUES + CORRECTIONS + MARKUP


@pytest.mark.parametrize(("reply", "options", "expected"), TABLE, ids=[repr(r)[:60] for r, _, _ in TABLE])
def test_reply_reads_as_a_grader_reads_it(reply, options, expected):
    assert read(reply, options) == expected


def test_the_table_is_large_and_covers_every_kind():
    assert len(TABLE) >= 80
    assert all(table for table in (REFUSALS, AMBIGUOUS, LEADING, CUES, CORRECTIONS, MARKUP))


def test_option_texts_are_optional():
    # Without the texts, text-only readings are not made; the letter rules work alone.
    assert parse_letter("Bear", letters_for(4)) is None
    assert parse_letter("C. Bear", letters_for(4)) == "C"
    assert parse_letter("C - the hills are known for it.", letters_for(4)) == "C"
    assert parse_letter("Answer: I don't know.", letters_for(10)) is None


def test_normalise_unwraps_markup_and_folds_unicode():
    assert normalise("\uff08\uff22\uff09\u3002") == "(B)."
    assert normalise("**Answer:** $\\boxed{\\textbf{C}}$") == "Answer: \nAnswer: C"
    assert normalise("<think>maybe A</think>  `D`") == "D"


CASES = next((p / "shared" / "cases" / "2026-11-29" for p in Path(__file__).resolve().parents if (p / "shared" / "cases" / "2026-11-29").is_dir()), None)
LETTER_CASES = sorted(CASES.glob("letter-*")) if CASES else []


@pytest.mark.skipif(not LETTER_CASES, reason="shared/cases/2026-11-29 not found beside the checkout")
def test_every_shared_case_reply_is_in_the_table_with_its_reading():
    table = {reply: expected for reply, _, expected in TABLE}
    for case in LETTER_CASES:
        items = {json.loads(line)["q"].split()[-1].rstrip("?"): json.loads(line) for line in (case / "items.jsonl").read_text().splitlines()}
        for place, reply in json.loads((case / "rules.json").read_text()):
            item = items[place]
            expected = "ABCDEFGHIJ"[item["gold"]] if case.name == "letter-then-explanation-invalid" else None
            assert reply in table and table[reply] == expected, (case.name, reply)
            assert read(reply, tuple(item["opts"])) == expected, (case.name, reply)


@pytest.mark.slow
@pytest.mark.skipif(not LETTER_CASES, reason="shared/cases/2026-11-29 not found beside the checkout")
@pytest.mark.parametrize("case", [c.name for c in LETTER_CASES])
def test_shared_case_repro_passes(case):
    # repro.sh starts its own mock chat server on 127.0.0.1, runs this venv's mtpa-engine, and exits 0 once fixed.
    venv = Path(sys.executable).parent.parent
    done = subprocess.run(["bash", str(CASES / case / "repro.sh"), str(venv)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


DECORATIONS = ["{}", "{}.", "({})", "{})", "[{}]", "**{}**", "Answer: {}", "answer: ({})", "The answer is {}.", "{}. because reasons", " {} ", "{}:"]


@given(n=st.integers(2, 26), pick=st.integers(0, 25), decoration=st.sampled_from(DECORATIONS), lower=st.booleans())
def test_decorated_letters_parse_to_the_letter(n, pick, decoration, lower):
    valid = letters_for(n)
    letter = valid[pick % n]
    text = decoration.format(letter.lower() if lower and decoration not in ("The answer is {}.",) else letter)
    assert parse_letter(text, valid) == letter


@given(
    n=st.integers(2, 8),
    picks=st.tuples(st.integers(0, 7), st.integers(0, 7)).filter(lambda p: p[0] != p[1]),
    join=st.sampled_from([" or ", " and ", "/", ", ", " or maybe "]),
    form=st.sampled_from(["{} {}", "({}) {}", "Answer: {}{}", "The answer is {}{}.", "I think {}{}"]),
)
def test_two_options_joined_are_always_ambiguous(n, picks, join, form):
    valid = letters_for(n)
    first, second = (valid[p % n] for p in picks)
    if first == second:
        return
    token = "({})" if form.startswith("(") else "{}"
    text = form.replace("({}) {}", "{} {}").format(token.format(first), join + token.format(second))
    assert parse_letter(text, valid) is None, text


@given(
    n=st.integers(2, 8),
    pick=st.integers(0, 7),
    tail=st.sampled_from(["\n\nExplanation: it is on the coin.", " - it is on the coin.", ", because it is on the coin.", ". It is on the coin.", ")\nIt is on the coin.", "\u2014 it is on the coin."]),
)
def test_a_leading_letter_then_an_explanation_is_the_letter(n, pick, tail):
    valid = letters_for(n)
    letter = valid[pick % n]
    assert parse_letter(letter + tail, valid) == letter


@given(text=st.text(max_size=40), n=st.integers(1, 26))
def test_parse_never_returns_a_letter_outside_the_options(text, n):
    valid = letters_for(n)
    result = parse_letter(text, valid)
    assert result is None or result in valid


@given(words=st.lists(st.sampled_from(["paris", "the", "dog", "is", "a", "maybe", "I", "think"]), min_size=2, max_size=6))
def test_prose_without_an_answer_form_is_invalid(words):
    text = " ".join(words)
    assert parse_letter(text, letters_for(4)) is None


def test_invalid_is_never_mapped_to_a():
    valid = letters_for(4)
    for text in ["", None, "Paris", "A dog barks", "the answer is a dog", "E", "Answer: E", "I don't know"]:
        assert parse_letter(text, valid) is None, text


def test_format_options_letters_in_order():
    assert format_options(("x", "y", "z")) == "A. x\nB. y\nC. z"
    assert letters_for(26) == tuple(string.ascii_uppercase)
