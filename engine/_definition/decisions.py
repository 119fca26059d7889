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


def context_of(model: Workflow) -> dict[str, Any]:
    """The workflow's ``summary()`` as JSON; the default summary if it raises or is no dict."""
    try:
        found: Any = model.summary()
        if not isinstance(found, dict):
            found = {"summary": found}
    except Exception as e:
        log.warning("%s.summary() raised %r: showing its plain fields", type(model).__name__, e)
        found = Workflow.summary(model)
    value = to_jsonable_python({str(k): v for k, v in found.items()}, fallback=repr)
    return value if isinstance(value, dict) else {}


def workflow_side(model: Workflow) -> dict[str, Any]:
    """``{"context", "excluded"}``: what the workflow says of all its decisions."""
    try:
        excluded = excluded_of(model)
    except Exception as e:  # checked again, live, when someone decides: then it refuses
        log.warning("%s.excluded_actors() raised %r", type(model).__name__, e)
        excluded = []
    return {"context": context_of(model), "excluded": excluded}
