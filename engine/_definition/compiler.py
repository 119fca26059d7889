"""Compile a definition into a ``Program``: check its structure and index its named statements.

A ``Program`` is the index the interpreter uses to find a thread's position by name.
``validate(definition)`` raises ``DefinitionError`` listing every problem; ``build_program``
calls a model's ``definition()`` and compiles it, tracing the state fields it reads.
"""

from __future__ import annotations

import hashlib
from enum import Enum
from typing import TYPE_CHECKING, Any, NamedTuple, assert_never

from engine._definition import reads as reads_of
from engine._definition.statements import (
    Break,
    Continue,
    For,
    Go,
    If,
    Return,
    Section,
    Statement,
    Step,
    Stmt,
    Switch,
    Wait,
    WaitFor,
)
from engine._jsonsafe import describe_error
from engine._timeouts import timeout_seconds
from engine.errors import DefinitionError, GorchError

if TYPE_CHECKING:
    from engine._definition.workflow import Workflow


class FrameKind(Enum):
    """What owns a section on a thread's path, which decides what happens when it ends."""

    ROOT = "root"  # the thread's body: ending it ends the thread
    SEQ = "seq"  # a nested S(...): continue after it
    BRANCH = "branch"  # an If/Switch branch: continue after the If
    LOOP = "loop"  # a For body: go back to the For's condition
    CASE = "case"  # a Wait case: continue after the Wait


# A frame of a path: (the statements of a section, the index in it, what owns it); the
# interpreter's cursor is a stack of ``interpreter.Frame``, made from these.
PathFrame = tuple[tuple[Statement, ...], int, FrameKind]

POSITIONABLE = (Step, Wait, WaitFor, Go, For, If, Switch)
"""Statement classes a thread can stand on (and an operator can ``goto``), when named."""

POSITIONABLE_KINDS = frozenset(cls.kind for cls in POSITIONABLE)
"""The ``StatementKind`` of each of ``POSITIONABLE``: the graph nodes that ``goto`` can target."""


class Entry(NamedTuple):
    """A named statement and the path to it from the root of the thread that runs it."""

    stmt: Stmt
    path: tuple[PathFrame, ...]
    thread: str | None  # the Go statement whose body holds it; None for the main thread


class Program:
    """A compiled definition: the tree and its named statements.

    A program made by ``rebind`` (the definition rebuilt after a step) finds statements by
    following the paths of the fully compiled program it came from, so a step costs
    O(depth), not O(size); if the tree's shape changed under a name, it compiles in full.
    """

    __slots__ = ("_base", "_cache", "_index", "aliases", "fingerprint", "root")

    def __init__(
        self,
        root: Section,
        index: dict[str, Entry] | None = None,
        base: Program | None = None,
        *,
        aliases: dict[str, str] | None = None,
        fingerprint: str = "",
    ) -> None:
        self.root = root
        self._index = index
        self._base = base
        self._cache: dict[str, Entry | None] = {}
        self.aliases: dict[str, str] = aliases if aliases is not None else {}
        """Old statement names (``S(..., renamed=...)``) and the names they became."""
        self.fingerprint = fingerprint
        """A short hash of the definition's shape: its statements' kinds, names and nesting."""

    @property
    def index(self) -> dict[str, Entry]:
        """Every named statement (compiles and validates the whole tree if not done yet)."""
        if self._index is None:
            full = compile_definition(self.root)
            self._index, self.aliases, self.fingerprint = full.index, full.aliases, full.fingerprint
            self._base = None
        return self._index

    def rebind(self, root: Section) -> Program:
        """The program of ``root``, a rebuild of this program's definition from newer state."""
        base = self if self._index is not None else self._base
        return Program(root, base=base, aliases=self.aliases, fingerprint=self.fingerprint)

    def resolve(self, name: str) -> str:
        """``name``, or the name it was renamed to if the definition declares that alias."""
        return self.aliases.get(name, name) if self.entry_exact(name) is None else name

    def entry_exact(self, name: str) -> Entry | None:
        """The statement called exactly ``name`` (no alias), or None."""
        if self._index is not None:
            return self._index.get(name)
        return self._lazy(name)

    def entry(self, name: str) -> Entry | None:
        """The statement called ``name`` (or renamed from ``name``) and its path, or None."""
        found = self.entry_exact(name)
        if found is None and name in self.aliases:
            return self.entry_exact(self.aliases[name])
        return found

    def _lazy(self, name: str) -> Entry | None:
        if name in self._cache:
            return self._cache[name]
        old = self._base.entry_exact(name) if self._base is not None else None
        found = self._follow(old) if old is not None else None
        if found is None:  # a new name, or the shape changed: compile the whole tree
            return self.index.get(name)
        self._cache[name] = found
        return found

    def go(self, name: str) -> Go | None:
        """The ``Go`` statement called ``name``, if there is one."""
        entry = self.entry(name)
        return entry.stmt if entry is not None and isinstance(entry.stmt, Go) else None

    def _follow(self, old: Entry) -> Entry | None:
        """``old``'s path followed through this program's tree, if it leads to the same name."""
        if old.thread is None:
            stmts: tuple[Statement, ...] = self.root.stmts
        else:
            go = self.go(old.thread)
            if go is None:
                return None
            stmts = go.section.stmts
        path: list[PathFrame] = []
        last = len(old.path) - 1
        for k, (old_stmts, i, kind) in enumerate(old.path):
            if i >= len(stmts):
                return None
            path.append((stmts, i, kind))
            if k == last:
                break
            sub = _descend(old_stmts[i], stmts[i], old.path[k + 1][0])
            if sub is None:
                return None
            stmts = sub
        st = stmts[old.path[-1][1]]
        if type(st) is not type(old.stmt) or st.label != old.stmt.label:
            return None
        return Entry(st, tuple(path), old.thread)


