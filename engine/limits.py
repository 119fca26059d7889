"""Limits on what gorch accepts: callback input and state size and form, and step timeouts.

Everything gorch stores is JSON that every backend can hold. PostgreSQL's JSONB rejects NaN and
infinities, the NUL character and unpaired surrogates, which SQLite and the memory store would
take, so gorch rejects them on every backend, before anything is written.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import sys
import sysconfig
import threading
import traceback
from collections.abc import Callable
from contextvars import copy_context
from datetime import timedelta
from decimal import Decimal
from typing import Any, TypeVar, get_args

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticSerializationError, to_json

from engine.errors import (
    DefinitionError,
    InvalidInput,
    InvalidOperation,
    SetupDataError,
    StateError,
    StepTimeout,
    WorkflowNotFound,
)
from engine.runtime import WaitInfo

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
    """Whether every store can hold ``text``: no NUL character, no unpaired surrogate."""
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


def state_data(model: BaseModel) -> dict[str, Any]:
    """The state's fields as JSON data, the one form gorch stores: keyed by field name (never
    by alias), without computed fields (derived, not state). ``validate_copy`` reads it back
    by field name, so an aliased field is never written under one key and read under another.
    """
    return model.model_dump(
        mode="json", by_alias=False, round_trip=True, exclude_computed_fields=True
    )


def state_json(model: BaseModel, workflow_id: str, limit: int | None) -> dict[str, Any]:
    """The state as JSON data every store can hold, of at most ``limit`` bytes, that loads
    back equal (``==``) to ``model``, field by field.

    ``limit=None`` skips the size check only.

    Raises:
        StateError: a field holds what JSON or a store cannot hold, a field would not come
            back as it is (naming it), or the state is too large.
    """
    try:
        state = state_data(model)
        raw = storable_json(state)
    except (PydanticSerializationError, ValueError, RecursionError) as e:
        why = "it is nested too deeply" if isinstance(e, RecursionError) else str(e)
        fields = _culprits(model)
        raise StateError(
            f"the state of workflow {workflow_id!r} cannot be stored as JSON: "
            + (f"field {' and '.join(map(repr, fields))}: " if fields else "")
            + why,
            workflow_id=workflow_id,
        ) from None
    if limit is not None and len(raw) > limit:
        raise StateError(
            f"the state of workflow {workflow_id!r} is {len(raw)} bytes as JSON, over the limit "
            f"of {limit} (Engine(max_state_bytes=...)); keep large data elsewhere and store a "
            "reference",
            workflow_id=workflow_id,
        )
    # Loaded back as the next session will load it: a value that would come back different
    # (a tuple in an Any field, a time zone offset with seconds, a serialiser that does not
    # invert its validator) is refused now, before anything is written.
    problems = _comes_back(model, raw, state)
    if not problems and b"e+" in raw:  # rare: a float of 1e16 or more (or such text)
        jsonb = _as_jsonb(raw)
        problems = [f"{p} (as PostgreSQL gives it back)" for p in _comes_back(model, jsonb, {})]
    if problems:
        raise StateError(
            f"the state of workflow {workflow_id!r} would not load back as it is: "
            + "; ".join(problems[:5])
            + (f"; and {len(problems) - 5} more" if len(problems) > 5 else ""),
            workflow_id=workflow_id,
        )
    return state


def _comes_back(model: BaseModel, raw: bytes, state: dict[str, Any]) -> list[str]:
    """How ``model`` would come back from its JSON ``raw``, where it would not be equal."""
    try:
        back = _validate(type(model), raw, state)
    except ValidationError as e:
        return [f"{_loc(x['loc'])!r}: {x['msg']}" for x in e.errors()]
    except RecursionError:
        return ["it is nested too deeply to load"]
    return differences(model, back)


def _as_jsonb(raw: bytes) -> bytes:
    """``raw`` as PostgreSQL's jsonb gives it back: it keeps numbers as ``numeric``, so a float
    written with a positive exponent (1e+16 and over) comes back as the integer it spells."""
    try:
        return json.dumps(json.loads(raw, parse_float=_jsonb_number)).encode()
    except RecursionError:
        return raw  # deeper than json goes: the first load said what it could


def _jsonb_number(text: str) -> float | int:
    return int(Decimal(text)) if "e+" in text else float(text)


def _culprits(model: BaseModel) -> list[str]:
    """The fields (and extra fields) of ``model`` that cannot be stored, found one by one
    (only once the whole state failed: it costs a dump per field)."""
    found = []
    for name in [*type(model).model_fields, *(model.__pydantic_extra__ or {})]:
        try:
            storable_json(model.model_dump(mode="json", include={name}, round_trip=True))
        except (PydanticSerializationError, ValueError, RecursionError):
            found.append(name)
    return found


def _loc(loc: tuple[int | str, ...]) -> str:
    return "".join(f"[{x}]" if isinstance(x, int) else f".{x}" for x in loc).lstrip(".")


def differences(model: BaseModel, back: BaseModel) -> list[str]:
    """Each field (or extra field) of ``model`` that ``back`` does not hold equal, as
    ``'name' holds X but would come back as Y``. Private attributes are not compared: they
    are not state."""
    found: list[str] = []
    _diff(model, back, "", found)
    return found


def _diff(a: Any, b: Any, where: str, found: list[str]) -> None:
    try:
        if a == b:
            return
    except Exception:  # a value whose == raises (a signalling Decimal NaN): a difference
        pass
    if isinstance(a, BaseModel) and type(a) is type(b):
        # pydantic's == also compares private attributes, which are not stored: by field
        dot = f"{where}." if where else ""
        for name in type(a).model_fields:
            _diff(getattr(a, name, None), getattr(b, name, None), dot + name, found)
        extra_a, extra_b = a.__pydantic_extra__ or {}, b.__pydantic_extra__ or {}
        for key in sorted(set(extra_a) | set(extra_b), key=str):
            _diff(extra_a.get(key, _LOST), extra_b.get(key, _LOST), dot + str(key), found)
        return
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return
    if isinstance(a, dict) and type(a) is type(b) and a.keys() == b.keys():
        for key in a:
            _diff(a[key], b[key], f"{where}[{key!r}]", found)
        return
    if isinstance(a, (list, tuple)) and type(a) is type(b) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _diff(x, y, f"{where}[{i}]", found)
        return
    found.append(f"{where or 'the state'!r} holds {a!r:.80} but would come back as {b!r:.80}")


class _Lost:
    def __repr__(self) -> str:
        return "nothing"


_LOST: Any = _Lost()
"""An extra field missing on one side."""


M = TypeVar("M", bound=BaseModel)


def validate_copy(cls: type[M], data: dict[str, Any]) -> M:
    """``cls`` validated from a copy of the stored JSON ``data``, sharing no object with it.

    Read by field name, as ``state_data`` writes it (aliases are not looked at); the key of a
    computed field, which earlier versions stored, is dropped.

    Raises:
        ValidationError: ``data`` does not fit ``cls``.
        RecursionError: ``data`` is nested too deeply even for Python.
    """
    data = fields_only(cls, data)
    return _validate(cls, to_json(data), data)


def fields_only(cls: type[BaseModel], data: dict[str, Any]) -> dict[str, Any]:
    """``data`` without the keys of ``cls``'s computed fields (derived, never state)."""
    computed = cls.model_computed_fields
    if computed and not computed.keys().isdisjoint(data):
        return {k: v for k, v in data.items() if k not in computed}
    return data


