"""Before a deploy: which stored workflows would the code now break?

``check_compatibility`` compares the definition in the code now with every unfinished
workflow of a type: threads standing on statements that are gone, waits whose event is gone,
goroutines whose ``Go`` is gone, state that no longer fits the model. Renamed statements
(``S(..., renamed={...})``) are reported as followed, not as problems. ``gorch check`` prints
the report and exits non-zero when something would break, so it can gate a deploy in CI.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from engine._definition.compiler import Program, build_program, compile_definition
from engine._definition.statements import Section
from engine._definition.workflow import Workflow
from engine._interpreter import position_problems
from engine._records import WorkflowRecord, WorkflowStatus
from engine._session.runner import load_state
from engine.errors import DefinitionError, GorchError, StateError
from engine.store.base import Store


@dataclass(frozen=True)
class Problem:
    """One thing about one stored workflow that the code now cannot run.

    ``kind`` is ``statement``, ``goroutine``, ``case``, ``thread`` (see ``DefinitionMismatch``),
    ``state`` (the stored state no longer fits the model) or ``definition`` (the code fails
    to build a valid definition from that workflow's state).
    """

    workflow_id: str
    thread: str | None
    statement: str | None
    kind: str
    message: str


@dataclass(frozen=True)
class Renamed:
    """A thread that will follow a rename alias to its new statement."""

    workflow_id: str
    thread: str
    old: str
    new: str


@dataclass
class CompatibilityReport:
    """The result of ``check_compatibility``."""

    type: str
    checked: int = 0
    problems: list[Problem] = field(default_factory=list)
    renamed: list[Renamed] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True if every checked workflow can run on the code now."""
        return not self.problems

    @property
    def broken(self) -> list[str]:
        """The ids of the workflows that would break, in the order found."""
        return list(dict.fromkeys(p.workflow_id for p in self.problems))

    def by_statement(self) -> dict[str, list[Problem]]:
        """Problems grouped by the statement they concern (``""`` when none)."""
        groups: dict[str, list[Problem]] = {}
        for p in self.problems:
            groups.setdefault(p.statement or "", []).append(p)
        return groups

    def summary(self) -> str:
        """A few lines for a terminal or a CI log."""
        head = (f"{self.type}: {self.checked} unfinished workflow(s) checked, "
                f"{len(self.broken)} would break")  # fmt: skip
        lines = [head]
        for statement, problems in sorted(self.by_statement().items()):
            ids = sorted({p.workflow_id for p in problems})
            shown = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
            lines.append(f"  {statement or '(whole workflow)'!s}: {problems[0].kind} — "
                         f"{len(ids)} workflow(s): {shown}")  # fmt: skip
            lines.append(f"    e.g. {problems[0].message}")
        if self.renamed:
            lines.append(f"  {len(self.renamed)} thread(s) follow a rename alias")
        return "\n".join(lines)


def unfinished(store: Store, type_name: str, *, page: int = 500) -> Iterator[WorkflowRecord]:
    """Every running, waiting or failed workflow of ``type_name``, a page at a time."""
    for status in (s for s in WorkflowStatus if s.unfinished):
        offset = 0
        while True:
            batch = store.list_workflows(status=status, type=type_name, limit=page, offset=offset)
            yield from batch
            if len(batch) < page:
                break
            offset += page


def check_compatibility(
    target: type[Workflow] | Section, store: Store, *, type_name: str | None = None
) -> CompatibilityReport:
    """Check every unfinished workflow of a type against the code now.

    Args:
        target: the workflow class as deployed now (its ``definition()`` is built from each
            workflow's own state), or one definition to check all of them against.
        store: where the workflows are.
        type_name: the stored type to check; required with a definition, defaults to the
            class's type name.

    Raises:
        DefinitionError: ``target`` is a definition that is itself malformed.
    """
    fixed: Program | None = None
    if isinstance(target, Section):
        if type_name is None:
            raise GorchError("check_compatibility(definition, ...) needs type_name=")
        fixed = compile_definition(target)
        name = type_name
    else:
        name = type_name or target.workflow_type()
    report = CompatibilityReport(name)
    for record in unfinished(store, name):
        report.checked += 1
        try:
            program = fixed or _program(target, record)
        except (StateError, DefinitionError) as e:
            kind = "state" if isinstance(e, StateError) else "definition"
            report.problems.append(Problem(record.id, None, e.statement, kind, e.message))
            continue
        waits = store.load_waits(record.id)
        for t in record.threads:
            new = program.resolve(t.position) if t.position else ""
            if new != t.position:
                report.renamed.append(Renamed(record.id, t.id, t.position, new))
        for gone in position_problems(program, record.threads, waits):
            report.problems.append(
                Problem(record.id, gone.thread, gone.statement, gone.kind, gone.message)
            )
    return report


def _program(target: type[Workflow] | Section, record: WorkflowRecord) -> Program:
    if isinstance(target, Section):  # pragma: no cover - handled by the caller
        return compile_definition(target)
    return build_program(load_state(target, record), record.id)
