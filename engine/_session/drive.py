"""The execution loop of one session: run a workflow's threads in turn until each blocks.

``Engine.execute``/``step`` open a session and call ``drive``; so does a callback delivered
with the inline resumer, which goes on in the session that applied it instead of opening a
new one. Each step's outcome is written before the next step runs (``Session.before_step``);
the last write of the session also gives its lease up (``Session.flush(last=True)``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine._interpreter import advance
from engine._records import ThreadState, ThreadStatus, WorkflowStatus
from engine._session.runner import Session
from engine.errors import DefinitionError, DefinitionMismatch, RunawayLoop

if TYPE_CHECKING:
    from engine._engine import Engine


def drive(engine: Engine, run: Session, limit: int, *, runaway: bool) -> None:
    """Run ``run``'s threads, at most ``limit`` steps; then write what is left.

    Args:
        runaway: whether reaching ``limit`` with threads still ready fails them
            (``execute``), or just stops (``step``).

    Raises:
        DefinitionMismatch, DefinitionError: the code changed under the session; the steps
            that ran before are written first.
    """
    rec = run.record
    try:
        steps = 0
        while not (rec.status.done or rec.status is WorkflowStatus.FAILED or run.abandoned):
            if engine.draining:
                break  # shutting down: the workflow stays due for another process
            if steps >= limit:
                if runaway:
                    run.wake_waitfors()
                    ready = run.runnable()
                    if ready:
                        _runaway(engine, run, ready)
                break
            run.wake_waitfors()
            ready = run.runnable()
            if not ready or ThreadStatus.FAILED in {t.status for t in rec.threads}:
                break
            t = ready[0]
            run.take_turn(t)
            try:  # what a step did is written before the next step runs
                outcome = advance(run.program, t, max_iterations=engine.max_iterations,
                                  before_step=run.before_step,
                                  step_timeout=engine.step_timeout)  # fmt: skip
            except RunawayLoop as e:
                run.fail(t, e.statement or t.position, f"RunawayLoop: {e}")
                break
            run.apply(t, outcome)
            steps += 1
        run.flush(last=True)  # the last write of the session gives the lease up
    except (DefinitionMismatch, DefinitionError) as e:
        e.workflow_id = e.workflow_id or rec.id
        if run.dirty:  # keep the steps that ran before the code went wrong
            run.flush(last=True)
        raise


def _runaway(engine: Engine, run: Session, ready: list[ThreadState]) -> None:
    for t in ready:
        run.fail(
            t,
            t.position,
            f"RunawayLoop: {engine.max_steps} steps in one execute() "
            "without every thread blocking; raise Engine(max_steps=...) if intended",
        )
    run.checkpoint()
