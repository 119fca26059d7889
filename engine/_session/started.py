"""The program cache: what a workflow's last session (or ``new_workflow``) made of its state,
kept for the next session of that workflow in this engine to take over."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, NamedTuple

from engine._state import state_data

if TYPE_CHECKING:
    from engine._definition.compiler import Program
    from engine._definition.workflow import Workflow
    from engine._records import WorkflowRecord


class Started(NamedTuple):
    """What ``new_workflow`` made of a new workflow before storing it: the model validated
    from the state as stored (as a session loads it), the program built from that model, the
    fields the build read, and the stored state. Or what a session left: its model, whose
    state it wrote last (as stored at ``version``), and the program built from it."""

    model: Workflow
    program: Program
    reads: frozenset[str]
    state: dict[str, Any]
    version: int | None = None  # the stored version it is of; None: new_workflow's (pc 0)

    def fits(self, record: WorkflowRecord) -> bool:
        """Whether this is of ``record`` as stored: nothing wrote to it since, and the model
        (which callers may have been handed) still holds the state as stored."""
        if record.state != self.state:
            return False
        if self.version is None:
            return record.pc == 0
        return record.version == self.version and state_data(self.model) == self.state


class StartedWorkflows:
    """``Started`` by workflow id, until the workflow's next session takes it over.

    ``new_workflow`` loads the model and builds the definition to check them before anything
    is stored; the first session, on the same state, uses them instead of doing both again.
    A session that ends cleanly leaves its model and program the same way, so the next one
    (a callback's, say) neither validates the stored state nor builds the definition again,
    if nothing wrote to the workflow meanwhile (``Started.fits``).
    Bounded (the last ``size``): an entry of a workflow that another process runs is pushed
    out by later ones, so a process that only starts workflows keeps little.
    """

    def __init__(self, size: int = 32) -> None:
        self._size = size
        self._started: dict[str, Started] = {}
        self._lock = threading.Lock()

    def put(self, workflow_id: str, started: Started) -> None:
        with self._lock:
            self._started.pop(workflow_id, None)  # the newest last
            self._started[workflow_id] = started
            if len(self._started) > self._size:
                del self._started[next(iter(self._started))]

    def take(self, workflow_id: str) -> Started | None:
        with self._lock:
            return self._started.pop(workflow_id, None)

    def take_for(self, record: WorkflowRecord) -> Started | None:
        """The entry of ``record``'s workflow if it ``fits`` the record as stored (an entry
        that does not is dropped)."""
        started = self.take(record.id)
        return started if started is not None and started.fits(record) else None
