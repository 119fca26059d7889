"""A stored state comes back exactly as it went in, on every store, or is refused up front.

The state is stored by field name (never by alias) and read back by field name; every dump is
loaded back and compared before anything is written, so a value that would come back changed
is a ``StateError`` naming the field. Handler outputs and ``Return`` values are checked like
the state. Every test runs on the memory store, SQLite and PostgreSQL.
"""

from __future__ import annotations

import itertools
import os
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from enum import IntEnum, StrEnum
from typing import Any, ClassVar
from uuid import UUID

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    computed_field,
    create_model,
)

from engine import (
    Engine,
    InvalidOutput,
    InvalidResult,
    ManualClock,
    On,
    RetryPolicy,
    Return,
    S,
    Section,
    StateError,
    Step,
    Store,
    ThreadStatus,
    Wait,
    WaitForUserAction,
    Workflow,
    WorkflowNotFound,
    WorkflowStatus,
)
from tests.engine.store.conftest import open_store, pg_server, pg_url, store  # noqa: F401

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def make(backend: Store, *classes: type[Workflow], **kw: Any) -> Engine:
    return Engine(backend, list(classes), clock=ManualClock(T0), **kw)


def snapshot(engine: Engine, wid: str) -> tuple[Any, ...]:
    rec = engine.store.load(wid)
    threads = [(t.id, t.position, t.phase, t.status, t.attempts, t.error) for t in rec.threads]
    waits = sorted((w.id, w.status, w.pc) for w in engine.store.load_waits(wid))
    history = len(engine.store.history(wid))
    return rec.status, rec.state, threads, rec.pc, rec.result, rec.error, waits, history


# -- generated models -----------------------------------------------------------------------


class Color(StrEnum):
    RED = "red"
    BLUE = "blue"


class Level(IntEnum):
    LOW = 1
    HIGH = 2


class Inner(BaseModel):
    """A nested model with an alias, a computed field and a private attribute."""

    x: int = Field(0, alias="X")
    when: datetime | None = None
    _note: str = PrivateAttr("")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def double(self) -> int:
        return self.x * 2


