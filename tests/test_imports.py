"""The package's imports point one way: no cycle, and nothing imports a layer above its own.

Read from the source with `ast`, so imports under ``if TYPE_CHECKING:`` and inside functions count too:
a cycle that only the type checker sees is still two modules that cannot be understood apart.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "datasvc"

# Top to bottom: a module may import its own layer and the layers below it, never one above.
LAYERS: dict[str, set[str]] = {
    # The process and the wire: start-up, HTTP protocol and middleware, who the caller is, the documents.
    "wire": {
        "datasvc",
        "datasvc.__main__",
        "datasvc.cli",
        "datasvc.commands",
        "datasvc.commands.db",
        "datasvc.commands.migrate",
        "datasvc.commands.serve",
        "datasvc.commands.sql",
        "datasvc.commands.token",
        "datasvc.serve",
        "datasvc.app",
        "datasvc.protocol",
        "datasvc.middleware",
        "datasvc.accesslog",
        "datasvc.compression",
        "datasvc.limits",
        "datasvc.liveness",
        "datasvc.auth",
        "datasvc.tokenfile",
        "datasvc.openapi",
        "datasvc.docs",
        "datasvc.tracing",
        "datasvc.spanexport",
        "datasvc.otlp",
        "datasvc.bodies",
    },
    # Resource handlers, how they are declared (`routing.Operation`) and what they parse and answer.
    "handlers": {
        "datasvc.routing",
        "datasvc.health",
        "datasvc.consistency",
        "datasvc.conditional",
        "datasvc.inputs",
        "datasvc.pagination",
        "datasvc.preferences",
        "datasvc.idempotency",
        "datasvc.users",
        "datasvc.users.batches",
        "datasvc.users.changes",
        "datasvc.users.export",
        "datasvc.users.retention",
        "datasvc.users.routes",
        "datasvc.users.listing",
        "datasvc.users.models",
    },
    # The database: which server and how often, its connections, sending statements, schema tooling.
    "data": {
        "datasvc.db",
        "datasvc.pool",
        "datasvc.waitlist",
        "datasvc.parking",
        "datasvc.poolstats",
        "datasvc.replicas",
        "datasvc.statements",
        "datasvc.unnamed",
        "datasvc.connections",
        "datasvc.pooler",
        "datasvc.privileges",
        "datasvc.explain",
        "datasvc.migrations",
        "datasvc.embedded",
        "datasvc.schema",
        "datasvc.listener",
    },
    # What every layer may use: the registry, settings, errors, request context, metrics, answers.
    "base": {
        "datasvc.registry",
        "datasvc.sqlfiles",
        "datasvc.settings",
        "datasvc.envvalues",
        "datasvc.errors",
        "datasvc.dberrors",
        "datasvc.context",
        "datasvc.metrics",
        "datasvc.responses",
        "datasvc.logs",
        "datasvc.drain",
        "datasvc.listeners",
    },
}
ORDER = list(LAYERS)  # top first
LAYER_OF = {module: ORDER.index(layer) for layer, modules in LAYERS.items() for module in modules}


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.with_suffix("").relative_to(PACKAGE.parent).parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The package's modules ``name`` imports, anywhere in the file (``TYPE_CHECKING`` blocks included)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from datasvc import db` imports the module db; `from datasvc.db import Database` the module.
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name and target != "datasvc":
                found.add(target)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def test_every_module_has_a_layer() -> None:
    unassigned = sorted(set(MODULES) - set(LAYER_OF))
    assert not unassigned, f"add these modules to a layer in tests/test_imports.py: {unassigned}"
    gone = sorted(set(LAYER_OF) - set(MODULES))
    assert not gone, f"these modules are gone: remove them from LAYERS: {gone}"


def test_nothing_imports_a_layer_above_its_own() -> None:
    upward = [
        f"{module} ({ORDER[LAYER_OF[module]]}) imports {target} ({ORDER[LAYER_OF[target]]})"
        for module, targets in GRAPH.items()
        for target in sorted(targets)
        if module in LAYER_OF and target in LAYER_OF and LAYER_OF[target] < LAYER_OF[module]
    ]
    assert not upward, "upward imports:\n" + "\n".join(upward)


def _cycle() -> list[str] | None:
    """One import cycle of the package, as the modules along it, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for target in sorted(GRAPH[module]):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (found := visit(target)):
                return found
        path.pop()
        state[module] = 2
        return None

    for module in sorted(GRAPH):
        if module not in state and (found := visit(module)):
            return found
    return None


def test_no_import_cycle() -> None:
    cycle = _cycle()
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from datasvc.db import Database\n", {"datasvc.db"}),
        ("from datasvc import db, routing\n", {"datasvc.db", "datasvc.routing"}),
        ("import datasvc.users.models\n", {"datasvc.users.models"}),
        ("if TYPE_CHECKING:\n    from datasvc.metrics import Metrics\n", {"datasvc.metrics"}),
        ("def f():\n    from . import errors\n", {"datasvc.errors"}),
    ],
)
def test_the_reader_sees_every_form_of_import(tmp_path: Path, source: str, expected: set[str]) -> None:
    path = tmp_path / "probe.py"
    path.write_text(source)
    assert _imports("datasvc.probe", path) == expected
