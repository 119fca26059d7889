"""The ``Workflow`` base class: a pydantic model whose fields are the durable state."""

from __future__ import annotations

from typing import ClassVar

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
    """

    type_name: ClassVar[str | None] = None
    trace_definition_reads: ClassVar[bool] = True

    def definition(self) -> Section:
        """The workflow's statements, built from the current state."""
        raise DefinitionError(f"{type(self).__name__} must define definition() returning S(...)")

    @classmethod
    def workflow_type(cls) -> str:
        """The type name stored with workflows of this class."""
        return cls.__dict__.get("type_name") or cls.__name__