class Picky(BaseModel):
    """A nested model that forbids extra keys and has a computed field."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    n: int = Field(0, validation_alias="N", serialization_alias="nn")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def label(self) -> str:
        return f"n={self.n}"


NEXT: dict[str, dict[str, Any]] = {}
"""What the step of each generated class sets, by class name."""


class Base(Workflow):
    """A step that sets the fields to new values, then a wait, so a callback re-checkpoints."""

    _seen: int = PrivateAttr(0)
    FIELDS: ClassVar[tuple[str, ...]] = ()

    @computed_field  # type: ignore[prop-decorator]
    @property
    def size(self) -> int:
        return len(type(self).model_fields)

    def definition(self) -> Section:
        return S(
            Step("touch", self.touch, retry=RetryPolicy(max_attempts=1)),
            Wait("hold", On("go", WaitForUserAction(approve=self.noop, deny=print))),
            Return(),
        )

    def touch(self) -> None:
        for name, value in NEXT[type(self).__name__].items():
            setattr(self, name, value)  # as a step does: no validation
        self._seen += 1

    def noop(self) -> None:
        pass


class Allowing(Base):
    model_config = ConfigDict(extra="allow")


class Forbidding(Base):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True)


BASES = [Base, Allowing, Forbidding]

TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=8)
ODD = timezone(timedelta(seconds=3661))  # +01:01:01: JSON's offsets have no seconds
ZONES = [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8)), ODD]
SAFE_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=6,
).filter(lambda v: not _has_inf(v))
ANY_VALUE = SAFE_JSON | st.tuples(st.integers(), TEXT)  # a tuple comes back a list


def _has_inf(v: Any) -> bool:
    if isinstance(v, float):
        return v in (float("inf"), float("-inf"))
    if isinstance(v, dict):
        return any(_has_inf(x) for x in v.values())
    return isinstance(v, list) and any(_has_inf(x) for x in v)


def _has_tuple(v: Any) -> bool:
    """Whether an untyped value would not come back equal: a tuple comes back a list, and
    PostgreSQL gives a float of 1e16 or more back as an integer, which is not exactly it."""
    if isinstance(v, tuple):
        return True
    if isinstance(v, float):
        return abs(v) >= 1e16 and int(Decimal(repr(v))) != v
    if isinstance(v, dict):
        return any(_has_tuple(x) for x in v.values())
    return isinstance(v, list) and any(_has_tuple(x) for x in v)


def _bad_bytes(b: bytes) -> bool:
    try:
        b.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return b"\x00" in b


@dataclass(frozen=True)
class Kind:
    """A field kind: its declaration, its values, and which values cannot come back as is."""

    field: Callable[[], tuple[Any, Any]]
    values: st.SearchStrategy[Any]
    lossy: Callable[[Any], bool] = lambda _: False


INNERS = st.builds(
    lambda x, when: Inner.model_validate({"X": x, "when": when}),
    st.integers(),
    st.none() | st.datetimes(),
)
KINDS: dict[str, Kind] = {
    "aliased": Kind(lambda: (str, Field("", alias="Aliased")), TEXT),
    "split": Kind(
        lambda: (int, Field(0, validation_alias="In", serialization_alias="Out")), st.integers()
    ),
    "choices": Kind(
        lambda: (int, Field(0, validation_alias=AliasChoices("c1", "c2"))), st.integers()
    ),
    "number": Kind(lambda: (float, 0.0), st.floats(allow_nan=False, allow_infinity=False)),
    "flag": Kind(lambda: (bool, False), st.booleans()),
    "naive": Kind(lambda: (datetime, T0), st.datetimes()),
    "aware": Kind(
        lambda: (datetime, T0),
        st.datetimes(timezones=st.sampled_from(ZONES)),
        lambda d: d.utcoffset().seconds % 60 != 0,
    ),
    "day": Kind(lambda: (date, date(2025, 1, 1)), st.dates()),
    "money": Kind(
        lambda: (Decimal, Decimal(0)), st.decimals(allow_nan=False, allow_infinity=False)
    ),
    "ident": Kind(lambda: (UUID, UUID(int=0)), st.uuids()),
    "color": Kind(lambda: (Color, Color.RED), st.sampled_from(Color)),
    "level": Kind(lambda: (Level, Level.LOW), st.sampled_from(Level)),
    "pair": Kind(lambda: (tuple[int, str], (0, "")), st.tuples(st.integers(), TEXT)),
    "many": Kind(lambda: (tuple[int, ...], ()), st.lists(st.integers(), max_size=3).map(tuple)),
    "tags": Kind(lambda: (set[str], set()), st.sets(TEXT, max_size=3)),
    "frozen": Kind(lambda: (frozenset[int], frozenset()), st.frozensets(st.integers(), max_size=3)),
    "blob": Kind(lambda: (bytes, b""), st.binary(max_size=4), _bad_bytes),
    "maybe": Kind(lambda: (int | None, None), st.none() | st.integers()),
    "either": Kind(lambda: (int | str, 0), st.integers() | TEXT),
    "inner": Kind(lambda: (Inner, Inner()), INNERS),
    "inners": Kind(lambda: (list[Inner], []), st.lists(INNERS, max_size=2)),
    "picky": Kind(lambda: (Picky, Picky()), st.integers().map(lambda n: Picky(n=n))),
    "by_key": Kind(lambda: (dict[int, str], {}), st.dictionaries(st.integers(), TEXT, max_size=3)),
    "anything": Kind(lambda: (Any, None), ANY_VALUE, _has_tuple),
}
_serial = itertools.count()


def generated(base: type[Base], names: list[str]) -> type[Base]:
    fields: Any = {name: KINDS[name].field() for name in names}
    cls: type[Base] = create_model(f"Gen{next(_serial)}", __base__=base, **fields)
    return cls


def build(cls: type[Base], values: dict[str, Any], extras: dict[str, Any]) -> Base:
    """The model holding exactly ``values`` (by field name) and ``extras``, unvalidated as a
    step would leave it."""
    model = cls()
    for name, value in {**values, **extras}.items():
        setattr(model, name, value)
    return model


def lossy(values: dict[str, Any], extras: dict[str, Any]) -> list[str]:
    bad = [n for n, v in values.items() if KINDS[n].lossy(v)]
    return bad + [n for n, v in extras.items() if _has_tuple(v)]


def named(field: str, message: str) -> bool:
    """Whether ``message`` names ``field``, alone (``'anything'``) or with the path inside it
    where the value that cannot come back sits (``'anything[0]'``, ``"inner['k']"``)."""
    return re.search(rf"""['"]{re.escape(field)}(\[[^\]]*\]|\.\w+)*['"]""", message) is not None


