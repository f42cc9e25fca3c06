"""A corpus of malformed grids and data files, each run through `mtpa-engine run` (in process).

Every case must end the same way: exit 2, one error line naming the file and the key or record at fault,
no traceback, and nothing written (no output folder, no cache). Kinds: benchmark rows (issue 12 item 5),
numbers (6), names that become paths (7), messages (8), duplicate item ids (11), and a sample of what
already passed (TOML syntax, unknown keys, wrong types, missing files, unknown names, duplicates, encoding).
test_corpus_count prints "N of M malformed grids handled".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from engine.cli import app

ITEMS = [{"uid": "a", "q": "Which is a fruit?", "opts": ["Apple", "Stone"], "gold": 0}, {"uid": "b", "q": "Which is a bird?", "opts": ["Cod", "Gull"], "gold": 1}]
PERSONA = {"id": "p1", "source": "T", "traits": {"sex": {"question": "What is your sex?", "answer": "Female", "category": "demographic"}}}
DATASET = 'name = "dataset"\npath = "items.jsonl"\nquestion_field = "q"\noptions_field = "opts"\ngold_field = "gold"\nid_field = "uid"'
BASE = """[run]
name = "r"
output_dir = "out/{name}"
cache = "out/cache.sqlite"

[personas]
source = "personas.jsonl"

[[benchmarks]]
BENCH

[[models]]
id = "m"
provider = "openai"
model = "test"
base_url = "http://127.0.0.1:9/v1"

[models.limits]
concurrency = 2

[[conditions]]
name = "baseline"

