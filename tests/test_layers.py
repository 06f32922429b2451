"""The package's layers, read from the code with `ast` (imports inside functions included, so a lazy import can
hide neither a cycle nor a back-edge)::

    fedleak.drivers           simulation, deploy, arms, audit, reproduce, cli, scenario name checks
    fedleak.server            the ServerApp ─▶ fedleak.runtime (attack executors) ─▶ fedleak.attacks;
                              also fedleak.attacks (membership) and fedleak.report (row cells)
    fedleak.report            reads run directories: the kernel only
    fedleak.clients           the ClientApp
    fedleak.attacks           torch only, never Flower or Ray
    kernel                    everything else in fedleak/: types, registry, protocol, config, models, data,
                              metrics, training, privacy, observe, scoring, …

Each layer may import the kernel and what :data:`ALLOWED` names; the kernel imports only itself; nothing imports
the drivers. The source folders and their installed names come from pyproject.toml's ``package-dir``.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
#: Source folder → installed package, as setuptools installs them.
PACKAGES = {folder: package for package, folder in PYPROJECT["tool"]["setuptools"]["package-dir"].items()}

#: What each layer may import besides the kernel and itself (the drivers may import everything).
ALLOWED = {
    "kernel": set(),
    "fedleak.attacks": set(),
    "fedleak.clients": set(),
    "fedleak.runtime": {"fedleak.attacks"},
    "fedleak.server": {"fedleak.runtime", "fedleak.attacks", "fedleak.report"},
    "fedleak.report": set(),
    "fedleak.drivers": {"fedleak.attacks", "fedleak.clients", "fedleak.runtime", "fedleak.server", "fedleak.report"},
}


def layer_of(module: str) -> str:
    for layer in ALLOWED:
        if module == layer or module.startswith(layer + "."):
            return layer
    return "kernel"


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
    tree = ast.parse(path.read_text())
    # Imports under ``if TYPE_CHECKING:`` never run (the package root names the drivers there for type checkers).
    typing_only = {id(node) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and isinstance(block.test, ast.Name) and block.test.id == "TYPE_CHECKING"
                   for statement in block.body for node in ast.walk(statement)}
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
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


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """Every import that goes up a layer or sideways to a layer not in :data:`ALLOWED`, as ``module → target``."""
    found = []
    for module, targets in sorted(graph.items()):
        source = layer_of(module)
        for target in sorted(targets):
            goes_to = layer_of(target)
            if goes_to not in {"kernel", source} | ALLOWED[source] or (source == "kernel" and goes_to != "kernel"):
                found.append(f"{module} → {target}")
    return found


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


def test_every_import_respects_the_layers():
    assert layer_violations(import_graph()) == []


def test_the_layer_check_finds_a_kernel_import_of_a_driver_or_a_part():
    graph = {"fedleak.types": {"fedleak.drivers.simulation", "fedleak.registry"}, "fedleak.registry": set(),
             "fedleak.config.loader": {"fedleak.attacks"}, "fedleak.attacks.dlg": {"fedleak.clients.update"},
             "fedleak.drivers.simulation": {"fedleak.server.app", "fedleak.types"},
             "fedleak.server.app": {"fedleak.clients.app"}}
    assert layer_violations(graph) == [
        "fedleak.attacks.dlg → fedleak.clients.update", "fedleak.config.loader → fedleak.attacks",
        "fedleak.server.app → fedleak.clients.app", "fedleak.types → fedleak.drivers.simulation"]


def test_the_package_mapping_is_read_from_pyproject():
    assert PACKAGES["attacks"] == "fedleak.attacks" and PACKAGES["fedleak"] == "fedleak"
    assert module_name(ROOT / "attacks" / "dlg.py") == "fedleak.attacks.dlg"
    assert module_name(ROOT / "fedleak" / "drivers" / "simulation.py") == "fedleak.drivers.simulation"


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
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    packages = {module_name(path.parent / "__init__.py") for folder in PACKAGES
                for path in (ROOT / folder).rglob("__init__.py")}
    assert packages <= listed, sorted(packages - listed)


def unexplained_lazy_imports(source: str) -> list[int]:
    """Lines of imports inside functions that no ``# lazy (reason): …`` comment explains. The comment sits above
    the import or above the block of imports (blank lines allowed) it starts."""
    tree = ast.parse(source)
    lines = source.splitlines()
    functions = [node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)]
    inner = {id(node): node for function in functions
             for node in ast.walk(function) if isinstance(node, ast.Import | ast.ImportFrom)}
    import_lines = {line for node in inner.values() for line in range(node.lineno, node.end_lineno + 1)}
    missing = []
    for node in sorted(inner.values(), key=lambda n: n.lineno):
        above = node.lineno - 1
        while above >= 1 and (above in import_lines or not lines[above - 1].strip()):
            above -= 1
        comment = []
        while above >= 1 and lines[above - 1].strip().startswith("#"):
            comment.append(lines[above - 1].strip())
            above -= 1
        if not any(line.startswith("# lazy (") for line in comment):
            missing.append(node.lineno)
    return missing


def test_every_import_inside_a_function_says_why():
    """An import inside a function hides a layer from the reader: allowed only to save start-up time or to keep an
    optional dependency optional, and then it says so."""
    missing = [f"{path.relative_to(ROOT)}:{line}" for path in source_files().values()
               for line in unexplained_lazy_imports(path.read_text())]
    assert missing == []


def test_the_lazy_import_check_finds_an_unexplained_import():
    source = ("def a():\n    # lazy (start-up): slow\n    import ray\n\n    import opacus\n\n"
              "def b():\n    x = 1\n    import torch\n")
    assert unexplained_lazy_imports(source) == [9]
