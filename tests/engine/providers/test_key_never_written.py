"""No piece of the API key reaches a file or the terminal (issue 12 item 9), end to end.

A real `mtpa-engine run` (a subprocess) against each wire server (lean and SDK transports), whose error bodies
echo the key at
offsets that put it across the 500-character cut of stored error messages, and in a 200 body that is not
JSON. Every file the run writes (SQLite cache and its journals, Parquet results read back as text, the
manifest, analysis tables) and its stdout and stderr are searched for every 12-character piece of the key.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import polars as pl
import pytest

from engine.testing.servers.anthropic_compat import AnthropicCompatServer
from engine.testing.servers.google_compat import GoogleCompatServer
from engine.testing.servers.openai_compat import OpenAICompatServer

SERVERS = {"openai": OpenAICompatServer, "anthropic": AnthropicCompatServer, "google": GoogleCompatServer}

KEY = "sk-live-Q7hT2mVx9LpR4nWc8KzY3bJd6FsG1aEu5oHi0tNq"  # 46 characters, made up
PIECE = 12
# The error line stored is "HTTP 400: " + the body, whose message starts 30-110 characters in (by wire and
# transport): pads from 340 to 490 put the key's start anywhere from before the 500-character cut to after it.
PADS = range(340, 490, 4)


def _text_of(path: Path) -> str:
    data = path.read_bytes().decode("latin-1")
    if path.suffix == ".parquet":
        data += pl.read_parquet(path).cast(pl.String, strict=False).write_csv()
    return data


@pytest.mark.parametrize(("provider", "transport"), [("openai", "aiohttp"), ("openai", "sdk"), ("anthropic", "sdk"), ("google", "sdk")])
def test_no_piece_of_the_key_in_any_file_or_output(tmp_path, provider, transport):
    items = [{"uid": f"e{pad}", "q": f"Question <<echo:400:{pad}>>", "opts": ["yes", "no"], "gold": 0} for pad in PADS]
    items.append({"uid": "malformed", "q": "Question <<echo:200:470>>", "opts": ["yes", "no"], "gold": 0})
    items.append({"uid": "fine", "q": "Question", "opts": ["yes", "no"], "gold": 0})
    (tmp_path / "items.jsonl").write_bytes(b"\n".join(orjson.dumps(i) for i in items))
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "key.txt").write_text(KEY)
    with SERVERS[provider](api_key=KEY) as server:
        (tmp_path / "grid.toml").write_text(
            f"""[run]
name = "r"
output_dir = "out/{{name}}"
cache = "out/cache.sqlite"

[[benchmarks]]
name = "dataset"
path = "items.jsonl"
question_field = "q"
options_field = "opts"
gold_field = "gold"
id_field = "uid"

[[models]]
id = "m"
provider = "{provider}"
model = "test"
base_url = "{server.base_url}"
transport = "{transport}"
api_key_file = "secrets/key.txt"
logprobs = false

[models.limits]
max_retries = 1

[[conditions]]
name = "baseline"
"""
        )
        proc = subprocess.run(
            [str(Path(sys.executable).parent / "mtpa-engine"), "run", str(tmp_path / "grid.toml"), "--no-progress"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert server.state.statuses[400] == len(PADS) and server.state.statuses["echo200"] == 2  # each echoed
    assert proc.returncode == 0, proc.stderr[-2000:]
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p.parent != secrets and p.name != "grid.toml"]
    assert any(p.suffix == ".parquet" for p in written) and any(p.name.startswith("cache.sqlite") for p in written)
    haystack = {str(p.relative_to(tmp_path)): _text_of(p) for p in written} | {"stdout": proc.stdout, "stderr": proc.stderr}
    pieces = {KEY[i : i + PIECE] for i in range(len(KEY) - PIECE + 1)}
    hits = sorted((name, piece) for name, text in haystack.items() for piece in pieces if piece in text)
    assert hits == [], hits
    assert "[redacted]" in haystack["out/cache.sqlite"]  # the errors were stored, with the key masked