[[conditions]]
name = "prose"
format = "prose"
"""
TQA = {"question": "Is the sky green?", "mc1_targets": {"No": 1, "Yes": 0}, "mc2_targets": {"No": 1, "Yes": 0}}
BBQ = {
    "example_id": 0, "question_polarity": "neg", "context_condition": "ambig", "category": "Age",
    "answer_info": {"ans0": ["grandfather", "old"], "ans1": ["grandson", "nonOld"], "ans2": ["Can't be determined", "unknown"]},
    "additional_metadata": {"subcategory": "None", "stereotyped_groups": ["old"]},
    "context": "Two people met.", "question": "Who was confused?", "ans0": "The grandfather", "ans1": "The grandson", "ans2": "Can't be determined", "label": 2,
}  # fmt: skip
CROWS_HEAD = ",sent_more,sent_less,stereo_antistereo,bias_type\n"
NORMAD_HEAD = "ID,Country,Background,Axis,Subaxis,Value,Rule-of-Thumb,Story,Explanation,Gold Label\n"
NORMAD_ROW = '{id},france,b,a,s,v,rot,"Alex brought a gift.",e,yes\n'


API_MODEL = 'provider = "openai"\nmodel = "test"\nbase_url = "http://127.0.0.1:9/v1"'
LOCAL_MODEL = 'provider = "local"\nmodel = "embedded"'


def jsonl(*records: dict) -> bytes:
    return b"\n".join(orjson.dumps(r) for r in records) + b"\n"


@dataclass(frozen=True)
class Case:
    id: str
    expected: str  # the file's and key's part of the one error line
    edit: Callable[[str], str] = lambda g: g
    files: dict[str, bytes] = field(default_factory=dict)
    bench: str = DATASET
    grid_bytes: bytes | None = None  # a grid file that is not text at all


def sub(old: str, new: str) -> Callable[[str], str]:
    def edit(grid: str) -> str:
        assert old in grid, old
        return grid.replace(old, new, 1)

    return edit


def add(after: str, line: str) -> Callable[[str], str]:
    return sub(after, f"{after}\n{line}")


CASES = [
    # --- item 5: benchmark rows, every adapter
    Case("tqa-empty-targets", "tqa.json: record 1: field 'mc1_targets' is empty", bench='name = "truthfulqa"\npath = "tqa.json"', files={"tqa.json": orjson.dumps([{**TQA, "mc1_targets": {}}])}),
    Case("tqa-no-true-option", "tqa.json: record 2: field 'mc1_targets' has 0 true options (expected exactly one)", bench='name = "truthfulqa"\npath = "tqa.json"', files={"tqa.json": orjson.dumps([TQA, {**TQA, "mc1_targets": {"No": 0, "Yes": 0}}])}),
    Case("tqa-mc2-no-true-option", "tqa.json: record 1: field 'mc2_targets' has 0 true options (expected at least one)", bench='name = "truthfulqa"\npath = "tqa.json"\ntask = "mc2"\nmode = "likelihood"', files={"tqa.json": orjson.dumps([{**TQA, "mc2_targets": {"No": 0}}])}, edit=sub(API_MODEL, LOCAL_MODEL)),
    Case("tqa-missing-question", "tqa.json: record 1: missing field 'question'", bench='name = "truthfulqa"\npath = "tqa.json"', files={"tqa.json": orjson.dumps([{k: v for k, v in TQA.items() if k != "question"}])}),
    Case("tqa-targets-wrong-type", "tqa.json: record 1: field 'mc1_targets': expected an object, got list", bench='name = "truthfulqa"\npath = "tqa.json"', files={"tqa.json": orjson.dumps([{**TQA, "mc1_targets": ["No", "Yes"]}])}),
    Case("tqa-label-not-0-1", "tqa.json: record 1: field 'mc1_targets': every label must be 1 (true) or 0 (false)", bench='name = "truthfulqa"\npath = "tqa.json"', files={"tqa.json": orjson.dumps([{**TQA, "mc1_targets": {"No": "1", "Yes": 0}}])}),
    Case("dataset-missing-question", "items.jsonl: record 2: missing field 'q'", files={"items.jsonl": jsonl(ITEMS[0], {k: v for k, v in ITEMS[1].items() if k != "q"})}),
    Case("dataset-question-wrong-type", "items.jsonl: record 1: field 'q': expected text or a number, got list", files={"items.jsonl": jsonl({**ITEMS[0], "q": ["a"]})}),
    Case("dataset-options-wrong-type", "items.jsonl: record 1: field 'opts' is not a non-empty list of options", files={"items.jsonl": jsonl({**ITEMS[0], "opts": {"a": 1}})}),
    Case("dataset-empty-options", "items.jsonl: record 1: field 'opts' is empty", files={"items.jsonl": jsonl({**ITEMS[0], "opts": []})}),
    Case("dataset-null-option", "items.jsonl: record 1: field 'opts': expected text or a number, got NoneType", files={"items.jsonl": jsonl({**ITEMS[0], "opts": ["x", None]})}),
    Case("dataset-gold-out-of-range", "items.jsonl: record 1: gold index 7 is out of range for 2 options", files={"items.jsonl": jsonl({**ITEMS[0], "gold": 7})}),
    Case("dataset-missing-id", "items.jsonl: record 1: missing field 'uid'", files={"items.jsonl": jsonl({k: v for k, v in ITEMS[0].items() if k != "uid"})}),
    Case("dataset-line-not-json", "items.jsonl:2: not valid JSON", files={"items.jsonl": jsonl(ITEMS[0]) + b"{oops\n"}),
    Case("dataset-record-not-object", "items.json: record 2: expected a JSON object of fields, got list", edit=sub('path = "items.jsonl"', 'path = "items.json"'), files={"items.json": orjson.dumps([ITEMS[0], [1, 2]])}),
    Case("bbq-label-out-of-range", "Age.jsonl: record 1: field 'label': expected 0, 1 or 2", bench='name = "bbq"\npath = "bbq"\ncategories = ["Age"]', files={"bbq/Age.jsonl": jsonl({**BBQ, "label": 5})}),
    Case("bbq-missing-answer-info", "Age.jsonl: record 1: missing field 'answer_info'", bench='name = "bbq"\npath = "bbq"\ncategories = ["Age"]', files={"bbq/Age.jsonl": jsonl({k: v for k, v in BBQ.items() if k != "answer_info"})}),
    Case("bbq-label-wrong-type", "Age.jsonl: record 1: field 'label': expected an integer, got str", bench='name = "bbq"\npath = "bbq"\ncategories = ["Age"]', files={"bbq/Age.jsonl": jsonl({**BBQ, "label": "two"})}),
    Case("crows-empty-sentence", "crows.csv: record 1: missing field 'sent_less'", bench='name = "crows_pairs"\npath = "crows.csv"', files={"crows.csv": (CROWS_HEAD + "0,They are loud.,,stereo,race-color\n").encode()}),
    Case("normad-missing-story", "normad.csv: record 1: missing field 'Story'", bench='name = "normad"\npath = "normad.csv"', files={"normad.csv": (NORMAD_HEAD + "1,france,b,a,s,v,rot,,e,yes\n").encode()}),
    Case("normad-missing-value-for-context", "normad.csv: record 1: missing field 'Value'", bench='name = "normad"\npath = "normad.csv"\ncontext = "value"', files={"normad.csv": (NORMAD_HEAD + '1,france,b,a,s,,rot,"A story.",e,yes\n').encode()}),
    # --- item 11: duplicate item ids, every adapter that reads ids from the data
    Case("dataset-duplicate-id", "items.jsonl: record 2: duplicate item id 'a'", files={"items.jsonl": jsonl(ITEMS[0], {**ITEMS[1], "uid": "a"})}),
    Case("bbq-duplicate-id", "Age.jsonl: record 2: duplicate item id 'bbq-Age-0'", bench='name = "bbq"\npath = "bbq"\ncategories = ["Age"]', files={"bbq/Age.jsonl": jsonl(BBQ, {**BBQ, "context": "Other."})}),
    Case("crows-duplicate-id", "crows.csv: record 2: duplicate item id 'crows-7'", bench='name = "crows_pairs"\npath = "crows.csv"', files={"crows.csv": (CROWS_HEAD + "7,A b.,A c.,stereo,age\n7,D e.,D f.,stereo,age\n").encode()}),
    Case("normad-duplicate-id", "normad.csv: record 2: duplicate item id 'normad-3'", bench='name = "normad"\npath = "normad.csv"', files={"normad.csv": (NORMAD_HEAD + NORMAD_ROW.format(id=3) * 2).encode()}),
    # --- item 6: numbers
    Case("model-seed-huge", "models[0].seed: expected an integer in the 64-bit range", edit=add('model = "test"', "seed = 100000000000000000000000000")),
    Case("model-max-tokens-huge", "models[0].max_tokens: expected an integer in the 64-bit range", edit=add('model = "test"', "max_tokens = 100000000000000000000000000")),
    Case("model-max-tokens-too-big", "models[0].max_tokens: expected an integer in [1, 1,000,000], got 1,000,000,000", edit=add('model = "test"', "max_tokens = 1000000000")),
    Case("bench-max-tokens-float-huge", "benchmarks[0].max_tokens: expected an integer, got 1e+26", edit=add('id_field = "uid"', "max_tokens = 1e26")),
    Case("run-seed-huge", "run.seed: expected an integer in the 64-bit range", edit=add('name = "r"', "seed = 99999999999999999999")),
    Case("concurrency-huge", "models[0].limits.concurrency: expected an integer in [1, 10,000], got 1,000,000,000", edit=sub("concurrency = 2", "concurrency = 1000000000")),
    Case("batch-size-huge", "models[0].limits.batch_size: expected an integer in [1, 100,000]", edit=add("concurrency = 2", "batch_size = 10000000000")),
    Case("max-retries-huge", "models[0].limits.max_retries: expected an integer in [0, 100]", edit=add("concurrency = 2", "max_retries = 1000000")),
    Case("timeout-nan", "models[0].limits.timeout_s: expected a finite number, got nan", edit=add("concurrency = 2", "timeout_s = nan")),
    Case("timeout-too-long", "models[0].limits.timeout_s: expected a number of seconds in (0, 604800]", edit=add("concurrency = 2", "timeout_s = 1e30")),
    Case("rpm-inf", "models[0].limits.requests_per_minute: expected a finite number, got inf", edit=add("concurrency = 2", "requests_per_minute = inf")),
    Case("tpm-minus-inf", "models[0].limits.tokens_per_minute: expected a finite number, got -inf", edit=add("concurrency = 2", "tokens_per_minute = -inf")),
    Case("max-retry-time-inf", "models[0].limits.max_retry_time_s: expected a finite number, got inf", edit=add("concurrency = 2", "max_retry_time_s = inf")),
    Case("temperature-nan", "models[0].temperature: expected a finite number, got nan", edit=add('model = "test"', "temperature = nan")),
    Case("price-huge-int", "models[0].input_price: expected a finite number", edit=add('model = "test"', "input_price = 1" + "0" * 400)),
    Case("top-p-out-of-range", "models[0].top_p: expected a number in (0, 1]", edit=add('model = "test"', "top_p = 7.0")),
    # --- item 7: names that become paths
    Case("run-name-dotdot", "run.name: '../../x' becomes a file or folder name", edit=sub('name = "r"', 'name = "../../x"')),
    Case("run-name-slash", "run.name: 'a/b' becomes a file or folder name", edit=sub('name = "r"', 'name = "a/b"')),
    Case("bench-id-slash", "benchmarks[0].id: 'x/y' becomes a file or folder name", edit=add('id_field = "uid"', 'id = "x/y"')),
    Case("model-id-backslash", "models[0].id: 'm\\\\1' becomes a file or folder name", edit=sub('id = "m"', 'id = "m\\\\1"')),
    Case("condition-name-nul", "conditions[0].name: 'base\\x00line' becomes a file or folder name", edit=sub('name = "baseline"', 'name = "base\\u0000line"')),
    Case("condition-name-empty", "conditions[1].name: expected a non-empty name", edit=sub('name = "prose"', 'name = " "')),
    Case("cache-path-nul", "run.cache: a path cannot contain a NUL character", edit=sub('cache = "out/cache.sqlite"', 'cache = "out/c\\u0000.sqlite"')),
    Case("persona-source-nul", "personas.source: a path cannot contain a NUL character", edit=sub('source = "personas.jsonl"', 'source = "p\\u0000.jsonl"')),
    # --- item 8: messages
    Case("judge-table-name-kept", 'judge: no benchmark has mode = "judge"; remove [judge]', edit=lambda g: g + '\n[judge]\n[judge.model]\nid = "j"\nprovider = "openai"\nmodel = "test"\nbase_url = "http://127.0.0.1:9/v1"\n'),
    # a trait identical to a checked one but for `ordinal = 1` (1 == True): interning must not skip its check
    Case("persona-ordinal-one-after-true", "personas.jsonl:2: trait 'sex': 'ordinal' must be true or false", files={"personas.jsonl": jsonl(*(
        {**PERSONA, "id": f"p{i}", "traits": {"sex": {**PERSONA["traits"]["sex"], "scale": ["Female", "Male"], "ordinal": o}}} for i, o in ((1, True), (2, 1))))}),
    Case("persona-traits-bad-json", "personas.jsonl:1: 'traits' is a string but not valid JSON", files={"personas.jsonl": jsonl({**PERSONA, "traits": "{not json"})}),
    Case("base-url-no-scheme", "models[0].base_url: expected an http(s) URL with a host", edit=sub('base_url = "http://127.0.0.1:9/v1"', 'base_url = "127.0.0.1:9/v1"')),
    Case("base-url-bad-port", "models[0].base_url: not a valid URL", edit=sub('base_url = "http://127.0.0.1:9/v1"', 'base_url = "http://127.0.0.1:99999/v1"')),
    Case("base-url-space", "models[0].base_url: expected an http(s) URL with a host", edit=sub('base_url = "http://127.0.0.1:9/v1"', 'base_url = "http://local host/v1"')),
    # --- a prompt or scoring mode a model or preset cannot serve (fresh-user findings, 2026-11-30)
    Case("likelihood-on-an-api-model", 'benchmarks[0].mode: models[0] (m) uses provider "openai", which cannot score option continuations', bench='name = "truthfulqa"\nmode = "likelihood"'),
    Case("lm-eval-preset-in-letter-mode", 'benchmarks[0].mode: the "lm-eval" preset shows no lettered options', bench='name = "truthfulqa"\ntemplate = "lm-eval"\nformat = "completion"\nmode = "letter"', edit=sub(API_MODEL, LOCAL_MODEL)),
    # --- what passed before and must keep passing
    Case("toml-syntax", "not valid TOML", edit=lambda g: g + "\n[[models]\n"),
    Case("unknown-key-suggestion", "models[0].temperatur: unknown key (did you mean 'temperature'?)", edit=add('model = "test"', "temperatur = 0.5")),
    Case("wrong-type", "models[0].samples: expected an integer, got 'many'", edit=add('model = "test"', 'samples = "many"')),
    Case("missing-persona-file", "personas.source: file not found", edit=sub('source = "personas.jsonl"', 'source = "nope.jsonl"')),
    Case("missing-data-file", "benchmarks[0].path: file not found", edit=sub('path = "items.jsonl"', 'path = "nope.jsonl"')),
    Case("unknown-provider", "models[0].provider: unknown provider 'opnai'", edit=sub('provider = "openai"', 'provider = "opnai"')),
    Case("unknown-benchmark", "benchmarks[0].name: unknown benchmark 'datset'", edit=sub('name = "dataset"', 'name = "datset"')),
    Case("duplicate-condition", "conditions[1].name: duplicate value 'baseline'", edit=sub('name = "prose"', 'name = "baseline"')),
    Case("grid-not-utf8", "not UTF-8 text", grid_bytes=b'[run]\nname = "\xff\xfe"\n'),
]


def _write(tmp_path: Path, case: Case) -> Path:
    grid = tmp_path / "grid.toml"
    files = {"items.jsonl": jsonl(*ITEMS), "personas.jsonl": jsonl(PERSONA), **case.files}
    for name, data in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    grid.write_bytes(case.grid_bytes if case.grid_bytes is not None else case.edit(BASE.replace("BENCH", case.bench)).encode())
    return grid


def _run(tmp_path: Path, case: Case) -> tuple[bool, str]:
    """(handled, why not): exit 2, one line naming the grid or data file and the key, no traceback, nothing written."""
    grid = _write(tmp_path, case)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    result = CliRunner().invoke(app, ["run", str(grid), "--no-progress"])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    if result.exit_code != 2 or not isinstance(result.exception, SystemExit):
        return False, f"exit {result.exit_code} ({result.exception!r}): {result.output[-500:]}"
    if "Traceback" in result.output or len(lines) != 1:
        return False, f"expected one error line, got {len(lines)}: {result.output[-800:]}"
    line = lines[0]
    named = next((n for n in ("grid.toml", *case.files) if Path(n).name in line), None)
    if not line.startswith("error: ") or named is None or case.expected not in line:
        return False, f"the line does not name the file and key ({case.expected!r}): {line}"
    if after != before:
        return False, f"files written: {sorted(set(after) - set(before))}"
    return True, ""


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_malformed_grid_exits_2_with_one_line(tmp_path, case):
    handled, why = _run(tmp_path, case)
    assert handled, why


def test_corpus_count(tmp_path, capsys):
    handled = 0
    for case in CASES:
        (tmp_path / case.id).mkdir()
        handled += _run(tmp_path / case.id, case)[0]
    with capsys.disabled():
        print(f"\n{handled} of {len(CASES)} malformed grids handled")
    assert handled == len(CASES) >= 24