ROUNDTRIP = settings(
    max_examples=int(os.environ.get("RT_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@ROUNDTRIP
@given(data=st.data())
def test_every_state_comes_back_exactly_or_is_refused_naming_the_field(
    store: Store,  # noqa: F811
    data: st.DataObject,
) -> None:
    base = data.draw(st.sampled_from(BASES))
    names = data.draw(st.lists(st.sampled_from(sorted(KINDS)), min_size=1, max_size=6,
                               unique=True))  # fmt: skip
    cls = generated(base, names)
    values = {n: st.fixed_dictionaries({n: KINDS[n].values}) for n in names}

    def draw_state() -> tuple[dict[str, Any], dict[str, Any]]:
        fields = {n: data.draw(values[n])[n] for n in names}
        extra = {}
        if base is Allowing:
            extra = data.draw(st.dictionaries(st.sampled_from(["e1", "e2"]), ANY_VALUE))
        return fields, extra

    first, first_extra = draw_state()
    second, second_extra = draw_state()
    NEXT[cls.__name__] = {**second, **second_extra}
    engine, wid = make(store, cls), uuid.uuid4().hex
    state = build(cls, first, first_extra)

    refused = lossy(first, first_extra)
    if refused:  # up front: nothing is stored
        with pytest.raises(StateError) as err:
            engine.new_workflow(state, wid)
        assert any(named(n, err.value.message) for n in refused), err.value.message
        with pytest.raises(WorkflowNotFound):
            engine.get(wid)
        return
    engine.new_workflow(state, wid)  # the step runs at once (InlineResumer)
    info = engine.get(wid)
    failed = lossy(second, second_extra)
    if failed:  # the step's values would not come back: it fails, the state is as stored
        error = info.threads[0].error or ""
        assert info.threads[0].status is ThreadStatus.FAILED, info.threads
        assert error.startswith("StateError") and any(named(n, error) for n in failed), error
        assert info.state == state
        return
    extras = {**first_extra, **second_extra}  # the step sets its extras, keeps the others
    expected = build(cls, second, extras)
    assert info.status is WorkflowStatus.WAITING, info.threads
    assert info.state == expected
    assert info.state.size == len(cls.model_fields)  # a computed field, computed afresh
    stored = store.load(wid).state
    assert set(stored) == set(cls.model_fields) | set(extras)  # by name, not computed
    engine.on_callback(wid, "go", {"approved": True})  # a checkpoint of the state as loaded
    again = engine.get(wid)
    assert again.status is WorkflowStatus.FINISHED
    assert again.state == expected
    assert store.load(wid).state.keys() == stored.keys()  # a set's JSON order may differ


# -- the cases a new user meets first -------------------------------------------------------


class Named(Workflow):
    name: str = Field("nobody", alias="Name")
    count: int = 0

    def definition(self) -> Section:
        return S(
            Step("count", self.bump),
            Wait("hold", On("go", WaitForUserAction(approve=self.bump, deny=print))),
            Return(self.name),
        )

    def bump(self) -> None:
        self.count += 1


def test_an_aliased_field_keeps_its_value(store: Store) -> None:  # noqa: F811
    engine = make(store, Named)
    wid = engine.new_workflow(Named(Name="ana"))
    assert store.load(wid).state == {"name": "ana", "count": 1}  # by field name
    assert engine.get(wid).state.name == "ana"
    engine.update_state(wid, {"name": "bo", "count": 1}, "op")  # keyed by field name
    assert engine.get(wid).state.name == "bo"
    before = snapshot(engine, wid)
    with pytest.raises(StateError, match=r"'Name', which Named does not declare.*not alias"):
        engine.update_state(wid, {"Name": "cy", "count": 1}, "op")  # would be dropped
    assert snapshot(engine, wid) == before
    engine.on_callback(wid, "go", {"approved": True})
    info = engine.get(wid)
    assert (info.state.name, info.state.count, info.result) == ("bo", 2, "bo")


class Excluding(Workflow):
    token: str = Field("", exclude=True)

    def definition(self) -> Section:
        return S()


class Holder(BaseModel):
    secret: int = Field(0, exclude=True)


class NestedExcluding(Workflow):
    items: list[Holder] = []

    def definition(self) -> Section:
        return S()


@pytest.mark.parametrize(
    ("cls", "field"), [(Excluding, "token"), (NestedExcluding, "items.secret")]
)
def test_a_field_left_out_of_the_dump_is_refused_at_registration(
    store: Store,  # noqa: F811
    cls: type[Workflow],
    field: str,
) -> None:
    with pytest.raises(StateError, match=rf"field {field!r} is excluded.*PrivateAttr"):
        make(store, cls)
    engine = make(store)
    with pytest.raises(StateError, match=repr(field)):
        engine.new_workflow(cls(), "x")
    assert store.list_workflows(limit=10) == []


class Totalled(Workflow):
    model_config = ConfigDict(extra="forbid")
    items: list[int] = []
    _scratch: list[int] = PrivateAttr(default_factory=list)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def total(self) -> int:
        return sum(self.items)

    def definition(self) -> Section:
        return S(
            Step("add", self.add),
            Wait("hold", On("go", WaitForUserAction(approve=self.add, deny=print))),
        )

    def add(self) -> None:
        self._scratch.append(len(self.items))  # per session: not stored
        self.items.append(len(self._scratch))


def test_computed_fields_are_not_stored_and_private_attributes_are_per_session(
    store: Store,  # noqa: F811
) -> None:
    engine = make(store, Totalled)
    wid = engine.new_workflow(Totalled(items=[5]))
    assert store.load(wid).state == {"items": [5, 1]}
    rec = store.acquire(wid, "old", now=T0, until=T0 + timedelta(minutes=1))
    rec.state = {"items": [5, 1], "total": 6}  # as earlier versions stored it
    store.checkpoint(rec, owner="old", waits=None, history=[])
    store.release(wid, "old")
    info = engine.get(wid)  # loads despite extra="forbid": a computed field is not state
    assert (info.state.items, info.state.total, info.state._scratch) == ([5, 1], 6, [])
    engine.on_callback(wid, "go", {"approved": True})  # a new session: _scratch starts empty
    assert engine.get(wid).state.items == [5, 1, 1]


# -- handler outputs and Return values ------------------------------------------------------


OUTPUTS: dict[str, Any] = {
    "NaN": float("nan"),
    "an infinity": {"x": [float("inf")]},
    "NUL": "a\x00b",
    "surrogate": ["\ud800"],
    "not JSON": object(),
    "too big": "x" * 5_000,
}


class Answering(Workflow):
    reply: Any = None
    answered: bool = False

    def definition(self) -> Section:
        return S(
            Wait("ask", On("go", WaitForUserAction(approve=self.answer, deny=print))),
            Return(self.reply),
        )

    def answer(self) -> Any:
        self.answered = True
        return OUTPUTS.get(str(self.reply), self.reply)


@pytest.mark.parametrize("case", list(OUTPUTS))
def test_a_handler_output_no_store_can_hold_is_refused_and_writes_nothing(
    store: Store,  # noqa: F811
    case: str,
) -> None:
    engine = make(store, Answering, max_state_bytes=4_000)
    wid = engine.new_workflow(Answering(reply=case))
    before = snapshot(engine, wid)
    with pytest.raises(InvalidOutput) as err:
        engine.on_callback(wid, "go", {"approved": True})
    assert err.value.reason == "invalid_output" and err.value.event == "go"
    assert err.value.workflow_id == wid and err.value.statement == "ask"
    assert snapshot(engine, wid) == before
    assert engine.get(wid).state.answered is False


def test_a_handler_output_that_is_json_is_returned_and_recorded(store: Store) -> None:  # noqa: F811
    engine = make(store, Answering)
    wid = engine.new_workflow(Answering(reply={"ok": [1, 2.5, "é"]}))
    assert engine.on_callback(wid, "go", {"approved": True}) == {"ok": [1, 2.5, "é"]}
    [callback] = [h for h in engine.history(wid) if h.kind == "callback"]
    assert callback.detail["output"] == {"ok": [1, 2.5, "é"]}
    assert engine.get(wid).result == {"ok": [1, 2.5, "é"]}


class Returning(Workflow):
    case: str = ""

    def definition(self) -> Section:
        if self.case == "error NUL":
            return S(Step("work", self.work), Return(error="bad \x00"))
        return S(Step("work", self.work), Return(OUTPUTS.get(self.case, self.case)))

    def work(self) -> None:
        pass


@pytest.mark.parametrize("case", list(OUTPUTS))
def test_a_return_value_no_store_can_hold_fails_the_thread(
    store: Store,  # noqa: F811
    case: str,
) -> None:
    engine = make(store, Returning, max_state_bytes=4_000)
    wid = engine.new_workflow(Returning(case=case))
    info = engine.get(wid)
    assert info.status is WorkflowStatus.FAILED
    assert (info.threads[0].error or "").startswith(InvalidResult.__name__), info.threads[0]
    assert (info.result, info.error) == (None, None)
    kinds = [h.kind for h in engine.history(wid)]
    assert "finished" not in kinds and "return" not in kinds
    engine.update_state(wid, {"case": "fine"}, "op")  # the Return is evaluated again
    engine.retry(wid, "op")
    info = engine.get(wid)
    assert (info.status, info.result) == (WorkflowStatus.FINISHED, "fine")


def test_a_return_error_text_is_recorded_with_nul_escaped(store: Store) -> None:  # noqa: F811
    engine = make(store, Returning)
    wid = engine.new_workflow(Returning(case="error NUL"))
    info = engine.get(wid)  # a description, like a step's error: not refused
    assert (info.status, info.error) == (WorkflowStatus.FINISHED, "bad \\x00")
