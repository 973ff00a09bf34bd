"""No import circles inside coded_lib and benchmarks (issue 21): module-level and function-local imports,
``importlib.import_module`` with a literal name included. A package's ``__init__`` counts as the package's
module; importing ``a.b`` is an edge to ``a.b`` only (Python runs parent packages first by itself)."""
import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROOTS = ("coded_lib", "benchmarks")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict:
    return {module_name(p): p for root in ROOTS for p in sorted((REPO / root).rglob("*.py"))}


def imports_of(name: str, path: Path, known: set) -> set:
    """Internal modules ``name`` imports anywhere in its file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()

    def add(target):
        while target and target not in known:  # `from pkg import sub` may name a module or a symbol
            target = target.rpartition(".")[0]
        if target and target != name:
            found.add(target)

    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for a in node.names:
                add(a.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for a in node.names:
                full = f"{base}.{a.name}"
                add(full if full in known else base)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module":
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                add(node.args[0].value)
    return found


def graph() -> dict:
    mods = modules()
    known = set(mods)
    return {name: imports_of(name, path, known) for name, path in mods.items()}


def cycles(g: dict) -> list:
    """Strongly connected components of more than one module, or a module importing itself (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_the_checker_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    known = {"coded_lib.companion.report", "coded_lib.companion.paper", "coded_lib.companion"}
    src = REPO / "coded_lib" / "companion" / "report.py"
    assert "coded_lib.companion.paper" in imports_of("coded_lib.companion.report", src, known)


def test_no_import_circles():
    g = graph()
    assert len(g) > 40  # every module of both trees was read
    assert cycles(g) == []


def test_the_method_imports_none_of_the_rest():
    g = graph()
    method = [m for m in g if m.count(".") == 1 and m.startswith("coded_lib.") and m.split(".")[1] not in
              ("train", "analysis", "companion", "beyond")]
    for m in method:
        assert not {t for t in g[m] if t.split(".")[1] in ("train", "analysis", "companion", "beyond")}, m


def test_the_companion_stays_below_its_line_budget():
    """Issue 21: the companion (runner, dashboard, claims, plots, notebook glue) below 3,200 lines (wc -l)."""
    companion = Path(__file__).resolve().parents[1] / "coded_lib" / "companion"
    lines = sum(len(p.read_text().splitlines()) for p in companion.glob("*.py"))
    assert lines < 3200, f"coded_lib/companion/*.py: {lines} lines"
