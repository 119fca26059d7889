"""Form fields from a pydantic model's JSON schema, and typed-in values back into JSON data.

Scalars (text, integers, numbers, booleans, enums) get their own widget; anything else
(lists, nested models, unions) is typed as JSON. The model validates the result: these
helpers only shape it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SCALARS = ("string", "integer", "number", "boolean")


@dataclass(frozen=True)
class FormField:
    """One input of a generated form."""

    name: str
    title: str
    kind: str  # "string", "integer", "number", "boolean", "enum" or "json"
    required: bool
    default: Any = None  # a JSON value; None when the schema gives none
    options: tuple[Any, ...] = ()
    nullable: bool = False
    help: str = ""


def form_fields(schema: Mapping[str, Any]) -> list[FormField]:
    """The fields of an object schema (``Model.model_json_schema()``), in declaration order.

    A property marked ``"input": false`` (``Field(json_schema_extra={"input": False})``: state
    the workflow sets itself) is no input and gets no field.
    """
    defs: Mapping[str, Any] = schema.get("$defs", {})
    required = set(schema.get("required", []))
    fields = []
    for name, prop in schema.get("properties", {}).items():
        if prop.get("input") is False:
            continue
        p: Mapping[str, Any] = prop
        nullable = False
        if "anyOf" in p:
            variants = [v for v in p["anyOf"] if v.get("type") != "null"]
            nullable = len(variants) < len(p["anyOf"])
            p = {**p, **variants[0]} if len(variants) == 1 else {}
        if "$ref" in p:
            p = {**p, **defs.get(str(p["$ref"]).rsplit("/", 1)[-1], {})}
        options: tuple[Any, ...] = tuple(p.get("enum", ()))
        kind = "enum" if options else str(p.get("type")) if p.get("type") in SCALARS else "json"
        fields.append(
            FormField(
                name,
                str(prop.get("title") or name),
                kind,
                name in required,
                prop.get("default"),
                options,
                nullable,
                str(prop.get("description") or ""),
            )
        )
    return fields


def initial(field: FormField) -> Any:
    """What the widget shows first: the default, as that widget holds it."""
    if field.kind == "json":
        return "" if field.default is None else json.dumps(field.default)
    if field.kind == "string":
        return field.default or ""
    if field.kind == "boolean":
        return bool(field.default)
    return field.default


def to_value(field: FormField, raw: Any) -> Any:
    """The JSON value of what was typed; raises ``ValueError`` for JSON that does not parse."""
    if field.kind == "json":
        if raw is None or not str(raw).strip():
            return None
        try:
            return json.loads(raw)
        except json.JSONDecodeError as e:
            raise ValueError(f"{field.title}: not valid JSON ({e.msg})") from None
    if field.kind == "string" and raw == "":
        return None
    if field.kind == "boolean":
        return bool(raw)
    if field.kind == "integer" and isinstance(raw, float) and raw.is_integer():
        return int(raw)
    return raw


def collect(fields: list[FormField], raw: Mapping[str, Any]) -> dict[str, Any]:
    """The input data from the widgets' values (``raw`` by field name).

    A field left empty is omitted, so the model's default applies (or the model reports it
    missing), except a required nullable one, which becomes null.
    """
    data: dict[str, Any] = {}
    for f in fields:
        value = to_value(f, raw.get(f.name))
        if value is not None or (f.required and f.nullable):
            data[f.name] = value
    return data
