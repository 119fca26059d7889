"""definition() is built again only when a field it read changed (engine._definition.reads)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

import pytest
from pydantic import PrivateAttr, field_validator

from engine import (
    DefinitionError,
    Engine,
    If,
    ManualClock,
    MemoryStore,
    PollingResumer,
    S,
    Section,
    StateError,
    Step,
    Workflow,
    WorkflowStatus,
)
from engine._definition.compiler import build_traced
from engine._definition.reads import EVERYTHING, changed, traced
from engine._session.started import Started, StartedWorkflows

BUILDS: list[str] = []  # one entry per definition() call


class Counted(Workflow):
    """Counts its builds; its steps change ``a`` or ``b``; it may read ``a`` (or more)."""

    a: int = 0
    b: int = 0
    seen: list[bool] = []

    def definition(self) -> Section:
        BUILDS.append(type(self).__name__)
        return S(
            Step("bump b", self.bump_b),
            Step("bump b again", self.bump_b),
            self.branch(),
            Step("bump a", self.bump_a),
            self.branch("again"),
        )

    def branch(self, suffix: str = "") -> If:
        # A bool condition on ``a``: it must see every change of ``a``.
        return If(self.a > 0, Step(f"a is set {suffix}", self.saw)).Else(
            Step(f"a is unset {suffix}", self.saw_not)
        )

    def bump_a(self) -> None:
        self.a += 1

    def bump_b(self) -> None:
        self.b += 1

    def saw(self) -> None:
        self.seen = [*self.seen, True]

    def saw_not(self) -> None:
        self.seen = [*self.seen, False]


class Opaque(Counted):
    """Reads the state in a way the trace cannot follow."""

    def definition(self) -> Section:
        self.model_dump()
        return super().definition()


class Untraced(Counted):
    trace_definition_reads: ClassVar[bool] = False


class Callables(Workflow):
    """Reads no field: its only condition is a callable."""

    n: int = 0

    def definition(self) -> Section:
        BUILDS.append(type(self).__name__)
        return S(
            *(Step(f"step {i}", self.bump) for i in range(5)),
            If(lambda: self.n == 5, Step("five", self.bump)),
        )

    def bump(self) -> None:
        self.n += 1


def run(cls: type[Counted] | type[Callables]) -> tuple[Any, int]:
    BUILDS.clear()
    engine = Engine(MemoryStore(), [cls], clock=ManualClock())
    wid = engine.new_workflow(cls())
    builds = len(BUILDS)
    assert set(BUILDS) == {cls.__name__}  # while traced, type(self) is named as the class
    info = engine.get(wid)
    assert info.status is WorkflowStatus.FINISHED, info.error
    return info.state, builds


def test_conditions_see_every_change_of_a_field_they_read() -> None:
    state, builds = run(Counted)
    assert state.seen == [False, True]  # the second If saw ``a`` set by the step before it
    assert (state.a, state.b) == (1, 2)
    # new_workflow's (which the first session takes over), one after ``a`` changed; the two
    # changes of ``b`` (not read) did not cost a build.
    assert builds == 2


@pytest.mark.parametrize("cls", [Opaque, Untraced])
def test_untraceable_reads_and_the_switch_rebuild_after_any_change(cls: type[Counted]) -> None:
    state, builds = run(cls)
    assert state.seen == [False, True]
    assert builds == 1 + 5  # after each of the five steps (each changes the state)


def test_a_definition_that_reads_no_field_is_built_once_per_session() -> None:
    state, builds = run(Callables)
    assert state.n == 6  # the callable condition saw n == 5
    assert builds == 1  # new_workflow's, which its session took over


def test_the_model_keeps_its_class_and_works_normally_after_a_build() -> None:
    model = Counted(a=1)
    _, reads = traced(model, model.definition)
    assert type(model) is Counted
    assert reads == {"a"}
    assert model == Counted(a=1) and repr(model) == repr(Counted(a=1))
    model.bump_a()
    assert model.a == 2


class Broken(Workflow):
    x: int = 0

    def definition(self) -> Section:
        if self.x == 0:
            raise RuntimeError("boom")
        return S()


def test_a_failing_build_gives_the_class_back() -> None:
    model = Broken()
    with pytest.raises(RuntimeError):
        traced(model, model.definition)
    assert type(model) is Broken
    engine = Engine(MemoryStore(), [Broken], clock=ManualClock())
    with pytest.raises(DefinitionError, match="boom"):
        engine.new_workflow(Broken())


class Reader(Workflow):
    items: list[int] = [1]
    flag: bool = False
    _cache: int = PrivateAttr(0)

    def big(self) -> bool:
        return self.total > 3

    @property
    def total(self) -> int:
        return sum(self.items)

    def definition(self) -> Section:
        return S(If(self.total > 3, Step("big", self.noop)))

    def noop(self) -> None:
        pass


@pytest.mark.parametrize(
    ("read", "expected"),
    [
        (lambda m: m.total, {"items"}),  # a property: its own reads count
        (lambda m: m.noop, set()),  # a method, not called: no read
        (lambda m: str(m), {EVERYTHING}),
        (lambda m: m == m, {EVERYTHING}),
        (lambda m: list(m), {EVERYTHING}),
        (lambda m: m.__dict__, {EVERYTHING}),
        (lambda m: m.model_copy(), {EVERYTHING}),
        (lambda m: m.flag, {"flag"}),
        (lambda m: m.big(), {"items"}),  # a helper method: its own reads count
        (lambda m: vars(m), {EVERYTHING}),
        (lambda m: m._cache, {EVERYTHING}),  # a private attribute: not a field
        (lambda m: setattr(m, "flag", True), {EVERYTHING}),  # a write during the build
    ],
)
def test_what_counts_as_a_read(read: Any, expected: set[str]) -> None:
    model = Reader()
    _, reads = traced(model, lambda: read(model))
    assert reads == expected


def test_changed_compares_only_the_fields_read() -> None:
    old = {"a": 1, "b": [1]}
    assert not changed(frozenset({"a"}), old, {"a": 1, "b": [2]})
    assert changed(frozenset({"b"}), old, {"a": 1, "b": [2]})
    assert changed(frozenset({EVERYTHING}), old, {"a": 1, "b": [2]})
    assert not changed(frozenset(), old, {"a": 2, "b": []})
    assert changed(frozenset({"c"}), old, {"a": 1, "b": [2]})  # not a key: compare it all
    assert changed(frozenset(), None, old)


def test_a_first_session_takes_new_workflows_build_over_only_if_nothing_ran_since() -> None:
    store = MemoryStore()
    first = Engine(store, [Callables], clock=ManualClock(), resumer=PollingResumer())
    other = Engine(store, [Callables], clock=ManualClock(), resumer=PollingResumer())
    BUILDS.clear()
    wid = first.new_workflow(Callables())
    other.execute(wid)  # another process ran it: first's build is stale now
    assert other.get(wid).state.n == 6
    first.execute(wid)  # finished: nothing runs, and the stale build was not used
    assert first.get(wid).state.n == 6 and first.history(wid)[-1].kind != "step"
    assert len(BUILDS) == 2  # new_workflow's, and the other process's session


class Unloadable(Workflow):
    """Its state is stored as JSON but does not validate back."""

    when: Any = None

    def definition(self) -> Section:
        return S(Step("noop", lambda: None))

    @field_validator("when", mode="before")
    @classmethod
    def only_objects(cls, value: Any) -> Any:
        if isinstance(value, str):
            raise ValueError("a string cannot be loaded")
        return value


def test_new_workflow_refuses_a_state_that_would_not_load_back() -> None:
    store = MemoryStore()
    engine = Engine(store, [Unloadable], clock=ManualClock())
    with pytest.raises(StateError):
        engine.new_workflow(Unloadable(when=datetime(2026, 1, 1)), "w")  # stored as a string
    assert store.list_workflows() == []


def test_started_workflows_keep_only_the_last_ones() -> None:
    kept = StartedWorkflows(size=3)
    model = Callables()
    program, reads = build_traced(model, "w", None)
    for i in range(5):
        kept.put(f"w{i}", Started(model, program, reads, {}))
    assert [kept.take(f"w{i}") is not None for i in range(5)] == [False, False, True, True, True]
    assert kept.take("w4") is None  # taken once
