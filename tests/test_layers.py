"""The package's layers: `server/` and `clients/` meet only through `fedleak/`, and no module imports itself back.

Read from the source with `ast` (imports inside functions included), so a lazy import cannot hide a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Source folder → installed package (pyproject.toml's package-dir).
PACKAGES = {
    "fedleak": "fedleak", "clients": "fedleak.clients", "server": "fedleak.server", "attacks": "fedleak.attacks",
}


def module_name(path: Path) -> str:
    relative = path.relative_to(ROOT)
    parts = [PACKAGES[relative.parts[0]], *relative.parts[1:]]
    parts[-1] = parts[-1].removesuffix(".py")
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_files() -> dict[str, Path]:
    return {module_name(path): path for folder in PACKAGES for path in sorted((ROOT / folder).rglob("*.py"))}


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """Every fedleak module ``path`` imports; ``from package import submodule`` counts as the submodule."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if candidate in known else node.module)
    return {name for name in found if name in known}


def import_graph() -> dict[str, set[str]]:
    files = source_files()
    known = set(files)
    return {name: imported_modules(path, known) - {name} for name, path in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None. Edges into a package's ``__init__`` from its
    own submodules are skipped: Python imports the package first, so they cannot deadlock."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph[node]):
            if node.startswith(target + "."):
                continue
            if state.get(target) == 1:
                return stack[stack.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_server_and_clients_do_not_import_each_other():
    graph = import_graph()
    for side, other in (("fedleak.server", "fedleak.clients"), ("fedleak.clients", "fedleak.server")):
        crossings = sorted(f"{module} → {target}" for module, targets in graph.items()
                           if module.startswith(side) for target in targets if target.startswith(other))
        assert not crossings, crossings


def test_no_import_cycle():
    assert find_cycle(import_graph()) is None, " → ".join(find_cycle(import_graph()) or [])


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_every_package_is_installed():
    """A non-editable install (the container image) ships only the packages pyproject.toml lists."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    packages = {module_name(path.parent / "__init__.py") for folder in PACKAGES
                for path in (ROOT / folder).rglob("__init__.py")}
    assert packages <= listed, sorted(packages - listed)
