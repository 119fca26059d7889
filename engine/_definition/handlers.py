"""Wait conditions: the ``Handler`` and ``CallbackManager`` protocols and the built-in handlers."""

from __future__ import annotations

import builtins
import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol, cast, runtime_checkable

from pydantic import BaseModel, ConfigDict, ValidationError

from engine._jsonsafe import storable_text
from engine.errors import DefinitionError, InvalidInput

if TYPE_CHECKING:
    from engine._records import WaitInfo


class HandlerType(StrEnum):
    """The ``type`` of the built-in handlers: the key of their ``CallbackManager`` in
    ``Engine(managers=...)``, stored with each wait. A handler of your own may use any other
    string."""

    USER_ACTION = "user_action"  # WaitForUserAction
    EVENT = "event"  # Event
    TIMEOUT = "timeout"  # Timeout


@runtime_checkable
class Handler(Protocol):
    """One instance of a wait condition, used in ``On(event, handler)``.

    ``type`` picks the ``CallbackManager`` that sets the wait up and tears it down;
    ``handle(input)`` runs when the callback arrives and returns the callback's output.
    A handler may also define ``due(now) -> datetime | None`` to arm a durable timer, and
    ``describe() -> dict`` to give its manager (and the UI) JSON data about the wait.
    """

    @property
    def type(self) -> str: ...

    def handle(self, input: Any) -> Any: ...


class CallbackManager(Protocol):
    """Sets waits up and tears them down on an outside system (Slack, email, a task queue).

    ``setup`` runs when a thread starts waiting, ``teardown`` when the wait ends (``handled``
    tells whether this wait's event won). Both run outside any database transaction; if they
    raise, the failure is recorded on the wait and retried by ``Engine.run_due``. They never
    lose the workflow, so they should be idempotent.

    What ``setup`` returns (plain JSON data: a Slack message id, a timer id; None for
    nothing) is stored with the wait in the same write that marks it set up, as
    ``wait.setup_data``: ``teardown`` gets it on its wait, and the handler through
    ``current_wait()``, so a manager can undo what it created without storage of its own.
    Data that is not plain JSON, or is over ``Engine(max_input_bytes=...)``, fails the
    set-up (``SetupDataError`` on the wait), which is then retried.
    """

    def setup(self, wait: WaitInfo) -> Any: ...

    def teardown(self, wait: WaitInfo, handled: bool) -> None: ...


class UserAction(BaseModel):
    """Input of ``WaitForUserAction``.

    ``{"approved": true}`` or ``{"approved": false, "reason": "..."}``.
    """

    model_config = ConfigDict(extra="forbid")
    approved: bool
    reason: str = ""


@functools.lru_cache(maxsize=256)
def input_schema(model: builtins.type[BaseModel]) -> dict[str, Any]:
    """The JSON schema of ``model``, computed once per class."""
    return model.model_json_schema()


def _validate(model: type[BaseModel], input: Any) -> BaseModel:
    try:
        if isinstance(input, model):
            return input
        if isinstance(input, (str, bytes)):
            return model.model_validate_json(input)
        return model.model_validate(input)
    except ValidationError as e:
        raise InvalidInput(
            f"invalid input for {model.__name__}: {e.error_count()} error(s): "
            + "; ".join(
                f"{'.'.join(map(str, err['loc'])) or 'input'}: {err['msg']}" for err in e.errors()
            ),
            errors=e.errors(include_url=False, include_input=False),
        ) from None


def assignee_names(assignees: Any, what: str) -> tuple[str, ...]:
    """``assignees`` as a tuple of non-empty names; ``DefinitionError`` for anything else."""
    if isinstance(assignees, str):
        assignees = (assignees,)
    try:
        names = tuple(assignees)
    except TypeError:
        raise DefinitionError(
            f"{what}(assignees=...) needs a list of names, not {assignees!r}"
        ) from None
    bad = [a for a in names if not isinstance(a, str) or not a.strip() or not storable_text(a)]
    if bad:
        raise DefinitionError(
            f"{what}(assignees=...) takes non-empty names (people, or 'role:NAME'), not {bad!r}"
        )
    return names