def validate_state(cls: type[M], data: Any) -> M:
    """``cls`` validated from Python ``data`` (a mapping keyed by field name, as stored).

    Raises:
        ValidationError: ``data`` does not fit ``cls``.
    """
    if isinstance(data, dict):
        data = fields_only(cls, data)
    return cls.model_validate(data, by_alias=False, by_name=True)


def _validate(cls: type[M], raw: bytes, data: dict[str, Any]) -> M:
    try:
        return cls.model_validate_json(raw, by_alias=False, by_name=True)
    except (ValidationError, PydanticSerializationError) as e:
        if "recursion limit" not in str(e) and "depth exceeded" not in str(e):
            raise
    # Deeper than pydantic's JSON parser goes (about 200 levels): copy, validate in Python.
    return cls.model_validate(json.loads(json.dumps(data)), by_alias=False, by_name=True)


def check_state_model(cls: type[BaseModel]) -> None:
    """Refuse a model whose fields could not all be stored, before any workflow of it is.

    A field declared with ``Field(exclude=True)`` (or ``exclude_if``) is left out of the
    stored JSON, so its value would silently come back as its default in the next session.

    Raises:
        StateError: naming each such field (of ``cls`` or of a model nested in it).
    """
    problems = _unstorable_fields(cls)
    if problems:
        raise StateError(
            f"{cls.__name__} cannot be stored: {'; '.join(problems)}; keep per-session data "
            "in a PrivateAttr instead"
        )


