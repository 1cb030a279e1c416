"""The import graph of distill/ and grpo/, built from the source (ast; nothing imported): no circles, no
`distill` module importing `grpo`, no module far over the house limit.

Every import counts -- at the top of a module, inside a function, or under TYPE_CHECKING -- since a lazy import is
still a dependency, and a circle hidden in a function is still a circle. An import names the deepest module of ours
it reaches (`from distill.training import trainee` -> distill.training.trainee); a package's __init__ is a module
of its own.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("distill", "grpo")
MAX_LINES = 450  # STYLE.md: library modules about 400, entry points about 300; a little slack, never two of them
NOT_YET_SPLIT: set[str] = set()  # modules over the limit with a split under way (none: the sandbox's is done)


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every .py file under the packages."""
    files = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


def _imported(node: ast.AST, module: str, is_package: bool) -> list[str]:
    """The dotted names an import statement reaches, absolute (relative imports resolved)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:
        parts = module.split(".") if is_package else module.split(".")[:-1]
        parts = parts[: len(parts) - (node.level - 1)]
        base = ".".join([*parts, base] if base else parts)
    return [f"{base}.{alias.name}" for alias in node.names] + [base]


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of ours it imports."""
    files = module_files()
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = _imported(node, name, is_package)
            if isinstance(node, ast.ImportFrom) and targets:
                # `from a.b import c`: c is a module when a/b/c.py exists, else a name in a.b
                targets = [targets[0]] if targets[0] in files else targets[1:]
            for target in targets:
                while target and target not in files:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
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
    return found


def test_the_graph_sees_every_module_and_known_edges():
    graph = import_graph()
    assert "distill.recipes" in graph and "grpo.train" in graph
    assert "distill.config" in graph["distill.recipes"]
    assert "distill" not in graph["grpo.train"]  # `from distill import cli` names the module distill.cli
    assert "distill.cli" in graph["grpo.train"]


def test_no_import_cycles():
    found = cycles(import_graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_distill_never_imports_grpo():
    graph = import_graph()
    up = sorted(f"{a} -> {b}" for a, targets in graph.items() if a.startswith("distill") for b in targets
                if b.startswith("grpo"))  # fmt: skip
    assert not up, "distill imports grpo: " + ", ".join(up)


def test_the_schema_is_the_bottom_layer():
    """The schema (distill.config and the training fields it composes) imports nothing of ours: the engines, checks,
    recipe loader and trainers read it, never the other way."""
    graph = import_graph()
    schema = {name for name in graph if name == "distill.config" or name.startswith("distill.config.")}
    assert len(schema) > 1  # the package and its section modules
    for name in schema:
        assert graph[name] <= schema | {"distill.training.fields"}, name
    assert graph["distill.training.fields"] == set()
    assert graph["distill.errors"] == set()


def test_cycle_finder_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_over_the_limit():
    lines = {name: len(path.read_text().splitlines()) for name, path in module_files().items()}
    long = {name: n for name, n in lines.items() if n > MAX_LINES and name not in NOT_YET_SPLIT}
    assert not long, f"modules over {MAX_LINES} lines: {long}"
