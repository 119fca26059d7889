"""The ``gorch`` command: demo data, migrations, run-due, ``-v``, and configuration errors."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from engine import Engine, PollingResumer, SQLModelStore, WorkflowStatus
from engine.cli import main
from engine.config import ConfigError, load_app
from engine.examples import WORKFLOWS, Expense

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "apps"))


def test_demo_seeds_every_status_once(db_url: str) -> None:
    runner = CliRunner()
    first = runner.invoke(main, ["demo", "--db", db_url])
    assert first.exit_code == 0, first.output
    again = runner.invoke(main, ["demo", "--db", db_url])
    assert again.exit_code == 0, again.output
    store = SQLModelStore(db_url)
    counts = store.count_workflows()
    assert all(counts[s] >= 1 for s in WorkflowStatus), counts
    assert sum(counts.values()) == 9  # seeding twice created nothing new
    store.close()


def test_db_upgrade_is_idempotent(db_url: str) -> None:
    runner = CliRunner()
    for _ in range(2):
        result = runner.invoke(main, ["db", "upgrade", "--db", db_url])
        assert result.exit_code == 0, result.output
        assert "up to date" in result.output


def test_run_due_executes_due_work_and_exits(db_url: str) -> None:
    store = SQLModelStore(db_url)
    engine = Engine(store, WORKFLOWS, resumer=PollingResumer())
    wid = engine.new_workflow(Expense(amount=3))
    assert engine.get(wid).status is WorkflowStatus.RUNNING
    result = CliRunner().invoke(main, ["run-due", "--db", db_url, "--app", "engine.examples"])
    assert result.exit_code == 0, result.output
    assert engine.get(wid).status is WorkflowStatus.WAITING
    assert "due item(s) handled" in result.output
    store.close()


def test_app_module_without_workflows_list_uses_its_subclasses() -> None:
    app = load_app("deploy_v1")
    assert [w.workflow_type() for w in app.workflows] == ["deploy"]
    assert load_app("engine.examples").workflows == WORKFLOWS


@pytest.mark.parametrize("module", ["no.such.module", "json"])
def test_bad_app_module_is_a_clear_error(module: str) -> None:
    with pytest.raises(ConfigError, match=module):
        load_app(module)


def gorch_script() -> str:
    """The installed ``gorch`` script (its sys.path starts at its bin folder, not here)."""
    path = Path(sys.executable).with_name("gorch")
    assert path.is_file(), "the gorch script is not installed: pip install -e ."
    return str(path)


def command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command of ``group`` and of its subgroups, as the words that call it."""
    paths = []
    for name, cmd in group.commands.items():
        paths.append((*prefix, name))
        if isinstance(cmd, click.Group):
            paths += command_paths(cmd, (*prefix, name))
    return paths


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize("path", command_paths(main), ids=" ".join)
def test_every_command_takes_v_before_and_after_it(path: tuple[str, ...]) -> None:
    for args in (["-v", *path], [*path, "-v"], [*path, "-vv"], [*path, "--verbose"]):
        result = CliRunner().invoke(main, [*args, "--help"])
        assert result.exit_code == 0, (args, result.output)
        assert "-v, --verbose" in result.output


@pytest.mark.parametrize(
    ("args", "alembic"),
    [(["worker", "-v"], False), (["-v", "worker"], False), (["-v", "worker", "-v"], True)],
)
def test_worker_v_logs_the_worker_and_leaves_alembic_quiet(
    tmp_path: Path, args: list[str], alembic: bool
) -> None:
    """``-v`` shows gorch's INFO lines, not Alembic's; ``-vv`` (given in two places) shows all."""
    db = f"sqlite:///{tmp_path / 'w.db'}"
    store = SQLModelStore(db)
    engine = Engine(store, WORKFLOWS, resumer=PollingResumer())
    wid = engine.new_workflow(Expense(amount=3))  # left for the worker
    proc = subprocess.Popen(
        [gorch_script(), *args, "--db", db, "--poll", "0.1"],
        cwd=tmp_path, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        # Once the worker ran the workflow, its SIGTERM handler is in place.
        while engine.get(wid).status is not WorkflowStatus.WAITING:
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "the worker did not run the workflow in 60 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, text = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        store.close()
    assert proc.returncode == 0, text
    assert "gorch.worker INFO worker stopped after" in text
    assert ("alembic.runtime.migration INFO" in text) is alembic, text


def test_app_module_in_the_working_directory_is_found(tmp_path: Path) -> None:
    (tmp_path / "myapp.py").write_text(
        "from engine import Return, S, Workflow\n\n"
        "class Hello(Workflow):\n"
        "    def definition(self):\n"
        "        return S(Return('hi'))\n"
    )
    out = subprocess.run(
        [gorch_script(), "run-due", "--db", f"sqlite:///{tmp_path / 'x.db'}", "--app", "myapp"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "0 due item(s) handled" in out.stdout