def _descend(
    old: Statement, new: Statement, old_child: tuple[Statement, ...]
) -> tuple[Statement, ...] | None:
    """The section of ``new`` at the place where ``old`` held ``old_child``."""
    if type(old) is not type(new):
        return None
    if isinstance(old, Section) and isinstance(new, Section):
        return new.stmts
    if isinstance(old, For) and isinstance(new, For):
        return new.body.stmts
    if isinstance(old, (If, Switch)) and isinstance(new, (If, Switch)):
        for j, b in enumerate(old.branches):
            if b.body.stmts is old_child:
                return new.branches[j].body.stmts if j < len(new.branches) else None
    if isinstance(old, Wait) and isinstance(new, Wait):
        for j, c in enumerate(old.cases):
            if c.body.stmts is old_child:
                return new.cases[j].body.stmts if j < len(new.cases) else None
    return None


_MAX_DEPTH = 200


class _Compiler:
    def __init__(self) -> None:
        self.index: dict[str, Entry] = {}
        self.problems: list[str] = []
        self.first_bad: str | None = None
        self.tokens: list[str] = []  # the shape, for the fingerprint
        self.aliases: dict[str, str] = {}

    def problem(self, msg: str, name: str | None = None) -> None:
        self.problems.append(msg)
        if self.first_bad is None and name is not None:
            self.first_bad = name

    def name(self, stmt: Stmt, name: Any, path: tuple[PathFrame, ...], thread: str | None) -> None:
        what = type(stmt).__name__
        if not isinstance(name, str) or not name.strip():
            self.problem(f"{what} has an empty or non-string name: {name!r}")
            return
        if name in self.index:
            self.problem(
                f"duplicate name {name!r}: used by a {type(self.index[name].stmt).__name__} "
                f"and a {what}; every step, wait, loop and goroutine needs its own name",
                name,
            )
            return
        self.index[name] = Entry(stmt, path, thread)

    def section(
        self,
        sec: Section,
        kind: FrameKind,
        path: tuple[PathFrame, ...],
        thread: str | None,
        loops: int,
        depth: int,
    ) -> None:
        if depth > _MAX_DEPTH:
            self.problem(f"definition nested deeper than {_MAX_DEPTH} levels")
            return
        stmts = sec.stmts
        index = self.index
        tokens = self.tokens
        last = len(stmts) - 1
        for old, new in sec.renamed:
            self.alias(old, new)
        tokens.append("(")
        for i, st in enumerate(stmts):
            if type(st) is Step:  # the common case, kept fast: compiling runs every session
                name = st.name
                if type(name) is str and name not in index and callable(st.action) and name.strip():
                    index[name] = Entry(st, (*path, (stmts, i, kind)), thread)
                    tokens.append(name)
                    if st.timeout is not None:
                        self.timeout(st)
                    continue
            tokens.append(f"{st.kind}:{st.label or ''}")
            here = (*path, (stmts, i, kind))
            if i != last and isinstance(st, (Return, Break, Continue)):
                after = stmts[i + 1]
                self.problem(
                    f"{type(after).__name__} {after.label or ''!s} after "
                    f"{type(st).__name__}() can never run".replace("  ", " "),
                    after.label,
                )
            self.stmt(st, here, thread, loops, depth + 1)
        tokens.append(")")

    def alias(self, old: Any, new: Any) -> None:
        if not (isinstance(old, str) and isinstance(new, str) and old and new):
            self.problem(f"renamed={{{old!r}: {new!r}}}: names must be non-empty strings")
        elif old == new or self.aliases.get(old, new) != new:
            self.problem(
                f"renamed: {old!r} is renamed to {new!r} and to {self.aliases[old]!r}"
                if old != new
                else f"renamed: {old!r} is renamed to itself",
                old,
            )
        else:
            self.aliases[old] = new

    def check_aliases(self) -> None:
        for old, new in self.aliases.items():
            if old in self.index:
                self.problem(
                    f"renamed: {old!r} is still the name of a statement, so threads "
                    f"on it cannot follow the rename to {new!r}",
                    old,
                )
            elif new not in self.index:
                self.problem(
                    f"renamed: {old!r} is renamed to {new!r}, which no statement is called", old
                )

    def stmt(
        self, st: Statement, here: tuple[PathFrame, ...], thread: str | None, loops: int, depth: int
    ) -> None:
        match st:
            case Section():
                self.section(st, FrameKind.SEQ, here, thread, loops, depth)
            case Step():
                self.name(st, st.name, here, thread)
                if not callable(st.action):
                    self.problem(f"Step {st.name!r}: action {st.action!r} is not callable", st.name)
                if st.timeout is not None:
                    self.timeout(st)
            case Go():
                self.name(st, st.name, here, thread)
                if st.id is not None and not (isinstance(st.id, str) or callable(st.id)):
                    self.problem(f"Go {st.name!r}: id must be a string or a callable", st.name)
                # A goroutine's body is the root of a new thread: loops outside do not count.
                self.section(st.section, FrameKind.ROOT, (), st.name, 0, depth)
            case Wait():
                self.wait(st, here, thread, loops, depth)
            case WaitFor():
                self.name(st, st.name, here, thread)
                self.cond(st.cond, f"WaitFor {st.name!r}", st.name)
            case If() | Switch():
                if st.name is not None:
                    self.name(st, st.name, here, thread)
                for br in st.branches:
                    if not br.default:
                        self.cond(br.cond, f"{type(st).__name__} {st.name or ''}".strip(), st.name)
                    self.section(br.body, FrameKind.BRANCH, here, thread, loops, depth)
            case For():
                self.name(st, st.name, here, thread)
                self.cond(st.cond, f"For {st.name!r}", st.name)
                if not st.body.stmts:
                    self.problem(f"For {st.name!r} has an empty body: it could never end", st.name)
                elif not _can_progress(st.body):
                    self.problem(
                        f"For {st.name!r}: its body has no Step, Wait, WaitFor, Break or "
                        "Return, so nothing could ever change its condition",
                        st.name,
                    )
                self.section(st.body, FrameKind.LOOP, here, thread, loops + 1, depth)
            case Break() | Continue():
                if loops == 0:
                    where = f" in goroutine {thread!r}" if thread else ""
                    self.problem(f"{type(st).__name__}() outside a For loop{where}")
            case Return():
                if st.error is not None and not isinstance(st.error, str):
                    self.problem(
                        f"Return(error=...) must be a string, not {type(st.error).__name__}"
                    )
            case _:
                assert_never(st)

    def wait(
        self, st: Wait, here: tuple[PathFrame, ...], thread: str | None, loops: int, depth: int
    ) -> None:
        self.name(st, st.name, here, thread)
        if not st.cases:
            self.problem(f"Wait {st.name!r} has no On(...) case", st.name)
        seen: set[str] = set()
        for case in st.cases:
            if not isinstance(case.event, str) or not case.event:
                self.problem(f"Wait {st.name!r}: event names must be non-empty strings", st.name)
            elif case.event in seen:
                self.problem(f"Wait {st.name!r}: event {case.event!r} appears twice", st.name)
            seen.add(case.event)
            if not _is_handler(case.handler):
                self.problem(
                    f"Wait {st.name!r}, event {case.event!r}: the handler "
                    f"{case.handler!r:.60} has no .type and .handle(input)",
                    st.name,
                )
            self.section(case.body, FrameKind.CASE, here, thread, loops, depth)

    def timeout(self, st: Step) -> None:
        try:
            timeout_seconds(st.timeout, f"Step {st.name!r}: timeout")
        except DefinitionError as e:
            self.problem(e.message, st.name)

    def cond(self, cond: Any, where: str, name: str | None) -> None:
        if not (isinstance(cond, bool) or callable(cond)):
            self.problem(
                f"{where}: condition must be a bool or a zero-argument callable, "
                f"not {type(cond).__name__}",
                name,
            )


