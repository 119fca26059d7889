"""Resumers: who calls ``Engine.execute`` when a workflow has work to do.

The store always records when a workflow is due (``next_run_at``) and when its timers fire,
so polling ``Engine.run_due()`` (the ``gorch worker``, a cron job, a notebook cell) never
loses work. A resumer only makes it *prompt*: it is told each time something becomes due.

Write your own for your scheduler (a task queue, say) by implementing ``Resumer.schedule``;
it must tolerate duplicates and lateness, because the engine's lease and program counter
decide what actually runs. ``engine.resumers.celery`` holds one for Celery.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from engine.errors import GorchError

if TYPE_CHECKING:
    from engine._engine import Engine

log = logging.getLogger("gorch")


class Resumer(Protocol):
    """Schedules ``engine.execute(workflow_id)`` at ``at`` (None: now)."""

    def schedule(self, engine: Engine, workflow_id: str, *, at: datetime | None = None) -> None: ...


class InlineResumer:
    """Executes due work at once, in the calling process (the default; notebooks, tests).

    Work due later (a step's retry back-off, a timer) waits for ``Engine.run_due()``. Errors
    while executing are logged and left on the workflow for operators, not raised to the
    caller whose action (a callback, say) has already been recorded.
    """

    def schedule(self, engine: Engine, workflow_id: str, *, at: datetime | None = None) -> None:
        if at is not None and at > engine.clock.now():
            return
        try:  # ``execute``, without a WorkflowInfo nobody reads (see ``Engine._advance``)
            engine._execute_unreported(workflow_id)
        except GorchError as e:
            log.warning("workflow %s: %s: %s", workflow_id, type(e).__name__, e)


class PollingResumer:
    """Does nothing now: work runs when someone calls ``execute``, ``step`` or ``run_due``.

    Use it to step workflows by hand (notebooks, the UI's step button) and in ``gorch worker``,
    which polls the store.
    """

    def schedule(self, engine: Engine, workflow_id: str, *, at: datetime | None = None) -> None:
        return None
