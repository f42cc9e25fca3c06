"""The project's import graph, read from the source with `ast` (nothing is imported): modules, edges, cycles.

    python bench/import_graph.py            # engine, bench_adapters, persona_builder
    python bench/import_graph.py --edges    # also every edge, `a -> b` (`~>` when imported inside a function)
    python bench/import_graph.py --root ../main   # another checkout: the graph before and after a change

Every import counts, including those inside functions: a function-level import hides a cycle from the
interpreter, not from the design (issue 14). Imports under `if TYPE_CHECKING:` never run and are skipped. A cycle is a strongly connected component of more than one module
(Tarjan). "imports" per package is the number of distinct project modules its modules import, split into its
own and other packages'; `from engine import x` counts as an import of `engine.x` when that module exists.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("engine", "bench_adapters", "persona_builder")


def modules(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of the packages (a package is its __init__)."""
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def edges(known: dict[str, Path]) -> dict[tuple[str, str], bool]:
    """(importer, imported) -> True when every import of that edge sits inside a function (lazy)."""
    out: dict[tuple[str, str], bool] = {}

    def visit(node: ast.AST, module: str, is_package: bool, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and ast.unparse(child.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
                continue  # never executed: annotations only
            inner = lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            targets: list[str] = []
            if isinstance(child, ast.Import):
                targets = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:  # relative: climb from this module's package
                    anchor = module.split(".")[: len(module.split(".")) - child.level + (1 if is_package else 0)]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in child.names]
            for target in targets:
                while target and target not in known:  # `import a.b.c` of a non-module attribute: its module
                    target = target.rpartition(".")[0]
                if target and target != module:
                    out[module, target] = out.get((module, target), True) and lazy
            visit(child, module, is_package, inner)

    for module, path in known.items():
        visit(ast.parse(path.read_text(encoding="utf-8")), module, path.name == "__init__.py", False)
    return out


def cycles(nodes: list[str], graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in nodes:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return sorted(found)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edges", action="store_true", help="print every edge")
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout to read (default: this one), e.g. another branch's worktree")
    args = parser.parse_args(argv)
    known = modules(args.root, PACKAGES)
    found = edges(known)
    graph: dict[str, set[str]] = defaultdict(set)
    for (a, b) in found:
        graph[a].add(b)
    print(f"modules: {len(known)}  edges: {len(found)} ({sum(found.values())} only inside functions)")
    if args.edges:
        for (a, b), lazy in sorted(found.items()):
            print(f"  {a} {'~>' if lazy else '->'} {b}")
    print("package          modules  imports(own)  imports(other packages)")
    for package in PACKAGES:
        members = [m for m in known if m.split(".")[0] == package]
        targets = {b for (a, b) in found if a.split(".")[0] == package}
        own = sum(t.split(".")[0] == package for t in targets)
        print(f"{package:<16} {len(members):>7}  {own:>12}  {len(targets) - own:>23}")
    found_cycles = cycles(sorted(known), graph)
    print(f"cycles: {len(found_cycles)}")
    for component in found_cycles:
        inner = sorted((a, b) for (a, b) in found if a in component and b in component)
        print("  " + ", ".join(component))
        print("    " + "; ".join(f"{a} {'~>' if found[a, b] else '->'} {b}" for a, b in inner))
    return 0


if __name__ == "__main__":
    sys.exit(main())
