"""The project's import graph, from every import statement (those inside functions too), printed as numbers.

    python bench/import_graph.py [CHECKOUT]    (default: this checkout)

Prints the import circles (strongly connected components), what engine.report imports from outside engine,
per package its module count and the other packages it imports, and the bench scripts importing tests/.
"""
import ast
import re
import sys
from pathlib import Path

root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1]
mods = {}
for pkg in ("engine", "bench_adapters", "persona_builder"):
    for p in (root / pkg).rglob("*.py"):
        name = ".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
        mods[name] = p
graph = {}
for name, p in mods.items():
    out = set()
    for n in ast.walk(ast.parse(p.read_text())):
        targets = []
        if isinstance(n, ast.Import): targets = [a.name for a in n.names]
        elif isinstance(n, ast.ImportFrom) and n.module and n.level == 0:
            targets = [n.module] + [f"{n.module}.{a.name}" for a in n.names]
        for t in targets:
            while t and t not in mods: t = t.rpartition(".")[0]
            if t and t != name: out.add(t)
    graph[name] = out
def sccs(g):
    idx, low, st, on, res, i = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10000)
    def visit(v):
        idx[v] = low[v] = i[0]; i[0] += 1; st.append(v); on.add(v)
        for w in g.get(v, ()):
            if w not in idx: visit(w); low[v] = min(low[v], low[w])
            elif w in on: low[v] = min(low[v], idx[w])
        if low[v] == idx[v]:
            comp = []
            while True:
                w = st.pop(); on.discard(w); comp.append(w)
                if w == v: break
            if len(comp) > 1: res.append(sorted(comp))
    for v in g:
        if v not in idx: visit(v)
    return res
print("circles:", sccs(graph))
rep = {m: sorted(t for t in graph[m] if not t.startswith("engine.report")) for m in graph if m.startswith("engine.report")}
print("engine.report -> outside:", sorted({t for ts in rep.values() for t in ts if not t.startswith("engine.")}))
for pkg in ("engine", "bench_adapters", "persona_builder"):
    ms = [m for m in graph if m == pkg or m.startswith(pkg + ".")]
    print(pkg, "modules:", len(ms), "imports of other packages:", sorted({t.split(".")[0] for m in ms for t in graph[m] if t.split(".")[0] != pkg}))


def _uses_tests(path: Path) -> bool:
    """An import from tests/, or a file under tests/ loaded by its path (a path joined with the folder name)."""
    text = path.read_text()
    for n in ast.walk(ast.parse(text)):
        names = [a.name for a in n.names] if isinstance(n, ast.Import) else [n.module or ""] if isinstance(n, ast.ImportFrom) else []
        if any(name.split(".")[0] == "tests" for name in names):
            return True
    return re.search(r'/\s*"tests"\s*/', text) is not None


print("bench/ imports tests/:", sorted(p.name for p in (root / "bench").glob("*.py") if _uses_tests(p)))
