"""Workflow state models: dump a state to JSON every store can hold, and validate it back.

A state is stored as its fields' JSON data, keyed by field name; it must load back equal to the
model it came from, or it is refused before anything is written.
"""

from __future__ import annotations

import functools
import json
import math
from decimal import Decimal
from typing import Any, TypeVar, get_args

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticSerializationError, to_json

from engine._jsonsafe import storable_json
from engine.errors import (
    StateError,
)


def state_data(model: BaseModel) -> dict[str, Any]:
    """The state's fields as JSON data, the one form gorch stores: keyed by field name (never
    by alias), without computed fields (derived, not state). ``validate_copy`` reads it back
    by field name, so an aliased field is never written under one key and read under another.

    Args:
        model: a workflow (or any pydantic model).
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


def describe_validation(e: ValidationError) -> str:
    """Each of a validation's errors as ``field.path: message``, joined by ``; ``."""
    return "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())


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

    Args:
        cls: the workflow (model) class.
        data: the state, e.g. as ``state_data`` gave it or as an operator edited it.

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

    Args:
        cls: the workflow (model) class.
        state: the state as stored, keyed by field name.

    pydantic would drop them silently, and the next checkpoint would lose their values. Empty
    when the model chose its ``extra`` policy itself or migrates its input in a
    ``model_validator(mode="before")`` (or ``"wrap"``).
    """
    declared = _declared(cls)
    if declared is None or declared.issuperset(state):
        return []
    return sorted(k for k in state if k not in declared)
