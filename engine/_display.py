"""Rich display in Jupyter, attached from the display side: definitions and workflows as graphs.

Statements and runtime records know nothing of notebooks or graphs. This module gives
``Section`` and ``WorkflowInfo`` a ``_repr_mimebundle_`` that loads ``engine.notebook`` (and with
it Graphviz) on first display only, so that importing ``engine`` stays light.
"""

from __future__ import annotations

from typing import Any

from engine._definition.statements import Section
from engine._records import WorkflowInfo


def _definition_bundle(self: Section, include: Any = None, exclude: Any = None) -> dict[str, str]:
    """Jupyter shows a definition as its graph (see ``engine.notebook``)."""
    from engine.notebook import definition_bundle  # on first display: Graphviz is heavy

    return definition_bundle(self)


def _workflow_bundle(
    self: WorkflowInfo[Any], include: Any = None, exclude: Any = None
) -> dict[str, str]:
    """Jupyter shows a workflow as its graph with its threads (see ``engine.notebook``)."""
    from engine.notebook import workflow_bundle  # on first display: Graphviz is heavy

    return workflow_bundle(self)


def attach() -> None:
    """Give definitions and workflow snapshots their rich display (done on ``import engine``)."""
    # setattr: the classes declare no display method of their own, by design.
    setattr(Section, "_repr_mimebundle_", _definition_bundle)  # noqa: B010
    setattr(WorkflowInfo, "_repr_mimebundle_", _workflow_bundle)  # noqa: B010
