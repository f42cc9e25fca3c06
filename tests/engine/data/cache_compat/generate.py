"""How cache.sqlite and results.parquet beside it were made (run once, on main at 4ce1bf3, before issue 14,
where the test server was tests.servers.openai_compat; rerunning it now rewrites them with today's code, which
is not what test_cache_compat.py checks against):

    python tests/engine/data/cache_compat/generate.py

The grid's models name OpenAI's official endpoint, so their cache keys hold no port; for the run, the
provider's official URL is pointed at a local wire-exact test server (nothing leaves the machine). The
run is made twice; the second, fully cached, writes the results kept here.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[3]

if len(sys.argv) > 1:  # the child: one `mtpa-engine run` with the official URL pointed at the test server
    from engine.cli import app
    from engine.providers.openai import OpenAIProvider

    OpenAIProvider.default_base_url = sys.argv[1]
    sys.argv = ["mtpa-engine", "run", str(HERE / "grid.toml"), "--no-progress"]
    app()
else:
    sys.path.insert(0, str(REPO))
    from engine.testing.servers.openai_compat import OpenAICompatServer

    for stale in ("cache.sqlite", "runs", "personas.jsonl"):
        shutil.rmtree(HERE / stale, ignore_errors=True) if (HERE / stale).is_dir() else (HERE / stale).unlink(missing_ok=True)
    shutil.copy(REPO / "examples" / "personas.jsonl", HERE / "personas.jsonl")
    env = {**os.environ, "OPENAI_API_KEY": "sk-test"}
    with OpenAICompatServer() as server:
        for _ in range(2):
            subprocess.run([sys.executable, __file__, server.base_url], env=env, check=True)
    shutil.copy(next((HERE / "runs" / "compat" / "results").glob("*.parquet")), HERE / "results.parquet")
    for stale in ("runs", "personas.jsonl", "cache.sqlite-wal", "cache.sqlite-shm"):
        shutil.rmtree(HERE / stale, ignore_errors=True) if (HERE / stale).is_dir() else (HERE / stale).unlink(missing_ok=True)