@functools.lru_cache(maxsize=256)
def _unstorable_fields(cls: type[BaseModel]) -> tuple[str, ...]:
    problems: list[str] = []
    seen: set[type[BaseModel]] = set()
    todo: list[tuple[str, type[BaseModel]]] = [("", cls)]
    while todo:
        where, model = todo.pop()
        if model in seen:
            continue
        seen.add(model)
        for name, info in model.model_fields.items():
            if info.exclude or getattr(info, "exclude_if", None) is not None:
                problems.append(
                    f"field {where + name!r} is excluded from model_dump, so its value would "
                    "not be stored"
                )
            todo += [(f"{where}{name}.", m) for m in _models_in(info.annotation)]
    return tuple(problems)


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation mentions (``list[Item] | None`` gives ``Item``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models_in(arg)]


@functools.lru_cache(maxsize=256)
def _declared(cls: type[BaseModel]) -> frozenset[str] | None:
    if cls.model_config.get("extra") is not None:
        return None  # extra="ignore", "allow" or "forbid" chosen on purpose: pydantic decides
    validators = cls.__pydantic_decorators__.model_validators.values()
    if any(v.info.mode in ("before", "wrap") for v in validators):
        return None  # the model migrates its raw input itself
    return frozenset(cls.model_fields) | frozenset(cls.model_computed_fields)


def undeclared_fields(cls: type[BaseModel], state: dict[str, Any]) -> list[str]:
    """Keys of a stored ``state`` that ``cls`` no longer declares (a field removed or renamed).

    pydantic would drop them silently, and the next checkpoint would lose their values. Empty
    when the model chose its ``extra`` policy itself or migrates its input in a
    ``model_validator(mode="before")`` (or ``"wrap"``).
    """
    declared = _declared(cls)
    if declared is None or declared.issuperset(state):
        return []
    return sorted(k for k in state if k not in declared)


def timeout_seconds(value: Any, where: str) -> float | None:
    """A step timeout (a ``timedelta`` or seconds) in seconds; None for none.

    Raises:
        DefinitionError: not a positive, finite duration.
    """
    if value is None:
        return None
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise DefinitionError(
            f"{where} must be a timedelta or a number of seconds, not {type(value).__name__}"
        )
    if not (seconds > 0 and math.isfinite(seconds)):
        raise DefinitionError(f"{where} must be positive and finite (None for no timeout)")
    return seconds


def call_with_timeout(call: Callable[[], Any], seconds: float, *, step: str, thread: str) -> Any:
    """Run ``call()`` on a helper thread and return its result or raise its exception.

    Raises:
        StepTimeout: it did not return within ``seconds``. The helper thread is a daemon that
            keeps running in the background: Python has no way to stop it.
    """
    ctx = copy_context()  # current_thread() and current_attempt() work inside the step
    box: list[tuple[bool, Any]] = []

    def target() -> None:
        try:
            box.append((True, ctx.run(call)))
        except BaseException as e:
            box.append((False, e))

    helper = threading.Thread(target=target, name=f"gorch-step-{step}"[:60], daemon=True)
    helper.start()
    helper.join(seconds)
    if helper.is_alive():
        where = _where(helper)
        raise StepTimeout(
            f"step {step!r} did not return within {seconds:g} s"
            + (f" (it was at {where})" if where else "")
            + "; it was abandoned and may still be running in the background, since Python "
            "cannot stop a thread",
            timeout=seconds,
            where=where,
            thread=thread,
            statement=step,
        )
    ok, value = box[0]
    if ok:
        return value
    raise value


def _where(helper: threading.Thread) -> str | None:
    """Where ``helper`` is now: its innermost frame outside Python's standard library and gorch."""
    frame = sys._current_frames().get(helper.ident or -1)
    if frame is None:
        return None
    stack = traceback.extract_stack(frame)
    skip = (sysconfig.get_paths()["stdlib"], os.path.dirname(__file__))
    last = next((f for f in reversed(stack) if not f.filename.startswith(skip)), stack[-1])
    return f"{last.filename}:{last.lineno} in {last.name}()"


def describe_error(e: BaseException) -> str:
    """``Type: message`` for a user exception, as stored on threads and in history (with NUL
    and unpaired surrogates, which a store cannot hold, written as escapes)."""
    try:
        text = f"{type(e).__name__}: {e}"
    except Exception:  # an exception whose __str__ raises
        text = f"{type(e).__name__}: <str() failed>"
    return printable(text)
