"""``gorch check --try`` / ``trial_run``: each unfinished workflow forked into the new code
and run until it blocks, steps skipped, nothing written; on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from engine import (
    Engine,
    For,
    PollingResumer,
    S,
    Section,
    SQLModelStore,
    Step,
    WaitFor,
    Workflow,
    trial_run,
)
from engine.cli import main
from tests.engine.deploy.test_deploy import V1, Breaking, Compatible, start
from tests.engine.store.test_fork_store import every_row


class Gate(Workflow):
    type_name = "gate"
    open: bool = False
    n: int = 0

    def definition(self) -> Section:
        return S(WaitFor("until open", lambda: self.open), Step("after", self.inc))

    def inc(self) -> None:
        self.n += 1


class GateOpens(Gate):
    """The new code's condition holds at once: waiting workflows would move by themselves."""

    type_name = "gate"

    def definition(self) -> Section:
        return S(WaitFor("until open", lambda: True), Step("after", self.inc))


class Spin(Workflow):
    type_name = "spin"
    n: int = 0

    def definition(self) -> Section:
        return S(For("loop", lambda: self.n < 3, Step("tick", self.inc)))

    def inc(self) -> None:
        self.n += 1


@pytest.fixture
def store(db_url: str) -> Iterator[SQLModelStore]:
    s = SQLModelStore(db_url)
    yield s
    s.close()


def test_compatible_code_runs_every_copy_to_where_it_stood(store: SQLModelStore) -> None:
    ids = start(store, 3)
    before = every_row(store)
    report = trial_run(Engine(store, [Compatible], resumer=PollingResumer()), "claim")
    assert report.ok and len(report.results) == 3
    assert {r.workflow_id for r in report.results} == set(ids)
    assert all(r.after == "waiting: main waiting at review" for r in report.results)
    assert every_row(store) == before


def test_breaking_moving_and_spinning_workflows_are_reported(store: SQLModelStore) -> None:
    ids = start(store, 2)
    gates = Engine(store, [Gate], resumer=PollingResumer())
    gate = gates.new_workflow(Gate(), "gate-1")
    gates.execute(gate)
    spin = Engine(store, [Spin], resumer=PollingResumer()).new_workflow(Spin(), "spin-1")
    before = every_row(store)

    broken = trial_run(Engine(store, [Breaking], resumer=PollingResumer()), "claim")
    assert sorted(r.workflow_id for r in broken.problems) == sorted(ids)
    assert {r.kind for r in broken.problems} == {"failed"}
    assert "DefinitionMismatch" in broken.problems[0].message

    moved = trial_run(Engine(store, [GateOpens], resumer=PollingResumer()), "gate")
    [result] = moved.problems
    assert (result.workflow_id, result.kind) == (gate, "moved")
    assert result.before == "waiting: main waiting at until open"
    assert result.after == "finished"
    assert "gate-1: moved" in moved.summary()

    # A loop over skipped steps never ends: that says nothing about the code, and is no problem.
    spun = trial_run(Engine(store, [Spin], resumer=PollingResumer()), "spin", max_steps=50)
    assert spun.ok and [r.workflow_id for r in spun.inconclusive] == [spin]
    assert "RunawayLoop" in spun.inconclusive[0].message
    assert "1 inconclusive (a loop over skipped steps never ended" in spun.summary()
    # Run with its steps, the same workflow finishes: nothing to report.
    ran = trial_run(Engine(store, [Spin], resumer=PollingResumer()), "spin", skip_steps=[])
    assert ran.ok and [r.after for r in ran.results] == ["finished"]

    assert trial_run(Engine(store, [Gate], resumer=PollingResumer()), "gate").ok
    assert every_row(store) == before  # nothing of any trial was written


def test_gorch_check_try_gates_a_deploy(store: SQLModelStore, db_url: str) -> None:
    start(store, 2)
    before = every_row(store)
    runner = CliRunner()
    args = ["check", "--try", "--db", db_url, "--app"]
    ok = runner.invoke(main, [*args, "tests.engine.deploy.app_ok"])
    assert ok.exit_code == 0, ok.output
    assert "2 unfinished workflow(s) tried in a sandbox (steps skipped), 0 would fail" in ok.output
    bad = runner.invoke(main, [*args, "tests.engine.deploy.app_bad"])
    assert bad.exit_code == 1, bad.output
    assert "2 would fail or end up somewhere unexpected" in bad.output
    assert "c0: failed — DefinitionMismatch" in bad.output
    assert every_row(store) == before
    assert V1  # the code the workflows were stored with
