"""Before a deploy, run it: fork each unfinished workflow into the new code and see.

``check_compatibility`` reads positions; ``trial_run`` goes further. It forks every
unfinished workflow of a type (``Engine.fork``: a copy in memory, managers that only
record, steps skipped, so no step's code runs) into an engine holding the code about to be
deployed, runs the copy until it blocks (``execute``: no event arrives, no timer fires), and
compares where it stands with where it stood. Nothing is written to the store.

Unexpected, and reported (``gorch check --try`` exits 1 on any):

- ``failed``: the copy cannot run (``DefinitionMismatch``, a state that no longer fits, a
  definition that no longer builds) or ends with a failed thread (a condition that raises,
  a loop that never reaches a step: with steps skipped, a loop that waits for a step's
  change to the state spins until ``max_steps`` and is reported here too);
- ``moved``: a workflow that was waiting does not stay where it waited, though nothing
  arrived (a ``WaitFor`` that holds under the new code, a wait gone from the path, a
  workflow that now ends by itself).

Listed but not counted as a problem, ``inconclusive``: the run spent its whole budget
(``max_steps``) looping over skipped steps and stopped with ``RunawayLoop``. A loop that
waits for a step's change to the state (fetch pages until the last) never ends when the step
is skipped, so such a trial says nothing; try it with ``skip_steps`` naming only the steps
that reach the outside world.

A running workflow may move on and block or finish: that is what it would do after the
deploy, reported as ``ok`` with where it ends.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from engine._compat import unfinished
from engine._engine import Engine
from engine._records import ThreadInfo, WorkflowStatus
from engine.errors import GorchError
from engine.resumers import PollingResumer


@dataclass(frozen=True)
class TrialResult:
    """One workflow run on the new code in a sandbox.

    Attributes:
        workflow_id: the workflow.
        kind: ``ok``, ``failed``, ``moved`` or ``inconclusive`` (see the module docstring).
        before: its status and where its threads stood, as stored.
        after: the same in the sandbox after the run ("" when it could not run).
        message: what went wrong, or where it ends.
    """

    workflow_id: str
    kind: str
    before: str
    after: str
    message: str

    @property
    def unexpected(self) -> bool:
        """Whether it would fail or move unexpectedly (what ``gorch check --try`` fails on)."""
        return self.kind in ("failed", "moved")


@dataclass
class TrialReport:
    """What ``trial_run`` found for one workflow type."""

    type: str
    results: list[TrialResult] = field(default_factory=list)

    @property
    def problems(self) -> list[TrialResult]:
        """The workflows that would fail or end up somewhere unexpected."""
        return [r for r in self.results if r.unexpected]

    @property
    def inconclusive(self) -> list[TrialResult]:
        """The workflows whose trial looped over skipped steps until stopped."""
        return [r for r in self.results if r.kind == "inconclusive"]

    @property
    def ok(self) -> bool:
        """True if no workflow would fail or move unexpectedly."""
        return not self.problems

    def summary(self) -> str:
        """A few lines for a terminal or a CI log."""
        lines = [
            f"{self.type}: {len(self.results)} unfinished workflow(s) tried in a sandbox "
            f"(steps skipped), {len(self.problems)} would fail or end up somewhere unexpected"
        ]
        for r in self.problems[:20]:
            lines.append(f"  {r.workflow_id}: {r.kind} — {r.message}")
            lines.append(f"    before: {r.before}")
            if r.after:
                lines.append(f"    after:  {r.after}")
        if len(self.problems) > 20:
            lines.append(f"  and {len(self.problems) - 20} more")
        if self.inconclusive:
            ids = [r.workflow_id for r in self.inconclusive]
            shown = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
            lines.append(
                f"  {len(ids)} inconclusive (a loop over skipped steps never ended: try them "
                f"with only the outside-world steps skipped): {shown}"
            )
        return "\n".join(lines)


def _where(status: WorkflowStatus, threads: tuple[ThreadInfo, ...]) -> str:
    live = [
        f"{t.id} {t.status.value} {'after' if t.phase == 'done' else 'at'} "
        f"{t.position or '(start)'}"
        for t in threads
        if t.status.unfinished
    ]
    return f"{status.value}" + (f": {'; '.join(live)}" if live else "")


def _positions(threads: tuple[ThreadInfo, ...]) -> list[tuple[str, str, str, str]]:
    return [
        (t.id, t.position, t.phase.value, t.status.value) for t in threads if t.status.unfinished
    ]


def trial_run(
    engine: Engine,
    type_name: str,
    *,
    max_steps: int = 1000,
    skip_steps: bool | Iterable[str] = True,
) -> TrialReport:
    """Fork every unfinished workflow of ``type_name`` into ``engine``'s code and run it
    until it blocks, with steps skipped; report those that would fail or move unexpectedly.

    ``engine`` holds the code about to be deployed over the store the workflows are in; only
    reads reach that store. ``max_steps`` bounds each run (a loop spinning on skipped steps).
    ``skip_steps``: the steps whose code is not called (default all; ``Engine.fork``).
    """
    report = TrialReport(type_name)
    for record in unfinished(engine.store, type_name):
        wid = record.id
        try:
            before = engine.get(wid)
        except GorchError as e:
            report.results.append(TrialResult(wid, "failed", record.status.value, "", str(e)))
            continue
        was = _where(before.status, before.threads)
        if before.state_error is not None:
            report.results.append(TrialResult(wid, "failed", was, "", before.state_error))
            continue
        try:
            fork = engine.fork(wid, skip_steps=skip_steps, resumer=PollingResumer())
            fork.max_steps = max_steps
            after = fork.execute(wid)
        except GorchError as e:
            report.results.append(TrialResult(wid, "failed", was, "", f"{type(e).__name__}: {e}"))
            continue
        now = _where(after.status, after.threads)
        if after.status is WorkflowStatus.FAILED and before.status is not WorkflowStatus.FAILED:
            errors = "; ".join(f"{t.id}: {t.error}" for t in after.threads if t.error)
            spun = fork.sandbox is not None and len(fork.sandbox.skipped) >= max_steps // 2
            kind = "inconclusive" if spun and "RunawayLoop" in errors else "failed"
            report.results.append(TrialResult(wid, kind, was, now, errors or "failed"))
        elif before.status is WorkflowStatus.WAITING and (
            after.status is not WorkflowStatus.WAITING
            or _positions(after.threads) != _positions(before.threads)
        ):
            report.results.append(
                TrialResult(wid, "moved", was, now, "it moved though no event arrived")
            )
        else:
            report.results.append(TrialResult(wid, "ok", was, now, f"ends {now}"))
    return report


__all__ = ["TrialReport", "TrialResult", "trial_run"]
