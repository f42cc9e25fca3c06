"""The shared failing inputs of issue 12 (items 10-12, 14, 15), run as their repro.sh against this build (slow:
each starts its own server or checkpoint and runs `mtpa-engine`). Focused tests with exact values:
tests/engine/providers/test_bad_responses.py (quota, endpoint identity), tests/engine/test_malformed_grids.py
(duplicate ids), tests/engine/providers/test_prefix_reuse.py (system role) and tests/engine/test_run_safety.py
(all-errors report). The letter-* cases run in tests/bench_adapters/test_letters.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

# shared/ lies beside the checkout (or one folder up), as on developers' machines and in CI.
CASES = next(
    (p / "shared" / "cases" / "2026-11-29" for p in Path(__file__).resolve().parents if (p / "shared" / "cases" / "2026-11-29").is_dir()),
    Path("shared/cases/2026-11-29"),
)
VENV = Path(sys.executable).parent.parent  # the venv running the tests: its bin/mtpa-engine is this build


@pytest.mark.slow
@pytest.mark.parametrize("case", ["cache-ignores-endpoint", "duplicate-item-ids", "quota-429-retried", "report-crash-all-errors", "system-role-batch-collateral"])
def test_shared_case_passes(case):
    script = CASES / case / "repro.sh"
    if not script.is_file() or not (VENV / "bin" / "mtpa-engine").is_file():
        pytest.skip(f"{script} or {VENV}/bin/mtpa-engine not on this machine")
    proc = subprocess.run(["bash", str(script), str(VENV)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
