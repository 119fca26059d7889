"""Workflows that ``new_workflow`` has just started, kept for their first session."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from engine._definition.compiler import Program
    from engine._definition.workflow import Workflow


class Started(NamedTuple):
    """What ``new_workflow`` made of a new workflow before storing it: the model validated
    from the state as stored (as a session loads it), the program built from that model, the
    fields the build read, and the stored state."""

    model: Workflow
    program: Program
    reads: frozenset[str]
    state: dict[str, Any]


class StartedWorkflows:
    """``Started`` by workflow id, until the workflow's first session takes it over.

    ``new_workflow`` loads the model and builds the definition to check them before anything
    is stored; the first session, on the same state, uses them instead of doing both again.
    Bounded (the last ``size``): an entry of a workflow that another process runs is pushed
    out by later ones, so a process that only starts workflows keeps little.
    """

    def __init__(self, size: int = 32) -> None:
        self._size = size
        self._started: dict[str, Started] = {}
        self._lock = threading.Lock()

    def put(self, workflow_id: str, started: Started) -> None:
        with self._lock:
            self._started[workflow_id] = started
            if len(self._started) > self._size:
                del self._started[next(iter(self._started))]

    def take(self, workflow_id: str) -> Started | None:
        with self._lock:
            return self._started.pop(workflow_id, None)