@dataclass(frozen=True, slots=True)
class WaitForUserAction:
    """Wait for a person to approve or deny.

    Args:
        approve: called on ``{"approved": true}`` (a ``"reason"`` given with it is kept as a
            comment in the history).
        deny: called with the reason on ``{"approved": false, "reason": "..."}``.
        assignees: who may decide: people, and ``"role:NAME"`` for everyone with a role
            (empty: anyone). Built with the definition, so it can come from the state
            (``assignees=self.approvers``). The engine refuses a callback from anyone else,
            and from anyone the workflow's ``excluded_actors()`` names (``NotPermitted``).
    """

    approve: Callable[[], Any]
    deny: Callable[[str], Any]
    type: str = field(default=HandlerType.USER_ACTION, init=False)
    assignees: tuple[str, ...] = ()

    def __init__(
        self,
        approve: Callable[[], Any],
        deny: Callable[[str], Any],
        *,
        assignees: Iterable[str] = (),
    ) -> None:
        object.__setattr__(self, "approve", approve)
        object.__setattr__(self, "deny", deny)
        object.__setattr__(self, "type", HandlerType.USER_ACTION)
        object.__setattr__(self, "assignees", assignee_names(assignees, "WaitForUserAction"))

    def handle(self, input: Any) -> Any:
        action = cast(UserAction, _validate(UserAction, input))
        if action.approved:
            return self.approve()
        return self.deny(action.reason)

    def describe(self) -> dict[str, Any]:
        return {"input": input_schema(UserAction)}


@dataclass(frozen=True, slots=True)
class Event:
    """Wait for a typed event: the input is validated against ``model`` before ``handle`` runs.

    Args:
        model: the pydantic model of the event's input.
        handle: called with the validated model instance; its return value is the output.
        assignees: who may send it, as for ``WaitForUserAction`` (empty: anyone).
    """

    model: builtins.type[BaseModel]
    handle_fn: Callable[[Any], Any] | None = None
    type: str = field(default=HandlerType.EVENT, init=False)
    assignees: tuple[str, ...] = ()

    def __init__(
        self,
        model: builtins.type[BaseModel],
        handle: Callable[[Any], Any] | None = None,
        *,
        assignees: Iterable[str] = (),
    ) -> None:
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise DefinitionError(f"Event(model=...) needs a pydantic model class, not {model!r}")
        object.__setattr__(self, "model", model)
        object.__setattr__(self, "handle_fn", handle)
        object.__setattr__(self, "type", HandlerType.EVENT)
        object.__setattr__(self, "assignees", assignee_names(assignees, "Event"))

    def handle(self, input: Any) -> Any:
        value = _validate(self.model, input)
        return self.handle_fn(value) if self.handle_fn is not None else None

    def describe(self) -> dict[str, Any]:
        return {"model": self.model.__name__, "input": input_schema(self.model)}


@dataclass(frozen=True, slots=True)
class Timeout:
    """A durable timer: the case fires once ``after`` has passed since the wait began.

    It is fired by ``Engine.run_due()`` (the worker calls it for you), so it survives restarts.
    """

    after: timedelta
    handle_fn: Callable[[], Any] | None = None
    type: str = field(default=HandlerType.TIMEOUT, init=False)

    def __init__(self, after: timedelta, handle: Callable[[], Any] | None = None) -> None:
        if not isinstance(after, timedelta) or after < timedelta(0):
            raise DefinitionError(
                f"Timeout(after=...) needs a non-negative timedelta, not {after!r}"
            )
        object.__setattr__(self, "after", after)
        object.__setattr__(self, "handle_fn", handle)
        object.__setattr__(self, "type", HandlerType.TIMEOUT)

    def handle(self, input: Any) -> Any:
        return self.handle_fn() if self.handle_fn is not None else None

    def due(self, now: datetime) -> datetime:
        return now + self.after

    def describe(self) -> dict[str, Any]:
        return {"after_seconds": self.after.total_seconds()}
