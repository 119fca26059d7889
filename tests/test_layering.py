"""The engine's module graph: no import cycles, counting imports inside functions, and a light
``import engine`` (no SQL or graph library until one is used).

import-linter (pyproject.toml, ``lint-imports`` in scripts/test.sh) checks the layers; this test
parses every module itself so that no import hides from it: module level, inside functions and
methods, inside ``try``; only imports under ``if TYPE_CHECKING:`` are left out, since they never
run. See the map in docs/design.md.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parent.parent
ENGINE = ROOT / "engine"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Every module named by an import statement anywhere in ``tree`` outside TYPE_CHECKING.

    ``from package import name`` counts as an import of ``package.name`` when that is a module
    (it runs that module), else of ``package``.
    """
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    visit_one(other)
                continue
            visit_one(child)

    def visit_one(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package that holds this module
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join([*package, base] if base else package)
            for alias in node.names:
                found.add(f"{base}.{alias.name}")
            found.add(base)
        else:
            visit(node)

    visit(tree)
    return found


def import_graph() -> nx.DiGraph:
    """The engine's modules and which imports which (any import, at run time)."""
    paths = {_module_name(p): p for p in ENGINE.rglob("*.py")}
    graph = nx.DiGraph()
    graph.add_nodes_from(paths)
    for module, path in paths.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        names = _imported(tree, module, path.name == "__init__.py")
        for name in names:
            if name == module or name not in paths:
                continue
            # `from package import module` names both; the module is what it imports
            if any(other.startswith(name + ".") for other in names if other in paths):
                continue
            graph.add_edge(module, name)
    return graph


def test_the_graph_sees_imports_inside_functions_and_skips_type_checking() -> None:
    graph = import_graph()
    assert graph.number_of_nodes() > 30
    # engine.cli imports the worker inside a function only; engine._session.started imports
    # the compiler's Program under TYPE_CHECKING only.
    assert graph.has_edge("engine.cli", "engine._scheduling.worker")
    assert not graph.has_edge("engine._session.started", "engine._definition.compiler")


def test_the_engine_has_no_import_cycle() -> None:
    graph = import_graph()
    cycles = sorted(nx.simple_cycles(graph), key=len)
    assert not cycles, "import cycle(s), shortest first:\n" + "\n".join(
        " -> ".join([*c, c[0]]) for c in cycles[:10]
    )


def test_statements_and_records_know_nothing_of_notebooks_or_graphs() -> None:
    graph = import_graph()
    display = {"engine.notebook", "engine.graph", "engine._outline", "engine._display"}
    for module in ("engine._definition.statements", "engine._records"):
        reached = nx.descendants(graph, module)
        assert not reached & display, f"{module} reaches {sorted(reached & display)}"


def test_import_engine_loads_no_sql_or_graph_library() -> None:
    code = (
        "import sys\n"
        "from engine import Engine, MemoryStore, Workflow, S, Step, Wait, On\n"
        "heavy = ('sqlalchemy', 'alembic', 'sqlmodel', 'psycopg', 'networkx', 'graphviz')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
        "from engine import SQLModelStore\n"  # the lazy name still works, and loads them
        "print(SQLModelStore.__module__, 'sqlalchemy' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    light, lazy = out.stdout.strip().splitlines()
    assert light == "[]"
    assert lazy == "engine.store.sql True"


def test_lazy_names_are_the_real_classes() -> None:
    import engine
    import engine.store
    from engine.store.sql import SQLModelStore

    assert engine.SQLModelStore is SQLModelStore
    assert engine.store.SQLModelStore is SQLModelStore
    assert "SQLModelStore" in engine.__all__


def test_the_import_linter_contracts_are_kept() -> None:
    """The contracts of pyproject.toml, also checked here so that pytest alone catches a break."""
    lint_imports = Path(sys.executable).parent / "lint-imports"
    out = subprocess.run(
        [str(lint_imports), "--no-cache"], capture_output=True, text=True, cwd=ROOT
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout
