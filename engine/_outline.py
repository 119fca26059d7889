"""A plain-text outline of a definition: the graph's fallback where Graphviz is missing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, assert_never

from engine._definition.statements import (
    Branch,
    Break,
    Continue,
    For,
    Go,
    If,
    Return,
    Section,
    Statement,
    StatementKind,
    Step,
    Switch,
    Wait,
    WaitFor,
)
from engine._records import WorkflowInfo


def branch_label(kind: str, i: int, br: Branch) -> str:
    """``then``, ``elif``, ``else``, ``case 2``, ``default``: the edge a branch is taken by.

    Plainly what the edge means, whatever the condition is now: a bool condition's value
    comes from the state the graph was drawn from (an edge once labelled ``if (false)`` read
    as "taken when false"); the live graph shows where threads stand instead.
    """
    if br.default:
        return "else" if kind == StatementKind.IF else "default"
    return ("then" if i == 0 else "elif") if kind == StatementKind.IF else f"case {i + 1}"


def text_tree(definition: Section, info: WorkflowInfo[Any] | None = None) -> str:
    """A plain-text outline of ``definition``, marking where ``info``'s threads stand."""
    here: dict[str, list[str]] = {}
    if info is not None:
        for t in info.threads:
            if t.position and t.status.unfinished:
                here.setdefault(t.position, []).append(f"{t.id}:{t.status.value}")
    lines: list[str] = []

    def walk(stmts: Sequence[Statement], depth: int) -> None:
        pad = "  " * depth
        for st in stmts:
            if isinstance(st, Section):  # a nested section is not a line of its own
                walk(st.stmts, depth)
                continue
            name = st.label
            mark = f"   <- {', '.join(here[name])}" if name in here else ""
            title = f"{type(st).__name__}({name!r})" if name else type(st).__name__
            if isinstance(st, Return):
                args = [repr(st.value)] if st.value is not None else []
                if st.error:
                    args.append(f"error={st.error!r}")
                title = f"Return({', '.join(args)})"
            lines.append(f"{pad}{title}{mark}")
            match st:
                case Go():
                    walk(st.section.stmts, depth + 1)
                case Wait():
                    for c in st.cases:
                        lines.append(f"{pad}  On({c.event!r})")
                        walk(c.body.stmts, depth + 2)
                case If() | Switch():
                    for i, br in enumerate(st.branches):
                        lines.append(f"{pad}  {branch_label(st.kind, i, br)}:")
                        walk(br.body.stmts, depth + 2)
                case For():
                    walk(st.body.stmts, depth + 1)
                case Step() | WaitFor() | Return() | Break() | Continue():
                    pass  # no body
                case _:
                    assert_never(st)

    walk(definition.stmts, 0)
    return "\n".join(lines)
