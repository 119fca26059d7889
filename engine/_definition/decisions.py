"""What a person deciding a wait must see, and who may decide it: the data kept with the wait.

A wait a person decides is one whose handler names ``assignees`` (``WaitForUserAction``,
``Event``). The session stores, in the wait's ``data``, the workflow's ``summary()`` (the
decision's context), the assignees and the workflow's ``excluded_actors()``, when the wait is
armed and again whenever the state changes, so the inbox shows and filters them without
loading a workflow. Deciding is checked against the live definition and state, never against
this copy (``engine._session.actions.deliver``).
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic_core import to_jsonable_python

from engine._definition.workflow import Workflow
from engine._jsonsafe import check_value, describe_error, storable_text

log = logging.getLogger("gorch")


def assignees_of(handler: Any) -> tuple[str, ...] | None:
    """The handler's assignees (() for anyone), or None if no person decides its wait."""
    found = getattr(handler, "assignees", None)
    return found if isinstance(found, tuple) else None


def excluded_of(model: Workflow) -> list[str]:
    """The workflow's ``excluded_actors()`` as a list of names (it may raise)."""
    found = model.excluded_actors()
    if isinstance(found, str):
        found = (found,)
    return [str(x) for x in found if x is not None and str(x).strip()]


def storable_names(names: list[str]) -> list[str]:
    """The names a store can hold (no NUL, no lone surrogate), for the copy kept with a wait;
    the engine checks the full list, live."""
    return [n for n in names if storable_text(n)]


def context_of(model: Workflow) -> dict[str, Any]:
    """The workflow's ``summary()`` as JSON every store holds; the default summary (the
    state's plain fields, storable as the state is) if it raises, is no dict, cannot be
    stored (NaN, NUL, ...) or is over ``MAX_CONTEXT_BYTES``: a context never fails a write."""
    own = type(model).summary is not Workflow.summary
    try:
        found: Any = model.summary()
        if not isinstance(found, dict):
            found = {"summary": found}
        value = _as_json(found)
        if own:
            check_value(value, MAX_CONTEXT_BYTES)
        return value
    except Exception as e:
        log.warning("%s.summary(): %s: showing its plain fields", type(model).__name__,
                    describe_error(e))  # fmt: skip
        return _as_json(Workflow.summary(model))


MAX_CONTEXT_BYTES = 10_000
"""The largest ``summary()`` kept with a wait, as JSON (it is on every open wait's row)."""


def _as_json(found: dict[Any, Any]) -> dict[str, Any]:
    if all(type(k) is str and type(v) in _JSON for k, v in found.items()):
        return dict(found)  # the common case: nothing to convert
    value = to_jsonable_python({str(k): v for k, v in found.items()}, fallback=repr)
    return value if isinstance(value, dict) else {}


_JSON = (str, int, float, bool, type(None))
"""Values a context keeps as they are (a summary of your own is then checked as a store
would hold it: ``check_value``)."""


def workflow_side(model: Workflow) -> dict[str, Any]:
    """``{"context", "excluded"}``: what the workflow says of all its decisions."""
    try:
        excluded = excluded_of(model)
    except Exception as e:  # checked again, live, when someone decides: then it refuses
        log.warning("%s.excluded_actors() raised %r", type(model).__name__, e)
        excluded = []
    return {"context": context_of(model), "excluded": storable_names(excluded)}
