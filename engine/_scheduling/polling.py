"""Polling for due work: timers, set-up/tear-down retries and due workflows.

``Engine.run_due`` is this module's ``Poller.run_due``; the worker, ``gorch run-due`` and a
task queue's sweep all come here. A workflow that cannot run as stored is quarantined for a
while, so one broken workflow cannot take a poller's whole attention.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING

from engine._jsonsafe import describe_error
from engine._records import HistoryEntry, HistoryKind, WorkflowRecord
from engine._session.runner import release_lease
from engine.errors import (
    CallbackRejected,
    DefinitionError,
    DefinitionMismatch,
    GorchError,
    StateError,
    UnknownWorkflowType,
    WorkflowBusy,
)

if TYPE_CHECKING:
    from engine._engine import Engine

log = logging.getLogger("gorch")

CLAIM_BATCH = 8
"""How many due workflows a poller leases at once (``claim_due``): enough to spare most of
the claims' round trips, few enough that a busy worker holds little that another could run."""

BLOCKING = (DefinitionMismatch, DefinitionError, StateError, UnknownWorkflowType)
"""Errors that mean a workflow cannot run as stored until code or an operator changes."""


class Poller:
    """Runs what is due for one engine, remembering which workflows to leave alone a while."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.quarantine: dict[str, datetime] = {}

    def run_due(self, limit: int | None, *, stop: Callable[[], bool]) -> int:
        """See ``Engine.run_due``."""
        engine, done = self.engine, 0
        for w in engine.store.due_waits(engine.clock.now(), limit):
            if stop():
                return done
            if not self.quarantined(w.workflow_id) and self._try(
                w.workflow_id, partial(engine._serve_wait, w)
            ):
                done += 1
        claim = getattr(engine.store, "claim_due", None)
        if claim is not None:
            return done + self._run_claimed(claim, limit, stop=stop)
        due = engine.store.due_workflows(engine.clock.now(), limit)
        random.shuffle(due)  # workers polling together then rarely reach for the same one
        for wid in due:
            if stop():
                return done
            # Only while it is still due: another poller may have run it since the query.
            run = partial(engine._advance, wid, engine.max_steps, runaway=True, due=True,
                          report=False)  # fmt: skip
            if not self.quarantined(wid) and self._try(wid, run):
                done += 1
        return done

    def _run_claimed(
        self,
        claim: Callable[..., list[WorkflowRecord]],
        limit: int | None,
        *,
        stop: Callable[[], bool],
    ) -> int:
        """Run due workflows, claimed ``CLAIM_BATCH`` at a time (``ClaimingStore.claim_due``):
        one write leases a batch, so pollers never race for the same workflow, and each
        claimed one runs in a session that starts with its lease held.

        Each workflow runs at most once per call, as with a list of due ids: one that is
        quarantined, or due again after it ran, stays claimed (so later claims pass over it)
        until the call ends, then goes back, due, for whoever polls next.
        """
        engine, done, left = self.engine, 0, limit
        seen: set[str] = set()
        kept: list[tuple[str, str]] = []  # (owner, id): claimed, not run, released at the end
        try:
            while left is None or left > 0:
                size = CLAIM_BATCH if left is None else min(CLAIM_BATCH, left)
                now = engine.clock.now()
                prefix = f"{engine.owner}-{next(engine._sessions)}:"
                batch = claim(now, prefix, until=now + engine.lease, limit=size)
                for rec in batch:  # renewed by the worker's heartbeat while they wait
                    engine.active[prefix + rec.id] = rec.id
                try:
                    for rec in batch:
                        owner = prefix + rec.id
                        if stop():
                            return done
                        if rec.id in seen or self.quarantined(rec.id):
                            kept.append((owner, rec.id))
                            continue
                        seen.add(rec.id)
                        run = partial(engine._advance, rec.id, engine.max_steps, runaway=True,
                                      claimed=(owner, rec), report=False)  # fmt: skip
                        if left is not None:
                            left -= 1
                        if self._try(rec.id, run):
                            done += 1
                finally:  # what stop() left unrun goes back, due, for another poller
                    for rec in batch:
                        owner = prefix + rec.id
                        if (owner, rec.id) not in kept and engine.active.pop(
                            owner, None
                        ) is not None:
                            release_lease(engine.store, rec.id, owner)
                if len(batch) < size:
                    break
        finally:
            for owner, wid in kept:
                engine.active.pop(owner, None)
                release_lease(engine.store, wid, owner)
        return done

    def _try(self, workflow_id: str, work: Callable[[], object]) -> bool:
        try:
            work()
            return True
        except WorkflowBusy:
            return False  # someone else's work right now
        except CallbackRejected as e:
            # A due timer is "taken" when another process handled its wait (or another
            # case of it) first, between reading the due timers and firing this one.
            if not e.taken:
                self.skip(workflow_id, e)
            else:  # a timer another process fired first: the race went as it should
                log.debug("workflow %s: %s", workflow_id, e)
        except GorchError as e:
            self.skip(workflow_id, e)
        except Exception as e:  # a bug in user code must not stop the poller
            log.exception("workflow %s", workflow_id)
            self.skip(workflow_id, StateError(describe_error(e)))
        return False

    def quarantined(self, workflow_id: str) -> bool:
        """True while the workflow is being left alone."""
        until = self.quarantine.get(workflow_id)
        if until is None:
            return False
        if until <= self.engine.clock.now():
            del self.quarantine[workflow_id]
            return False
        return True

    def skip(self, workflow_id: str, e: GorchError) -> None:
        """Log ``e``; if it blocks the workflow, quarantine it and say why in its history."""
        log.warning("workflow %s: %s: %s", workflow_id, type(e).__name__, e)
        if isinstance(e, BLOCKING):
            self.quarantine[workflow_id] = self.engine.clock.now() + self.engine.quarantine
            self.note_blocked(workflow_id, e)

    def note_blocked(self, workflow_id: str, e: GorchError) -> None:
        """Put why the workflow cannot run into its history, once per distinct reason, so
        operators see it (its threads and state stay as stored)."""
        store, error = self.engine.store, f"{type(e).__name__}: {e.message}"
        # Like every write to a workflow, under its lease: taken briefly, under a name that
        # no session of this engine uses (a workflow being run meanwhile is not blocked).
        owner, now = f"{self.engine.owner}-poller", self.engine.clock.now()
        held = False
        try:
            last = store.history(workflow_id)[-1:]
            if (
                last
                and last[0].kind == HistoryKind.BLOCKED
                and last[0].detail.get("error") == error
            ):
                return
            store.acquire(workflow_id, owner, now=now, until=now + self.engine.lease)
            held = True
            store.append_history(
                [HistoryEntry(workflow_id, now, HistoryKind.BLOCKED, e.thread, e.statement,
                              detail={"error": error})],
                owner=owner,
            )  # fmt: skip
        except WorkflowBusy:
            pass  # someone is running it right now: it may not be blocked any more
        except GorchError as store_error:
            log.warning("workflow %s: cannot record why it is blocked: %s", workflow_id,
                        store_error)  # fmt: skip
        finally:
            if held:
                release_lease(store, workflow_id, owner)
