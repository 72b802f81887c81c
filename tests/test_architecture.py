"""The layers of DESIGN.md, checked from the source: `api → taskqueue → worker → core`, one way, no cycles.

Imports are read with `ast` (so an import inside a function counts too); only imports under
`if TYPE_CHECKING:` are left out, since they never run.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = {
    "core", "worker", "taskqueue", "api", "webui", "harness", "bench", "clients", "mflux_client", "mflux_mcp", "server",
    "tests",
}  # fmt: skip

# What each package may import of ours (besides itself). Everything else of ours is refused.
MAY_IMPORT = {
    "core": set(),
    "worker": {"core"},
    "taskqueue": {"core", "worker"},
    "api": {"core", "taskqueue", "webui"},
    "webui": set(),
    "clients": set(),  # they speak HTTP only
    "harness": set(),  # it starts server.py as a process
    "server": {"core", "taskqueue", "worker", "api"},
    "bench": {"harness", "core", "worker", "server"},
}
# The only modules of the queue the HTTP layer may import: the façade (and the settings it is built from).
API_MAY_IMPORT_FROM_TASKQUEUE = {"taskqueue.service"}


def _package_of(path: Path) -> str:
    parts = path.relative_to(ROOT).parts
    return "server" if parts == ("server.py",) else parts[0]


def _module_of(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    if parts[0] == "clients":
        parts = parts[1:]
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(path: Path) -> set[str]:
    """Every module of ours that `path` imports at run time, fully named."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {name for name in found if name.split(".")[0] in OURS}


def sources() -> list[Path]:
    folders = ("core", "worker", "taskqueue", "api", "webui", "harness", "bench", "clients")
    return [ROOT / "server.py", *(p for folder in folders for p in sorted((ROOT / folder).rglob("*.py")))]


MODULES = {_module_of(path): path for path in sources()}


def _resolve(name: str) -> str | None:
    """The module of ours an imported name refers to (a module, or a name inside one)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def module_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for module, path in MODULES.items():
        for name in imports_of(path):
            target = _resolve(name)
            if target is not None and target != module:
                graph[module].add(target)
    return graph


def _package(module: str) -> str:
    top = module.split(".")[0]
    return "clients" if top in ("mflux_client", "mflux_mcp") else top


@pytest.mark.parametrize("package", sorted(MAY_IMPORT))
def test_each_package_imports_only_the_layers_below_it(package):
    allowed = MAY_IMPORT[package] | {package}
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in module_graph().items()
        if _package(module) == package
        for target in targets
        if _package(target) not in allowed
    )
    assert wrong == []


def test_the_http_layer_reaches_the_queue_only_through_the_facade():
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in module_graph().items()
        if _package(module) == "api"
        for target in targets
        if _package(target) == "taskqueue" and target not in API_MAY_IMPORT_FROM_TASKQUEUE
    )
    assert wrong == []


def test_no_module_imports_itself_through_others():
    graph = module_graph()
    cycles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                cycles.append(" → ".join([*path[path.index(target) :], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(MODULES):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_the_checker_sees_imports():
    """The graph is not vacuously clean: it sees the layers' real imports."""
    graph = module_graph()
    assert "core.tasks" in graph["taskqueue.store"]
    assert "taskqueue.service" in graph["api.context"]
    assert "worker.protocol" in graph["taskqueue.scheduler"]