def _is_handler(h: Any) -> bool:
    # Duck-typed: isinstance() against a runtime-checkable Protocol is slow on the hot path.
    return isinstance(getattr(h, "type", None), str) and callable(getattr(h, "handle", None))


def _can_progress(sec: Section) -> bool:
    for st in sec.stmts:
        match st:
            case Step() | Wait() | WaitFor() | Break() | Return():
                return True
            case Section():
                if _can_progress(st):
                    return True
            case If() | Switch():
                if any(_can_progress(b.body) for b in st.branches):
                    return True
            case For():
                if _can_progress(st.body):
                    return True
            case Go() | Continue():
                pass  # a goroutine's body runs in another thread
            case _:
                assert_never(st)
    return False


def compile_definition(definition: Any) -> Program:
    """Check ``definition`` and index its named statements.

    Raises:
        DefinitionError: listing every structural problem found.
    """
    if not isinstance(definition, Section):
        raise DefinitionError(f"definition() must return S(...), not {type(definition).__name__}")
    c = _Compiler()
    try:
        c.section(definition, FrameKind.ROOT, (), None, 0, 0)
    except RecursionError:
        c.problem("definition is nested too deeply to compile")
    c.check_aliases()
    if c.problems:
        msg = (
            c.problems[0]
            if len(c.problems) == 1
            else (f"{len(c.problems)} problems: " + "; ".join(c.problems))
        )
        raise DefinitionError(msg, problems=c.problems, statement=c.first_bad)
    shape = "\x1f".join(c.tokens).encode("utf-8", "surrogatepass")
    fingerprint = hashlib.blake2b(shape, digest_size=8).hexdigest()
    return Program(definition, c.index, aliases=c.aliases, fingerprint=fingerprint)


