"""The ``Workflow`` base class: a pydantic model whose fields are the durable state."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, time
from enum import Enum
from typing import Any, ClassVar

from pydantic import BaseModel

from engine._definition.statements import Section
from engine.errors import DefinitionError


class Workflow(BaseModel):
    """Subclass this; declare the state as fields and return the steps from ``definition()``.

    ``definition()`` is rebuilt from the current state whenever a field it read changed, so
    a plain bool condition such as ``If(self.approved, ...)`` always sees the latest state,
    and a definition that reads no field (its conditions are callables) is built once per
    session. Which fields it read is traced while it runs (see ``engine._definition.reads``); set
    ``trace_definition_reads = False`` to rebuild it after any change of the state instead.

    ``type_name`` is the name stored with each workflow (default: the class name); keep it
    when you rename the class so stored workflows still find their code.

    ``summary()`` says what a person must see to decide one of its waits (shown on the
    inbox card, in the graph's tooltip and by ``Notebook.waits()``); ``excluded_actors()``
    names the people who may not decide any of them (separation of duties). Mark a field
    that is no input of a new workflow with ``Field(json_schema_extra={"input": False})``:
    start forms leave it out (``input_fields()``).
    """

    type_name: ClassVar[str | None] = None
    trace_definition_reads: ClassVar[bool] = True

    def summary(self) -> dict[str, Any]:
        """What a person must see to decide a wait of this workflow, as field -> value.

        Default: every field holding a plain value (text, number, bool, date, enum, None),
        in declaration order. Override it to choose (``{"amount": self.amount, ...}``).
        It is stored with each open wait when the wait is armed and after every change of
        the state, so the inbox reads it without loading any workflow; keep it small.
        """
        values = self.__dict__  # the fields' values (getattr would also find properties)
        return {
            name: values[name]
            for name in type(self).model_fields
            if name in values and _plain(values[name])
        }

    def excluded_actors(self) -> Iterable[str]:
        """People who may not decide any wait of this workflow (separation of duties: the
        requester of an expense). Compared trimmed and case-insensitively. Default: nobody."""
        return ()

    @classmethod
    def input_fields(cls) -> list[str]:
        """The fields a new workflow is started with: all but those marked
        ``Field(json_schema_extra={"input": False})`` (state the workflow sets itself)."""
        return [
            name
            for name, f in cls.model_fields.items()
            if not (isinstance(extra := f.json_schema_extra, dict) and extra.get("input") is False)
        ]

    def definition(self) -> Section:
        """The workflow's statements, built from the current state."""
        raise DefinitionError(f"{type(self).__name__} must define definition() returning S(...)")

    @classmethod
    def workflow_type(cls) -> str:
        """The type name stored with workflows of this class."""
        return cls.__dict__.get("type_name") or cls.__name__


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool, date, time, Enum))
