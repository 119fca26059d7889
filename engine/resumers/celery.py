"""Run workflows from Celery: a ``Resumer`` that sends tasks, and the tasks it sends.

Needs the ``celery`` extra (``pip install 'gorch[celery]'``: Celery and the Redis client).
``register_tasks(app, make_engine)`` adds two tasks to your Celery app:

- ``gorch.execute(workflow_id)``: ``Engine.resume`` (due timers, then ``execute``). A duplicate
  or late message is harmless: the workflow's lease and program counter decide what runs.
- ``gorch.sweep()``: ``Engine.run_due``, the same code as ``gorch worker`` and ``gorch
  run-due``, every ``sweep_every`` (run ``celery beat``, or a worker with ``--beat``). It runs
  whatever a lost message, a broker restart or a crashed worker left behind.

``CeleryResumer(app)`` sends ``gorch.execute``: at once when a workflow has work, with
``eta`` when a step's retry or a timer falls due.

Both tasks acknowledge their message on receipt, whatever the app's ``task_acks_late``: a
worker killed mid-step loses the message, not the work, which the sweep runs once the dead
process's lease has expired (docs/operations.md, "Celery: crashes and the settings they rely
on").
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

from celery import Celery, Task

from engine._scheduling.worker import renewing_leases
from engine.errors import GorchError, WorkflowBusy

if TYPE_CHECKING:
    from engine._engine import Engine

log = logging.getLogger("gorch.celery")

EXECUTE = "gorch.execute"
SWEEP = "gorch.sweep"


class CeleryResumer:
    """Schedules ``Engine.resume(workflow_id)`` as the Celery task ``gorch.execute``.

    Sending never raises: if the broker is down, the work stays due in the store and the
    next sweep runs it.

    Args:
        app: the Celery app to send through; its workers must have run ``register_tasks``.
        horizon: work due further ahead than this is left to the sweep. Keep it under the
            broker's redelivery timeout (Redis: ``visibility_timeout``, 1 hour by default),
            which otherwise delivers a waiting ``eta`` message once more every period.
        queue: the queue to send to; None for the app's default.
    """

    def __init__(
        self,
        app: Celery,
        *,
        horizon: timedelta = timedelta(minutes=30),
        queue: str | None = None,
    ) -> None:
        self.app = app
        self.horizon = horizon
        self.queue = queue

    def schedule(self, engine: Engine, workflow_id: str, *, at: datetime | None = None) -> None:
        if at is not None and at - engine.clock.now() > self.horizon:
            return
        try:
            self.app.send_task(EXECUTE, args=(workflow_id,), eta=at, queue=self.queue)
        except Exception as e:  # the broker is unreachable: the sweep will find the work
            log.warning("workflow %s: could not send %s: %s", workflow_id, EXECUTE, e)


class GorchTasks(NamedTuple):
    """The tasks ``register_tasks`` added to a Celery app."""

    execute: Any
    sweep: Any


def register_tasks(
    app: Celery,
    make_engine: Callable[[], Engine],
    *,
    sweep_every: timedelta = timedelta(minutes=1),
    busy_retry: timedelta = timedelta(seconds=1),
    busy_retries: int = 8,
    batch: int = 100,
) -> GorchTasks:
    """Add ``gorch.execute`` and the periodic ``gorch.sweep`` to ``app``.

    Both acknowledge their message on receipt (``acks_late=False``) and renew the leases of
    what they run, so give ``make_engine``'s engine a short lease (a minute, say): a killed
    worker's workflows wait that long, plus up to ``sweep_every``, before a sweep runs them.

    Args:
        app: your Celery app.
        make_engine: builds the engine (with ``resumer=CeleryResumer(app)``); called once per
            worker process, on its first task, so no database is opened at import or fork.
        sweep_every: how often ``celery beat`` sends ``gorch.sweep``.
        busy_retry: first delay before retrying an execute whose workflow another process
            is running; it doubles on each retry, up to a minute.
        busy_retries: retries of a busy execute before it is dropped for the sweep.
        batch: timers and workflows per ``run_due`` pass of the sweep.
    """
    lock = threading.Lock()
    made: list[Engine] = []

    def engine() -> Engine:
        with lock:
            if not made:
                made.append(make_engine())
            return made[0]

    def execute(task: Task, workflow_id: str) -> None:
        eng = engine()
        try:
            with renewing_leases(eng):
                eng.resume(workflow_id)
        except WorkflowBusy as e:
            # The session holding the lease may finish without seeing our work (a timer
            # that fell due meanwhile): look again later.
            delay = min(busy_retry.total_seconds() * 2**task.request.retries, 60.0)
            if task.request.retries < busy_retries:
                raise task.retry(countdown=delay, max_retries=busy_retries, exc=e) from e
            log.info("workflow %s still busy; left to the sweep", workflow_id)
        except GorchError as e:
            log.warning("workflow %s: %s: %s", workflow_id, type(e).__name__, e)

    def sweep(task: Task) -> int:
        eng = engine()
        with renewing_leases(eng):
            total = n = eng.run_due(batch)
            while n >= batch:  # a backlog (after an outage, say): drain it now
                n = eng.run_due(batch)
                total += n
        return total

    # Early acknowledgement whatever the app's ``task_acks_late``: the store, not the message,
    # holds the work (a lost message costs nothing the sweep does not run), and a late-acked
    # task is what Celery cancels, killing its step, when the broker connection drops
    # (``worker_cancel_long_running_tasks_on_connection_loss``, the default from Celery 6).
    options: dict[str, Any] = {"bind": True, "ignore_result": True, "acks_late": False}
    tasks = GorchTasks(
        app.task(name=EXECUTE, **options)(execute),
        app.task(name=SWEEP, **options)(sweep),
    )
    app.add_periodic_task(sweep_every.total_seconds(), tasks.sweep.s(), name=SWEEP)
    return tasks


__all__ = ["CeleryResumer", "GorchTasks", "register_tasks"]