def validate(definition: Any) -> None:
    """Raise ``DefinitionError`` naming every structural problem of ``definition``."""
    compile_definition(definition)


def build_program(
    model: Workflow, workflow_id: str | None = None, prev: Program | None = None
) -> Program:
    """Call ``definition()`` on ``model`` and compile it; every failure is a ``DefinitionError``.

    With ``prev`` (the program before the last step) the new tree is bound to ``prev``'s
    paths instead of compiled again: the tree was validated when the session began.
    """
    return build_traced(model, workflow_id, prev, trace=False)[0]


def build_traced(
    model: Workflow, workflow_id: str | None, prev: Program | None, *, trace: bool = True
) -> tuple[Program, frozenset[str]]:
    """``build_program``, and the state fields ``definition()`` read (see
    ``engine._definition.reads``)."""
    reads = frozenset({reads_of.EVERYTHING})
    try:
        if trace:
            definition, reads = reads_of.traced(model, model.definition)
        else:
            definition = model.definition()
    except GorchError as e:
        e.workflow_id = e.workflow_id or workflow_id
        raise
    except Exception as e:
        raise DefinitionError(
            f"{type(model).__name__}.definition() raised {describe_error(e)}",
            workflow_id=workflow_id,
        ) from e
    try:
        if prev is not None and isinstance(definition, Section):
            return prev.rebind(definition), reads
        return compile_definition(definition), reads
    except DefinitionError as e:
        e.workflow_id = workflow_id
        raise
