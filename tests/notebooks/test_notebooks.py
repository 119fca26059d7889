"""The notebooks in ``notebooks/`` run top to bottom in a fresh kernel, and are stored clean.

Each notebook is executed once per test session with nbclient, in a temporary directory (so
notebook 4's SQLite file lands there; ``GORCH_DB_URL`` points it at a temporary file), with a
``python3`` kernel that is this interpreter. Without a kernel or without the Graphviz binary the
tests skip, except in CI (``CI=true``), where they fail: CI must show real SVG outputs.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
NAMES = [
    "01_quick_start.ipynb",
    "02_updating_code.ipynb",
    "03_time_and_threads.ipynb",
    "04_sqlite_and_ui.ipynb",
    "05_sandbox_and_timeline.ipynb",
]
CI = os.environ.get("CI", "").lower() == "true"


def require(ok: bool, what: str) -> None:
    """Skip without ``what``, or fail in CI, where everything must be installed."""
    if ok:
        return
    if CI:
        pytest.fail(f"{what} is missing in CI")
    pytest.skip(f"{what} is missing: the notebook tests need it")


def require_kernel() -> None:
    for module in ("nbclient", "nbformat", "ipykernel"):
        require(importlib.util.find_spec(module) is not None, f"the {module} package")


def require_dot() -> None:
    require(
        shutil.which("dot") is not None,
        "the Graphviz `dot` binary (apt-get install graphviz / brew install graphviz)",
    )


def outputs(nb: Any) -> list[tuple[int, dict[str, Any]]]:
    """(cell index, output) for every output of every code cell."""
    return [
        (i, out)
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
    ]


def stream(nb: Any, cell: int) -> str:
    return "".join(o.get("text", "") for o in nb.cells[cell].outputs if o.output_type == "stream")


def code_cells(nb: Any) -> list[int]:
    return [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]


@pytest.fixture(scope="session")
def executed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Each notebook, executed (lazily, once) in its own temporary directory."""
    require_kernel()
    import nbformat
    from nbclient import NotebookClient

    # A python3 kernelspec that is this interpreter, ahead of any other on the machine.
    jupyter = tmp_path_factory.mktemp("jupyter")
    spec = jupyter / "kernels" / "python3"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec.joinpath("kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "Python 3", "language": "python"})
    )
    cache: dict[str, Any] = {}

    def run(name: str) -> Any:
        if name not in cache:
            cwd = tmp_path_factory.mktemp(name.split("_")[0])
            nb = nbformat.read(NOTEBOOKS / name, as_version=4)
            with pytest.MonkeyPatch.context() as mp:
                mp.setenv("JUPYTER_PATH", str(jupyter))
                mp.setenv("GORCH_DB_URL", f"sqlite:///{cwd / 'ui.db'}")
                mp.setenv("PYTHONPATH", str(NOTEBOOKS.parent))
                client = NotebookClient(
                    nb,
                    timeout=180,
                    kernel_name="python3",
                    allow_errors=True,  # errors are asserted below, cell by cell
                    resources={"metadata": {"path": str(cwd)}},
                )
                client.execute()
            cache[name] = (nb, cwd)
        return cache[name]

    yield {"run": run}


@pytest.mark.notebook
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_top_to_bottom(executed: dict[str, Any], name: str) -> None:
    nb, _ = executed["run"](name)
    errors = [
        f"cell {i}: {out['ename']}: {out['evalue']}"
        for i, out in outputs(nb)
        if out["output_type"] == "error"
    ]
    assert not errors, errors
    assert all(nb.cells[i].execution_count is not None for i in code_cells(nb))
    assert nb.cells[0].cell_type == "markdown"


@pytest.mark.notebook
@pytest.mark.parametrize("name", NAMES)
def test_notebook_draws_graphs_as_svg(executed: dict[str, Any], name: str) -> None:
    require_dot()
    nb, _ = executed["run"](name)
    svgs = [out["data"]["image/svg+xml"] for _, out in outputs(nb)
            if "image/svg+xml" in out.get("data", {})]  # fmt: skip
    assert svgs, f"{name} shows no graph"
    for drawn in svgs:
        root = ET.fromstring(drawn)
        assert root.tag.endswith("svg")
        assert any(el.get("class") == "node" for el in root.iter())


@pytest.mark.notebook
def test_quick_start_steps_approves_and_finishes(executed: dict[str, Any]) -> None:
    nb, _ = executed["run"]("01_quick_start.ipynb")
    last = code_cells(nb)[-1]
    assert stream(nb, last).splitlines()[-1] == "status: finished"
    assert "expense-2 workflow was not approved: over budget" in stream(nb, last)
    plain = [out["data"]["text/plain"] for _, out in outputs(nb) if "data" in out]
    heads = [p.splitlines()[0] for p in plain if p.startswith("Expense expense-1")]
    # shown after the start, five steps, the approval and the last step
    status = [h.removeprefix("Expense expense-1: ") for h in heads]
    assert status[:8] == ["running"] * 5 + ["waiting", "running", "finished"]


