"""The closed sets of names modules share (history kinds, reject reasons, statement kinds,
status groups) are enums defined once, and the values they store never change."""

from __future__ import annotations

import ast
import typing
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import engine
from engine import (
    MAIN,
    POSITIONABLE_KINDS,
    Break,
    CallbackRejected,
    Continue,
    DefinitionError,
    Engine,
    Event,
    For,
    Go,
    HandlerType,
    HistoryKind,
    If,
    InvalidInput,
    InvalidOutput,
    On,
    RejectReason,
    Return,
    S,
    Section,
    Statement,
    StatementKind,
    Step,
    Switch,
    ThreadStatus,
    Timeout,
    Wait,
    WaitFor,
    WaitForUserAction,
    Workflow,
    WorkflowStatus,
)
from engine._definition import statements as statements_module
from engine._definition.compiler import POSITIONABLE, FrameKind, compile_definition
from engine._definition.statements import Case, Default, Stmt
from engine._interpreter import Blocked, Ended, Frame, Returned, StepRan, advance, start_frames
from engine._records import PRUNABLE, Phase, ThreadState

ENGINE_DIR = Path(engine.__file__).parent


def noop() -> None:
    return None


def every_kind() -> Section:
    """A definition holding one statement of every kind."""
    return S(
        Step("a", noop),
        Go("g", S(Step("g1", noop))),
        Wait("w", On("e", Timeout(timedelta(seconds=1)), Step("w1", noop))),
        WaitFor("wf", True),
        If(True, Step("i1", noop), name="if").Else(Step("i2", noop)),
        Switch(Case(False, Step("s1", noop)), Default(Step("s2", noop)), name="sw"),
        For("loop", True, If(True, Break()), Step("f1", noop), Continue()),
        S(Step("nested", noop)),
        Return(1),
    )


# -- history kinds ---------------------------------------------------------------------------


def _kind_args(tree: ast.AST) -> list[tuple[int, ast.expr]]:
    """The kind argument of every ``*.note(kind, ...)``, ``HistoryEntry(.., .., kind, ...)``
    and ``history_line(.., .., kind, ...)`` (the session's reducer)."""
    found: list[tuple[int, ast.expr]] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Attribute) and f.attr == "note" and node.args:
            found.append((node.lineno, node.args[0]))
        elif isinstance(f, ast.Name) and f.id in ("HistoryEntry", "history_line"):
            kw = {k.arg: k.value for k in node.keywords}
            arg = node.args[2] if len(node.args) > 2 else kw.get("kind")
            if arg is not None:
                found.append((node.lineno, arg))
    return found


def _members(expr: ast.expr) -> list[str] | None:
    """The ``HistoryKind`` members ``expr`` names (``HistoryKind.X``, or ``a if c else b``
    of those), or None if it is anything else (a string literal, say)."""
    if isinstance(expr, ast.IfExp):
        body, orelse = _members(expr.body), _members(expr.orelse)
        return None if body is None or orelse is None else body + orelse
    if (
        isinstance(expr, ast.Attribute)
        and isinstance(expr.value, ast.Name)
        and expr.value.id == "HistoryKind"
    ):
        return [expr.attr]
    return None


# Where a kind is passed on rather than chosen: copying or reading back a stored entry, the
# column probe of the SQL store, and ``Engine._advance`` (its ``request`` is typed HistoryKind).
PASSED_ON = {"self.kind", "r.kind", "''", "kind"}


