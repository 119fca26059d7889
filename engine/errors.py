"""The exception hierarchy: every error gorch raises is a ``GorchError``.

::

    GorchError
    ├── DefinitionError       malformed definition (duplicate names, Break outside a loop, ...)
    ├── DefinitionMismatch    a stored position (statement, case, goroutine) is gone from the code
    ├── UnknownWorkflowType   a stored or requested type is not registered with the Engine
    ├── WorkflowNotFound      no workflow with that id
    ├── WorkflowExists        the id is taken by a workflow of another type
    ├── CallbackRejected      a callback that cannot be applied; nothing changed
    │   ├── InvalidInput      the callback input failed validation
    │   ├── NotPermitted      the actor may not decide the wait (assignees, separation of duties)
    │   └── InvalidOutput     the handler's output cannot be stored (NaN, NUL, not JSON, too big)
    ├── InvalidOperation      an operator action that does not apply (goto a non-statement, ...)
    ├── StateError            stored state no longer validates against the workflow model,
    │                         or a state that could not be stored or would not load back as it is
    ├── SetupDataError        a manager's setup() returned data that cannot be stored
    ├── InvalidResult         a Return value no store can hold: the thread fails at the Return
    ├── LeaseLost             another process took the workflow over; nothing was written
    │   └── WorkflowBusy      another process holds the workflow's lease right now
    │       └── WorkflowNotDue  a poller reached for a workflow another process ran first
    ├── RunawayLoop           a thread looped past the engine's limit without blocking
    ├── StepTimeout           a step did not return within its timeout (it was abandoned)
    └── StoreError            the database failed in a way gorch could not recover from

Every error carries structured fields (``workflow_id``, ``thread``, ``statement`` and more)
so that callers can react without parsing messages.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Any


class GorchError(Exception):
    """Base of every error raised by gorch.

    Attributes:
        message: the human-readable explanation.
        workflow_id: the workflow concerned, when there is one.
        thread: the thread concerned, when there is one.
        statement: the statement name concerned, when there is one.
    """

    def __init__(
        self,
        message: str,
        *,
        workflow_id: str | None = None,
        thread: str | None = None,
        statement: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.workflow_id = workflow_id
        self.thread = thread
        self.statement = statement

    def fields(self) -> dict[str, Any]:
        """The structured fields of this error, for logs and the UI."""
        return {k: v for k, v in vars(self).items() if v is not None and k != "message"}


class DefinitionError(GorchError):
    """A definition is structurally wrong; ``problems`` lists every problem found."""

    def __init__(
        self,
        message: str,
        *,
        problems: Sequence[str] = (),
        workflow_id: str | None = None,
        statement: str | None = None,
    ) -> None:
        self.problems = list(problems) or [message]
        super().__init__(message, workflow_id=workflow_id, statement=statement)


class MismatchKind(StrEnum):
    """What a ``DefinitionMismatch`` found missing from the code."""

    STATEMENT = "statement"  # the statement a thread stands on
    GOROUTINE = "goroutine"  # the Go whose body a thread runs
    CASE = "case"  # a wait's event
    THREAD = "thread"  # the name now belongs to another thread's code


class DefinitionMismatch(GorchError):
    """A thread's stored position no longer exists in the current definition.

    The workflow is left unchanged; an operator can ``goto`` the thread to another statement.
    ``kind`` (a ``MismatchKind``) says what is missing: ``statement``, ``goroutine``, ``case``
    (a wait's event) or ``thread`` (the name now belongs to another thread's code).
    """

    kind: str = MismatchKind.STATEMENT


class UnknownWorkflowType(GorchError):
    """A workflow type name that no registered workflow class carries."""

    def __init__(self, type_name: str, *, workflow_id: str | None = None) -> None:
        self.type_name = type_name
        super().__init__(
            f"unknown workflow type {type_name!r}: register its class with Engine(workflows=[...])",
            workflow_id=workflow_id,
        )


class WorkflowNotFound(GorchError):
    """No workflow has this id."""

    def __init__(self, workflow_id: str) -> None:
        super().__init__(f"workflow {workflow_id!r} not found", workflow_id=workflow_id)


class WorkflowExists(GorchError):
    """The id is already used by a workflow of another type."""


class RejectReason(StrEnum):
    """Why a callback was rejected (``CallbackRejected.reason``)."""

    FINISHED = "finished"  # the workflow is finished or cancelled
    NO_WAIT = "no_wait"  # no open wait for the event (in that thread)
    AMBIGUOUS = "ambiguous"  # several threads wait for the event: name one
    STALE_PC = "stale_pc"  # the callback quotes a pc the wait no longer has
    HANDLER_ERROR = "handler_error"  # the handler raised
    INVALID_INPUT = "invalid_input"  # the input failed validation (``InvalidInput``)
    INVALID_OUTPUT = "invalid_output"  # the handler's output cannot be stored (``InvalidOutput``)
    NOT_ASSIGNED = "not_assigned"  # the actor is not among the wait's assignees (``NotPermitted``)
    EXCLUDED = "excluded"  # the workflow excludes the actor (separation of duties)

    @property
    def taken(self) -> bool:
        """True if someone else got there first: the wait was handled, or the workflow ended,
        between reading it and delivering to it (a race that went as it should)."""
        return self in (RejectReason.NO_WAIT, RejectReason.STALE_PC, RejectReason.FINISHED)


class CallbackRejected(GorchError):
    """A callback that cannot be applied: nothing was changed.

    Attributes:
        event: the event the callback named.
        reason: a short machine-friendly reason, a ``RejectReason`` (``finished``, ``no_wait``,
            ``stale_pc``, ...).
    """

    def __init__(
        self,
        message: str,
        *,
        reason: RejectReason | str,
        workflow_id: str | None = None,
        event: str | None = None,
        thread: str | None = None,
        statement: str | None = None,
    ) -> None:
        self.reason: RejectReason | str
        try:
            self.reason = RejectReason(reason)
        except ValueError:  # a reason of the caller's own: a handler may raise this error too
            self.reason = reason
        self.event = event
        super().__init__(message, workflow_id=workflow_id, thread=thread, statement=statement)

    @property
    def taken(self) -> bool:
        """True if someone else got there first (see ``RejectReason.taken``)."""
        return isinstance(self.reason, RejectReason) and self.reason.taken


class InvalidInput(CallbackRejected):
    """Callback input that failed validation; ``errors`` holds the validation details."""

    def __init__(
        self,
        message: str,
        *,
        errors: Sequence[Any] = (),
        workflow_id: str | None = None,
        event: str | None = None,
    ) -> None:
        self.errors = list(errors)
        super().__init__(
            message, reason=RejectReason.INVALID_INPUT, workflow_id=workflow_id, event=event
        )


class NotPermitted(CallbackRejected):
    """The actor may not decide this wait: not among its assignees (``not_assigned``), or
    excluded by the workflow (``excluded``, separation of duties). Nothing changed but the
    history, which records the refusal (``callback_refused``)."""


class InvalidOutput(CallbackRejected):
    """A handler's output that cannot be stored as JSON (NaN, NUL, an object JSON has no form
    for, over ``Engine(max_state_bytes=...)``); nothing was written."""

    def __init__(
        self,
        message: str,
        *,
        workflow_id: str | None = None,
        event: str | None = None,
        thread: str | None = None,
        statement: str | None = None,
    ) -> None:
        super().__init__(
            message,
            reason=RejectReason.INVALID_OUTPUT,
            workflow_id=workflow_id,
            event=event,
            thread=thread,
            statement=statement,
        )


class InvalidResult(GorchError):
    """A ``Return`` value that cannot be stored as JSON; the thread fails at the ``Return``,
    with this as its error, and nothing of the value is written."""


class InvalidOperation(GorchError):
    """An operator action that does not apply to the workflow as it stands."""


class StateError(GorchError):
    """Stored state that no longer validates against the workflow's model; or a state that
    cannot be stored, or would not load back equal to itself (naming the field)."""


class SetupDataError(GorchError):
    """A ``CallbackManager.setup`` returned data a store cannot keep: not plain JSON, over
    the input limit, or holding NaN or a NUL character. The set-up counts as failed: the
    error is recorded on the wait, and the set-up is retried like any other.

    Attributes:
        event: the wait's event.
    """

    def __init__(
        self,
        message: str,
        *,
        workflow_id: str | None = None,
        thread: str | None = None,
        statement: str | None = None,
        event: str | None = None,
    ) -> None:
        self.event = event
        super().__init__(message, workflow_id=workflow_id, thread=thread, statement=statement)


class LeaseLost(GorchError):
    """Another process took over the workflow; the change was not written."""

    def __init__(self, message: str, *, workflow_id: str, owner: str | None = None) -> None:
        self.owner = owner
        super().__init__(message, workflow_id=workflow_id)


class WorkflowBusy(LeaseLost):
    """Another process holds the workflow's lease right now; try again later."""


class WorkflowNotDue(WorkflowBusy):
    """A poller reached for a workflow that is no longer due: another process ran it first."""


class RunawayLoop(GorchError):
    """A thread ran past the engine's step or iteration limit without blocking."""


class StepTimeout(GorchError):
    """A step did not return within its timeout; it counts as a failed attempt.

    Python cannot stop a thread, so the step was abandoned on its helper thread and may still
    be running; the session that ran it ended without writing anything the step could change.

    Attributes:
        timeout: the timeout in seconds.
        where: ``file:line in function`` where the step was when it was abandoned.
    """

    def __init__(
        self,
        message: str,
        *,
        timeout: float,
        where: str | None = None,
        workflow_id: str | None = None,
        thread: str | None = None,
        statement: str | None = None,
    ) -> None:
        self.timeout = timeout
        self.where = where
        super().__init__(message, workflow_id=workflow_id, thread=thread, statement=statement)


class StoreError(GorchError):
    """The database failed in a way gorch could not recover from."""