@pytest.mark.notebook
def test_updating_code_refuses_then_moves_and_finishes_on_v2(executed: dict[str, Any]) -> None:
    nb, _ = executed["run"]("02_updating_code.ipynb")
    text = "".join(stream(nb, i) for i in code_cells(nb))
    assert "Claim: 2 unfinished workflow(s) checked, 1 would break" in text
    assert "'manager approval': ['claim-a']" in text
    assert "moved: [('claim-a', 'main')]" in text
    assert "Claim: 2 unfinished workflow(s) checked, 0 would break" in text
    assert "DefinitionMismatch: " in text and "unchanged: True" in text
    assert "claim-a finished {'paid': 100, 'receipt': 'receipt for 100'}" in text
    assert "claim-b finished {'paid': 200, 'receipt': 'receipt for 200'} " in text
    assert "['record', 'check budget', 'pay']" in text  # b ran v2's new step


@pytest.mark.notebook
def test_time_and_threads_fires_the_timeouts(executed: dict[str, Any]) -> None:
    nb, _ = executed["run"]("03_time_and_threads.ipynb")
    text = "".join(stream(nb, i) for i in code_cells(nb))
    assert "item-a prepared\nitem-b prepared\nitem-c prepared" in text
    assert "finished {'confirmed': {'item-a': 'ana'}, 'expired': ['item-b', 'item-c']}" in text


@pytest.mark.notebook
def test_sqlite_notebook_writes_the_database_the_ui_reads(executed: dict[str, Any]) -> None:
    from engine import Engine, SQLModelStore
    from engine.examples import WORKFLOWS

    nb, cwd = executed["run"]("04_sqlite_and_ui.ipynb")
    assert f"database: sqlite:///{cwd / 'ui.db'}" in stream(nb, code_cells(nb)[0])
    # the command it prints opens this database from any directory (tests/ui/test_launch.py)
    assert f"open it in the UI: gorch ui --db sqlite:///{cwd / 'ui.db'}\n" in stream(
        nb, code_cells(nb)[0]
    )
    assert not (cwd / "gorch-notebook.db").exists()  # GORCH_DB_URL was used
    # What the UI would show: a fresh engine on the same file, as the UI builds one.
    store = SQLModelStore(f"sqlite:///{cwd / 'ui.db'}")
    try:
        engine = Engine(store, WORKFLOWS)
        found = {w.id.rsplit("-", 1)[0]: w.status.value for w in engine.list()}
        assert found == {
            "nb-expense": "finished",
            "nb-order": "finished",
            "nb-expense-ui": "waiting",
        }
        waiting = next(w for w in engine.list() if w.id.startswith("nb-expense-ui"))
        assert {w.event for w in engine.pending_waits(waiting.id)} == {"slackApproval", "timeout"}
    finally:
        store.close()


@pytest.mark.notebook
def test_sandbox_notebook_forks_approves_denies_and_replays(executed: dict[str, Any]) -> None:
    nb, _ = executed["run"]("05_sandbox_and_timeline.ipynb")
    text = "".join(stream(nb, i) for i in code_cells(nb))
    assert "approve fork: finished {'approved': 120}" in text
    assert "deny fork: finished - workflow was not approved: over budget" in text
    assert "fork: finished - workflow finished with timeout - state.error: ''" in text
    assert "steps skipped: ['abort workflow'] ran: []" in text
    # the real one did not move, nor its clock, nor the chat its manager posts to
    assert "real after the forks: waiting ['waiting for approval', 'parallel thread']" in text
    assert "real clock: 2026-01-01T00:00:00+00:00 fork clock: 2026-01-01T00:11:00+00:00" in text
    assert text.count("needs your approval (event 'slackApproval')\")}") == 2
    point3 = " 3 wait         running   main waiting @ waiting for approval, g1 running @ (start)"
    assert point3 in text
    assert " 8 finished     finished  main finished @ waiting for approval" in text
    assert "InvalidOperation: at=99 is not a line of the history of 'expense-1'" in text


def test_notebooks_are_stored_without_outputs() -> None:
    import nbformat

    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == NAMES
    for name in NAMES:
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        nbformat.validate(nb)
        assert nb.cells[0].cell_type == "markdown", name
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [], f"{name}: a cell has outputs"
                assert cell.execution_count is None, f"{name}: a cell has an execution count"
        assert nb.metadata.kernelspec.name == "python3"
