"""The worker: polls the store for due timers and workflows and runs them, until told to stop.

Run many workers against one database, on one machine or many: leases decide who runs what,
and an expired lease (a crashed worker) makes the workflow due again for the others.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING

from engine.errors import GorchError, LeaseLost

if TYPE_CHECKING:  # the worker drives an Engine it is given; it never builds one
    from engine._engine import Engine

log = logging.getLogger("gorch.worker")


class Worker:
    """Runs ``engine.run_due`` in a loop, renewing the leases of what it runs.

    Args:
        engine: an engine whose resumer should be ``PollingResumer`` (the worker is the resumer).
        poll: seconds to sleep when nothing was due.
        batch: at most this many timers and workflows per poll.
    """

    def __init__(self, engine: Engine, *, poll: float = 0.5, batch: int = 20) -> None:
        self.engine = engine
        self.poll = poll
        self.batch = batch
        self._stop = threading.Event()

    def stop(self, *_: object) -> None:
        """Ask the worker to stop: it finishes the current step, releases, and returns."""
        self._stop.set()
        self.engine.draining = True

    def install_signal_handlers(self) -> None:
        """Stop cleanly on SIGTERM and SIGINT (call from the main thread)."""

        def handler(signum: int, frame: FrameType | None) -> None:
            log.info("signal %s: finishing the current step, then stopping", signum)
            self.stop()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def run(self, *, once: bool = False) -> int:
        """Poll until stopped (or one pass with ``once``); return how many items were handled."""
        handled = 0
        try:
            with renewing_leases(self.engine):
                while not self._stop.is_set():
                    try:
                        n = self.engine.run_due(self.batch, stop=self._stop.is_set)
                    except GorchError as e:  # e.g. the database is down: wait and try again
                        log.error("poll failed: %s", e)
                        n = 0
                    handled += n
                    if once:
                        break
                    if n == 0:
                        self._stop.wait(self.poll)
        finally:
            self._stop.set()
        return handled


@contextmanager
def renewing_leases(engine: Engine) -> Iterator[None]:
    """Renew the lease of every workflow ``engine`` runs, a few times per lease, meanwhile."""
    stop = threading.Event()

    def heartbeat() -> None:
        interval = max(engine.lease.total_seconds() / 3, 0.05)
        while not stop.wait(interval):
            for owner, workflow_id in list(engine.active.items()):
                try:
                    now = engine.clock.now()  # with ``now``: as long on the database's clock
                    engine.store.renew(workflow_id, owner, until=now + engine.lease, now=now)
                except LeaseLost as e:
                    # Given back by its session, which ended since the snapshot: all is well.
                    # Held by another process: the session will fail at its next checkpoint.
                    taken = e.owner is not None and engine.active.get(owner) == workflow_id
                    log.log(logging.WARNING if taken else logging.DEBUG,
                            "lease of %s: %s", workflow_id, e)  # fmt: skip
                except GorchError as e:
                    log.warning("lease of %s: %s", workflow_id, e)

    thread = threading.Thread(target=heartbeat, name="gorch-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def run_worker(engine: Engine, *, poll: float = 0.5, batch: int = 20, once: bool = False) -> int:
    """Run a worker in this process with signal handling; return how many items it handled."""
    worker = Worker(engine, poll=poll, batch=batch)
    if threading.current_thread() is threading.main_thread():
        worker.install_signal_handlers()
    started = time.monotonic()
    n = worker.run(once=once)
    log.info("worker stopped after %.1fs, %d items handled", time.monotonic() - started, n)
    return n