def test_every_history_line_the_engine_writes_names_a_history_kind() -> None:
    written: set[str] = set()
    used: set[str] = set()
    bare: list[str] = []
    for path in sorted(ENGINE_DIR.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for line, arg in _kind_args(tree):
            names = _members(arg)
            if names is not None:
                written.update(names)
            elif ast.unparse(arg) not in PASSED_ON:
                bare.append(f"{path.relative_to(ENGINE_DIR)}:{line}: {ast.unparse(arg)}")
        used.update(m for node in ast.walk(tree) if isinstance(node, ast.expr)
                    for m in _members(node) or [])  # fmt: skip
    assert bare == []  # no string literal (or anything else) where a HistoryKind belongs
    assert len(written) > 15 and written <= set(HistoryKind.__members__)
    # Every kind the enum declares is written somewhere (some through Engine._advance's
    # ``request``): none is stale, none is missing.
    assert used == set(HistoryKind.__members__)


def test_history_kinds_keep_their_stored_values() -> None:
    # Stored history holds these strings: renaming a value would orphan old rows.
    assert [k.value for k in HistoryKind] == [
        "created", "execute_requested", "step_requested", "step", "step_error", "thread_failed",
        "go", "wait", "waitfor", "waitfor_done", "callback", "return", "thread_end", "finished",
        "renamed", "code_changed", "cancelled", "retried", "goto", "state_updated",
        "setup_error", "teardown_error", "blocked", "callback_refused",
    ]  # fmt: skip
    assert all(k.value == k.name.lower() for k in HistoryKind)
    assert HistoryKind.STEP == "step" and f"{HistoryKind.STATE_UPDATED}" == "state_updated"


# -- reject reasons --------------------------------------------------------------------------


def test_reject_reasons_are_one_enum_and_keep_their_values() -> None:
    assert {r.value for r in RejectReason} == {
        "finished", "no_wait", "ambiguous", "stale_pc", "handler_error", "invalid_input",
        "invalid_output", "not_assigned", "excluded",
    }  # fmt: skip
    assert InvalidInput("x").reason is RejectReason.INVALID_INPUT
    assert InvalidOutput("x").reason is RejectReason.INVALID_OUTPUT
    # A known reason given as text becomes the member; one of the caller's own stays text.
    assert CallbackRejected("x", reason="stale_pc").reason is RejectReason.STALE_PC
    own = CallbackRejected("x", reason="closed_for_lunch")
    assert (own.reason, own.taken) == ("closed_for_lunch", False)


def test_taken_means_someone_else_got_there_first() -> None:
    taken = {r for r in RejectReason if CallbackRejected("x", reason=r).taken}
    assert taken == {RejectReason.NO_WAIT, RejectReason.STALE_PC, RejectReason.FINISHED}


class Ask(Workflow):
    n: int = 0

    def definition(self) -> Section:
        return S(Wait("ask", On("answer", WaitForUserAction(approve=noop, deny=lambda r: None))))


@pytest.mark.parametrize(
    ("first", "then", "reason"),
    [
        ({"approved": True}, "answer", RejectReason.FINISHED),
        (None, "no such event", RejectReason.NO_WAIT),
        (None, "answer-stale", RejectReason.STALE_PC),
        (None, "answer-bad", RejectReason.INVALID_INPUT),
    ],
)
def test_the_engine_rejects_with_members_of_the_enum(
    first: Any, then: str, reason: RejectReason
) -> None:
    e = Engine(engine.MemoryStore(), [Ask])
    wid = e.new_workflow(Ask())
    if first is not None:
        e.on_callback(wid, "answer", first)
    with pytest.raises(CallbackRejected) as rejected:
        if then == "answer-stale":
            e.on_callback(wid, "answer", {"approved": True}, pc=999)
        elif then == "answer-bad":
            e.on_callback(wid, "answer", {"approved": "maybe?"})
        else:
            e.on_callback(wid, then, {"approved": True})
    assert type(rejected.value.reason) is RejectReason
    assert rejected.value.reason is reason


# -- statements ------------------------------------------------------------------------------


def test_the_statement_union_is_every_concrete_statement() -> None:
    concrete = {
        cls
        for cls in vars(statements_module).values()
        if isinstance(cls, type) and issubclass(cls, Stmt) and cls is not Stmt
    }
    assert set(typing.get_args(Statement)) == concrete
    kinds = [cls.kind for cls in concrete]
    assert all(type(k) is StatementKind for k in kinds)
    assert sorted(kinds) == sorted(StatementKind)  # one kind each, none left over


def test_a_definition_keeps_its_fingerprint() -> None:
    # The fingerprint is stored with every workflow; were the kinds to format differently,
    # every stored workflow would note "code_changed" on its next session.
    assert compile_definition(every_kind()).fingerprint == "16210fc9dd8481df"


def test_a_new_kind_of_statement_cannot_be_added() -> None:
    with pytest.raises(DefinitionError, match="new kind of statement"):

        class Sleep(Stmt):  # no match in the compiler, interpreter or graph has its case
            pass


def test_a_subclass_of_a_statement_runs_as_that_statement() -> None:
    class Logged(Step):
        pass

    ran: list[str] = []
    program = compile_definition(S(Logged("a", lambda: ran.append("a")), Step("b", noop)))
    outcome = advance(program, ThreadState(MAIN))
    assert isinstance(outcome, StepRan) and outcome.step.name == "a" and ran == ["a"]


def test_positionable_kinds_are_the_positionable_statements() -> None:
    assert {cls.kind for cls in POSITIONABLE} == POSITIONABLE_KINDS
    assert {"step", "wait", "waitfor", "go", "for", "if", "switch"} == POSITIONABLE_KINDS
    program = compile_definition(every_kind())
    for name, entry in program.index.items():
        assert (entry.stmt.kind in POSITIONABLE_KINDS) == isinstance(entry.stmt, POSITIONABLE), name


# -- frames ----------------------------------------------------------------------------------

OLD_THREAD = {  # a thread as stored by gorch before Frame existed: frames are never stored
    "id": "main",
    "go": None,
    "position": "w",
    "phase": "handled",
    "status": "running",
    "event": "e",
    "attempts": 0,
    "retry_at": None,
    "error": None,
}


def test_a_stored_thread_loads_and_resumes_through_frames() -> None:
    thread = ThreadState.from_json(dict(OLD_THREAD))
    assert thread.to_json() == OLD_THREAD  # the stored form is unchanged
    program = compile_definition(every_kind())
    frames = start_frames(program, thread)
    assert [(type(f), f.index, f.kind) for f in frames] == [
        (Frame, 2, FrameKind.ROOT),
        (Frame, 0, FrameKind.CASE),
    ]
    outcome = advance(program, thread)  # the winning case's first step
    assert isinstance(outcome, StepRan) and outcome.step.name == "w1"
    done = ThreadState.from_json({**OLD_THREAD, "position": "nested", "phase": "done"})
    assert advance(program, done) == Returned(1, None)  # what follows the stored name


def test_frames_walk_out_of_nested_sections() -> None:
    wait = Wait("w", On("e", Timeout(timedelta(0))))
    program = compile_definition(S(S(S(Step("deep", noop))), wait))
    after_deep = ThreadState(MAIN, position="deep", phase=Phase.DONE)
    assert advance(program, after_deep) == Blocked(wait)
    program = compile_definition(S(S(Step("x", noop))))
    assert advance(program, ThreadState(MAIN, position="x", phase=Phase.DONE)) == Ended()


# -- status groups ---------------------------------------------------------------------------


def test_status_groups_are_defined_once_on_the_enums() -> None:
    W, T = WorkflowStatus, ThreadStatus
    assert {s for s in W if s.done} == {W.FINISHED, W.CANCELLED}
    assert {s for s in W if s.live} == {W.RUNNING, W.WAITING}
    assert [s for s in W if s.unfinished] == [W.RUNNING, W.WAITING, W.FAILED]  # listing order
    assert {W.FINISHED, W.CANCELLED, W.FAILED} == PRUNABLE
    assert {s for s in T if s.live} == {T.RUNNING, T.WAITING}
    assert {s for s in T if s.done} == {T.FINISHED, T.CANCELLED}
    assert {s for s in T if s.unfinished} == {T.RUNNING, T.WAITING, T.FAILED}


def test_built_in_handlers_carry_their_handler_type() -> None:
    class Input(engine.UserAction):
        pass

    assert WaitForUserAction(approve=noop, deny=lambda r: None).type is HandlerType.USER_ACTION
    assert Event(Input).type is HandlerType.EVENT
    assert Timeout(timedelta(0)).type is HandlerType.TIMEOUT
    assert {h.value for h in HandlerType} == {"user_action", "event", "timeout"}
