"""``gorch prune``: retention from the command line, and the input it refuses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from engine import Engine, ManualClock, PollingResumer, SQLModelStore, WorkflowStatus
from engine.cli import main
from engine.examples import WORKFLOWS, Expense

AGO = datetime.now(UTC) - timedelta(days=40)


def seed(db_url: str) -> SQLModelStore:
    """40 days ago: three finished, one cancelled, one failed, one waiting; one finished now."""
    store = SQLModelStore(db_url)
    clock = ManualClock(AGO)
    engine = Engine(store, WORKFLOWS, clock=clock, resumer=PollingResumer())
    for i in range(3):
        engine.new_workflow(Expense(amount=i), f"done-{i}")
        engine.execute(f"done-{i}")
        engine.on_callback(f"done-{i}", "slackApproval", {"approved": True})
        engine.execute(f"done-{i}")
    engine.new_workflow(Expense(amount=9), "cancelled")
    engine.cancel("cancelled", actor="ops")
    engine.new_workflow(Expense(amount=8), "waiting")
    engine.execute("waiting")
    clock.set(datetime.now(UTC) - timedelta(days=1))
    engine.new_workflow(Expense(amount=7), "recent")
    engine.execute("recent")
    engine.on_callback("recent", "slackApproval", {"approved": True})
    engine.execute("recent")
    statuses = {w.id: w.status for w in engine.list()}
    assert statuses == {
        "done-0": WorkflowStatus.FINISHED,
        "done-1": WorkflowStatus.FINISHED,
        "done-2": WorkflowStatus.FINISHED,
        "cancelled": WorkflowStatus.CANCELLED,
        "waiting": WorkflowStatus.WAITING,
        "recent": WorkflowStatus.FINISHED,
    }
    return store


def ids(store: SQLModelStore) -> set[str]:
    return {r.id for r in store.list_workflows(limit=1000)}


def test_prune_prints_what_it_removed_and_would_remove(db_url: str) -> None:
    store = seed(db_url)
    runner = CliRunner()
    dry = runner.invoke(main, ["prune", "--db", db_url, "--older-than", "30d", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert dry.output.startswith("would remove 4 workflow(s), 0 wait(s), ")
    assert len(ids(store)) == 6
    real = runner.invoke(main, ["prune", "--db", db_url, "--older-than", "30d"])
    assert real.exit_code == 0, real.output
    # the same counts as the dry run
    assert (
        real.output.split(" (")[0] == "removed" + dry.output.split(" (")[0][len("would remove") :]
    )
    assert ids(store) == {"waiting", "recent"}
    again = runner.invoke(main, ["prune", "--db", db_url, "--older-than", "2w"])
    assert again.exit_code == 0 and again.output.startswith("removed 0 workflow(s)")
    recent = runner.invoke(main, ["prune", "--db", db_url, "--older-than", "12h", "--batch", "1"])
    assert recent.exit_code == 0 and recent.output.startswith("removed 1 workflow(s)")
    assert ids(store) == {"waiting"}
    store.close()


def test_prune_filters_by_type_and_status(db_url: str) -> None:
    store = seed(db_url)
    runner = CliRunner()
    other = runner.invoke(main, ["prune", "--db", db_url, "--older-than", "30d",
                                 "--type", "NoSuchType"])  # fmt: skip
    assert other.exit_code == 0 and other.output.startswith("removed 0 workflow(s)")
    cancelled = runner.invoke(main, ["prune", "--db", db_url, "--older-than", "30d",
                                     "--type", "Expense", "--status", "cancelled"])  # fmt: skip
    assert cancelled.exit_code == 0 and cancelled.output.startswith("removed 1 workflow(s)")
    assert ids(store) == {"done-0", "done-1", "done-2", "waiting", "recent"}
    store.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--older-than", "30x"], "is not an age"),
        (["--older-than", "-3d"], "is not an age"),
        (["--older-than", "30"], "is not an age"),
        (["--older-than", "99999999w"], "further back than dates go"),
        ([], "Missing option '--older-than'"),
        (["--older-than", "1d", "--status", "running"], "'running' is not one of"),
        (["--older-than", "1d", "--status", "waiting"], "'waiting' is not one of"),
        (["--older-than", "1d", "--batch", "0"], "0 is not in the range x>=1"),
    ],
)
def test_bad_arguments_are_click_errors_and_delete_nothing(
    db_url: str, args: list[str], message: str
) -> None:
    store = seed(db_url)
    result = CliRunner().invoke(main, ["prune", "--db", db_url, *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert len(ids(store)) == 6
    store.close()
