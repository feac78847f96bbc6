"""The package's structure: no import circles among tui/ modules, and the app module
holds the App and little else."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "tui"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(current: str, is_package: bool, level: int, name: str | None) -> str:
    base = current.split(".")
    if not is_package:
        base = base[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, name] if name else base)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The tui modules ``path`` imports at run time (``TYPE_CHECKING`` blocks skipped)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    current = module_name(path)
    is_package = path.name == "__init__.py"
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
                continue
            for child in ast.walk(node) if not isinstance(node, ast.If) else [node]:
                if isinstance(child, ast.Import):
                    for alias in child.names:
                        found.add(alias.name)
                elif isinstance(child, ast.ImportFrom):
                    target = (
                        _resolve(current, is_package, child.level, child.module)
                        if child.level
                        else child.module or ""
                    )
                    for alias in child.names:
                        # ``from pkg import module`` needs the module, not the package
                        sub = f"{target}.{alias.name}"
                        found.add(sub if sub in modules else target)
            if isinstance(node, ast.If):
                visit(node.body)
                visit(node.orelse)

    visit(tree.body)
    return {m for m in found if m in modules and m != current}


def graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules = set(paths)
    edges = {name: imports_of(path, modules) for name, path in paths.items()}
    # importing a package's submodule runs the package's __init__ first, but the
    # circles that matter are between modules, so parents are not added as edges
    return edges


def find_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                walk(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            walk(node)
    return cycles


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles_among_tui_modules() -> None:
    edges = graph()
    assert "tui.app" in edges and "tui.screens.main" in edges["tui.app"]
    assert find_cycles(edges) == []


def test_the_cli_imports_the_app_and_never_the_reverse() -> None:
    edges = graph()
    assert "tui.app" in edges["tui.cli.launch"]
    reachable, todo = set(), ["tui.app"]
    while todo:
        node = todo.pop()
        for nxt in edges[node]:
            if nxt not in reachable:
                reachable.add(nxt)
                todo.append(nxt)
    assert not [m for m in reachable if m == "tui.cli" or m.startswith("tui.cli.")]


def test_widgets_do_not_import_the_app() -> None:
    edges = graph()
    for name, targets in edges.items():
        if name.startswith(("tui.widgets", "tui.screens", "tui.engine", "tui.store")):
            assert "tui.app" not in targets, name


def test_app_module_holds_the_app_and_little_else() -> None:
    tree = ast.parse((PACKAGE / "app.py").read_text(encoding="utf-8"))
    classes = [n.name for n in tree.body if isinstance(n, ast.ClassDef)]
    functions = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
    assert classes == ["LaunchOptions", "ChatApp"]
    assert functions == ["run_app"]
    assert len((PACKAGE / "app.py").read_text().splitlines()) < 300
