"""JSON safety: what gorch accepts as text, ids, callback input and setup data.

Everything gorch stores is JSON that every backend can hold. PostgreSQL's JSONB rejects NaN and
infinities, the NUL character and unpaired surrogates, which SQLite and the memory store would
take, so gorch rejects them on every backend, before anything is written.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic_core import PydanticSerializationError, to_json

from engine._records import WaitInfo
from engine.errors import (
    InvalidInput,
    InvalidOperation,
    SetupDataError,
    WorkflowNotFound,
)

# A JSON \u0000 escape that is not itself an escaped backslash followed by "u0000".
_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")

_REASONS = (
    ("surrogates not allowed", "it holds an unpaired surrogate, which is not valid Unicode"),
    ("depth exceeded", "it is nested too deeply (more than about 250 levels)"),
    ("Circular reference", "it holds a circular reference"),
    ("invalid utf-8", "it holds bytes that are not valid UTF-8"),
)
"""pydantic-core's serialisation errors, and how gorch explains them."""


def storable_text(text: str) -> bool:
    """Whether every store can hold ``text``: no NUL character, no unpaired surrogate.

    A search for text that is not storable can match nothing, on any store.
    """
    if "\x00" in text:
        return False
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def printable(text: str) -> str:
    """``text`` with what a store cannot hold (NUL, unpaired surrogates) written as escapes.

    For descriptions gorch writes itself (a step's error, a traceback), never for data.
    """
    if storable_text(text):
        return text
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")


def valid_id(workflow_id: Any) -> bool:
    """Whether ``workflow_id`` can name a workflow: 1 to 200 characters every store can hold."""
    if not isinstance(workflow_id, str) or not 0 < len(workflow_id) <= 200:
        return False
    return storable_text(workflow_id)


def known_id(workflow_id: Any) -> str:
    """``workflow_id``, if it could name a workflow at all; else ``WorkflowNotFound`` at once
    (rather than a database error about characters it cannot hold)."""
    if not valid_id(workflow_id):
        shown = workflow_id if isinstance(workflow_id, str) else repr(workflow_id)
        raise WorkflowNotFound(shown if len(shown) <= 200 else shown[:200] + "...")
    return str(workflow_id)


def check_text(**fields: str | None) -> None:
    """Raise ``InvalidOperation`` naming each field (an actor, a reason) a store cannot hold."""
    bad = [k for k, v in fields.items() if v is not None and not storable_text(str(v))]
    if bad:
        raise InvalidOperation(
            f"{' and '.join(bad)} must be text without NUL characters or unpaired surrogates"
        )


def _no_constant(name: str) -> Any:
    raise ValueError(f"it holds {name}, which is not JSON")


def storable_json(value: Any, *, strict: bool = False) -> bytes:
    """``value`` as compact UTF-8 JSON that every store can hold.

    Objects JSON has no form for are written as their ``repr``; with ``strict``, refused.

    Raises:
        ValueError: saying why not (NaN or an infinity, the NUL character, an unpaired
            surrogate, invalid UTF-8 bytes, a circular reference, nesting too deep).
    """
    try:
        raw = to_json(value, fallback=None if strict else repr)
    except PydanticSerializationError as e:
        msg = str(e).removeprefix("Error serializing to JSON: ")
        for known, why in _REASONS:
            if known in msg:
                msg = why
                break
        raise ValueError(msg) from None
    if b"NaN" in raw or b"Infinity" in raw:  # rare: only then parse, to tell tokens from text
        json.loads(raw, parse_constant=_no_constant)
    if b"\\u0000" in raw and _NUL.search(raw):
        raise ValueError("it holds the NUL character (\\x00), which PostgreSQL cannot store")
    return raw


def check_value(value: Any, limit: int | None) -> None:
    """Refuse a handler's output or a ``Return`` value that could not be stored exactly as
    the JSON form of ``value``, or is over ``limit`` bytes as JSON.

    Raises:
        ValueError: saying why (not JSON-able, NaN or an infinity, the NUL character, an
            unpaired surrogate, nested too deeply, too large).
    """
    try:
        size = len(storable_json(value, strict=True))
    except RecursionError:
        raise ValueError("it is nested too deeply") from None
    if limit is not None and size > limit:
        raise ValueError(
            f"it is {size} bytes as JSON, over the limit of {limit} (Engine(max_state_bytes=...))"
        )


def check_input(
    input: Any, limit: int | None, workflow_id: str, event: str, actor: str | None = None
) -> None:
    """Reject callback input (and an actor) that could not be stored, or input over ``limit``
    bytes as JSON.

    Raises:
        InvalidInput: saying why; nothing has run.
    """
    if actor is not None and not storable_text(str(actor)):
        raise InvalidInput(
            "the actor must be text without NUL characters or unpaired surrogates",
            workflow_id=workflow_id,
            event=event,
        )
    try:
        size = len(storable_json(input))
    except (ValueError, RecursionError) as e:
        why = "it is nested too deeply" if isinstance(e, RecursionError) else str(e)
        raise InvalidInput(
            f"callback input cannot be stored as JSON: {why}", workflow_id=workflow_id, event=event
        ) from None
    if limit is not None and size > limit:
        raise InvalidInput(
            f"callback input of {size} bytes is over the limit of {limit} "
            "(Engine(max_input_bytes=...)); store large data elsewhere and send a reference",
            workflow_id=workflow_id,
            event=event,
        )


def setup_json(value: Any, limit: int | None, wait: WaitInfo) -> Any:
    """What a manager's ``setup(wait)`` returned, as the store will keep it: a fresh copy.

    It must be plain JSON data that comes back from every store as it was (dicts with string
    keys, lists, strings, finite numbers, booleans, None), of at most ``limit`` bytes.

    Raises:
        SetupDataError: saying why not (a tuple, a datetime or any other object JSON would
            turn into something else; NaN, the NUL character; too large).
    """

    def refuse(why: str) -> SetupDataError:
        return SetupDataError(
            f"setup of wait {wait.wait!r} (event {wait.event!r}) returned data that cannot "
            f"be stored: {why}",
            workflow_id=wait.workflow_id,
            thread=wait.thread_id,
            statement=wait.wait,
            event=wait.event,
        )

    try:
        raw = storable_json(value)
    except (ValueError, RecursionError) as e:
        why = "it is nested too deeply" if isinstance(e, RecursionError) else str(e)
        raise refuse(why) from None
    if limit is not None and len(raw) > limit:
        raise refuse(
            f"{len(raw)} bytes as JSON, over the limit of {limit} (Engine(max_input_bytes=...)); "
            "keep an id or a reference"
        )
    back = json.loads(raw)
    if back != value:
        raise refuse(
            f"{type(value).__name__} {printable(repr(value))[:80]} is not plain JSON data "
            "(dicts with string keys, lists, strings, numbers, booleans, None): it would come "
            f"back as {printable(repr(back))[:80]}"
        )
    return back


def describe_error(e: BaseException) -> str:
    """``Type: message`` for a user exception, as stored on threads and in history (with NUL
    and unpaired surrogates, which a store cannot hold, written as escapes)."""
    try:
        text = f"{type(e).__name__}: {e}"
    except Exception:  # an exception whose __str__ raises
        text = f"{type(e).__name__}: <str() failed>"
    return printable(text)
