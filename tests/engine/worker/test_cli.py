"""The ``gorch`` command: demo data, migrations, run-due, and configuration errors."""

from __future__ import annotations

import sys
from pathlib import Path

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
