"""The report reads a run folder and nothing else: its modules import no adapter and no persona code, and
their imports run one way (no circle, counting imports inside functions, which hid the old build ⇄ html ⇄
tables circle)."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import engine.report

PACKAGE = Path(engine.report.__file__).parent


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            # `from engine.report import svg` imports the module engine.report.svg
            found.update(f"{node.module}.{alias.name}" for alias in node.names if (PACKAGE / f"{alias.name}.py").is_file() and node.module == "engine.report")
    return found


def test_the_report_imports_no_adapter_or_persona_code_and_has_no_circle():
    graph = {}
    for path in sorted(PACKAGE.glob("*.py")):
        name = f"engine.report.{path.stem}"
        imports = _imports(path)
        assert not {i for i in imports if i.split(".")[0] in ("bench_adapters", "persona_builder")}, name
        graph[name] = {i for i in imports if i.startswith("engine.report.")}
    try:
        order = list(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        raise AssertionError(f"import circle: {' -> '.join(exc.args[1])}") from None
    assert order.index("engine.report.build") < order.index("engine.report.tables") < order.index("engine.report.html") < order.index("engine.report.write")
