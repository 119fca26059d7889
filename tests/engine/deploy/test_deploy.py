"""Deploying new code under running workflows: the check, renames, goto and bulk moves."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from engine import (
    DefinitionMismatch,
    Engine,
    On,
    PollingResumer,
    S,
    Section,
    SQLModelStore,
    Step,
    Wait,
    WaitForUserAction,
    Workflow,
    WorkflowStatus,
    check_compatibility,
)
from engine.cli import main


class V1(Workflow):
    type_name = "claim"
    log: list[str] = []

    def definition(self) -> Section:
        return S(
            Step("receive", lambda: self.log.append("receive")),
            Wait("review", On("decide", WaitForUserAction(
                approve=lambda: self.log.append("approved"), deny=lambda r: None))),
            Step("pay", lambda: self.log.append("pay")),
        )  # fmt: skip


class Compatible(Workflow):
    """Statements added before and after the position the threads stand on."""

    type_name = "claim"
    log: list[str] = []

    def definition(self) -> Section:
        return S(
            Step("receive", lambda: self.log.append("receive")),
            Step("new before", lambda: self.log.append("new before")),
            Wait("review", On("decide", WaitForUserAction(
                approve=lambda: self.log.append("approved v2"), deny=lambda r: None))),
            Step("new after", lambda: self.log.append("new after")),
            Step("pay", lambda: self.log.append("pay v2")),
        )  # fmt: skip


class Breaking(Workflow):
    """The wait the threads stand on is gone."""

    type_name = "claim"
    log: list[str] = []

    def definition(self) -> Section:
        return S(
            Step("receive", lambda: self.log.append("receive")),
            Step("auto review", lambda: self.log.append("auto")),
            Step("pay", lambda: self.log.append("pay v3")),
        )  # fmt: skip


class Renaming(Workflow):
    """The wait was renamed, with an alias: threads follow it."""

    type_name = "claim"
    log: list[str] = []

    def definition(self) -> Section:
        return S(
            Step("receive", lambda: self.log.append("receive")),
            Wait("manager review", On("decide", WaitForUserAction(
                approve=lambda: self.log.append("approved v4"), deny=lambda r: None))),
            Step("pay", lambda: self.log.append("pay v4")),
            renamed={"review": "manager review"},
        )  # fmt: skip


@pytest.fixture
def store(db_url: str) -> Iterator[SQLModelStore]:
    s = SQLModelStore(db_url)
    yield s
    s.close()


def start(store: SQLModelStore, n: int) -> list[str]:
    v1 = Engine(store, [V1], resumer=PollingResumer())
    ids = [v1.new_workflow(V1(), f"c{i}") for i in range(n)]
    for wid in ids:
        assert v1.execute(wid).status is WorkflowStatus.WAITING
    return ids


def test_a_compatible_change_passes_the_check_and_runs_on(store: SQLModelStore) -> None:
    ids = start(store, 3)
    report = check_compatibility(Compatible, store)
    assert report.ok and report.checked == 3 and report.problems == []
    v2 = Engine(store, [Compatible], resumer=PollingResumer())
    v2.on_callback(ids[0], "decide", {"approved": True}, actor="ana")
    info = v2.execute(ids[0])
    assert info.status is WorkflowStatus.FINISHED
    # The step added before the wait never runs; the one after it does.
    assert info.state.log == ["receive", "approved v2", "new after", "pay v2"]
    kinds = [h.kind for h in v2.history(ids[0])]
    assert "code_changed" in kinds
    assert info.fingerprint is not None


def test_a_breaking_change_is_found_by_the_check_before_any_workflow_fails(
    store: SQLModelStore,
) -> None:
    ids = start(store, 4)
    before = {wid: store.load(wid) for wid in ids}
    report = check_compatibility(Breaking, store)
    assert not report.ok
    assert sorted(report.broken) == sorted(ids)
    assert list(report.by_statement()) == ["review"]
    assert {p.kind for p in report.problems} == {"statement"}
    assert "would break" in report.summary()
    # The check wrote nothing: every workflow is exactly as it was.
    for wid in ids:
        after = store.load(wid)
        assert (after.pc, after.version, after.status) == (
            before[wid].pc, before[wid].version, before[wid].status)  # fmt: skip
    # And running them on the new code is the mismatch the check predicted.
    v3 = Engine(store, [Breaking], resumer=PollingResumer())
    with pytest.raises(DefinitionMismatch):
        v3.execute(ids[0])
    assert store.load(ids[0]).version == before[ids[0]].version


def test_gorch_check_gates_a_deploy(store: SQLModelStore, db_url: str) -> None:
    start(store, 2)
    runner = CliRunner()
    ok = runner.invoke(main, ["check", "--db", db_url, "--app", "tests.engine.deploy.app_ok"])
    assert ok.exit_code == 0, ok.output
    assert "0 would break" in ok.output
    bad = runner.invoke(main, ["check", "--db", db_url, "--app", "tests.engine.deploy.app_bad"])
    assert bad.exit_code == 1, bad.output
    assert "2 would break" in bad.output and "review" in bad.output


def test_a_rename_alias_is_followed_without_any_manual_step(store: SQLModelStore) -> None:
    ids = start(store, 2)
    report = check_compatibility(Renaming, store)
    assert report.ok
    assert {(r.old, r.new) for r in report.renamed} == {("review", "manager review")}
    v4 = Engine(store, [Renaming], resumer=PollingResumer())
    v4.on_callback(ids[0], "decide", {"approved": True}, actor="ana")
    info = v4.execute(ids[0])
    assert info.status is WorkflowStatus.FINISHED
    assert info.state.log == ["receive", "approved v4", "pay v4"]
    renamed = [h for h in v4.history(ids[0]) if h.kind == "renamed"]
    assert renamed and renamed[0].statement == "manager review"
    # The other workflow's stored position moves to the new name at its next session.
    v4.execute(ids[1])
    main_thread = store.load(ids[1]).thread("main")
    assert main_thread is not None and main_thread.position == "manager review"
    assert [w.wait for w in store.load_waits(ids[1]) if w.status.open] == ["manager review"]


def test_bulk_move_of_a_thousand_workflows_is_one_audited_operation(
    store: SQLModelStore,
) -> None:
    ids = start(store, 1000)
    assert not check_compatibility(Breaking, store).ok
    v3 = Engine(store, [Breaking], resumer=PollingResumer())
    report = v3.move("claim", "review", "pay", actor="ops", reason="review step retired")
    assert len(report.moved) == 1000 and not report.failed
    assert check_compatibility(Breaking, store).ok
    for wid in ids[:20] + ids[-20:]:
        gotos = [h for h in v3.history(wid) if h.kind == "goto"]
        assert len(gotos) == 1
        g = gotos[0]
        assert (g.actor, g.statement) == ("ops", "pay")
        assert g.detail["operation"] == report.operation
        assert g.detail["moved_from"] == "review"
        assert g.detail["reason"] == "review step retired"
        assert store.load_waits(wid) == []  # the wait it left was torn down
    info = v3.execute(ids[0])
    assert info.status is WorkflowStatus.FINISHED
    assert info.state.log == ["receive", "pay v3"]


def test_goto_backward_runs_a_step_again(store: SQLModelStore) -> None:
    (wid,) = start(store, 1)
    engine = Engine(store, [V1], resumer=PollingResumer())
    engine.goto(wid, "main", "receive", actor="ops", reason="re-run intake")
    info = engine.execute(wid)
    assert info.status is WorkflowStatus.WAITING
    assert info.state.log == ["receive", "receive"]
    steps = [h.statement for h in engine.history(wid) if h.kind == "step"]
    assert steps == ["receive", "receive"]
