"""Bad input: malformed, oversized, unknown; drifted state; broken definitions; stuck steps.

Each case ends in a ``GorchError`` with a useful message and leaves the stored workflow as it
was (state, threads, waits, history, status), unless the documented behaviour is to record a
failure: a step that times out, or that makes a state no store can hold, is a failed attempt.
Every test runs on the memory store, SQLite and PostgreSQL; the fuzzed callbacks also check
that every backend gives the same answer.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from engine import (
    CallbackRejected,
    DefinitionError,
    Engine,
    Event,
    Go,
    GorchError,
    If,
    InvalidInput,
    InvalidOperation,
    ManualClock,
    MemoryStore,
    On,
    RetryPolicy,
    Return,
    S,
    Section,
    StateError,
    Step,
    StepTimeout,
    Store,
    ThreadStatus,
    Wait,
    WaitForUserAction,
    Workflow,
    WorkflowNotFound,
    WorkflowStatus,
    check_compatibility,
    current_attempt,
    validate,
)
from engine._timeouts import call_with_timeout
from tests.engine.store.conftest import open_store, pg_server, pg_url, store  # noqa: F401

T0 = datetime(2025, 1, 1, tzinfo=UTC)
FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
ONCE = RetryPolicy(max_attempts=1)


def make(backend: Store, *classes: type[Workflow], **kw: Any) -> Engine:
    return Engine(backend, list(classes), clock=ManualClock(T0), **kw)


def snapshot(engine: Engine, wid: str) -> tuple[Any, ...]:
    """Everything stored about a workflow that a rejected input must leave alone."""
    rec = engine.store.load(wid)
    threads = [
        (t.id, t.go, t.position, t.phase, t.status, t.event, t.attempts, t.retry_at, t.error)
        for t in rec.threads
    ]
    waits = sorted(
        (w.id, w.thread_id, w.wait, w.event, w.status, w.pc) for w in engine.store.load_waits(wid)
    )
    history = len(engine.store.history(wid))
    return rec.type, rec.status, rec.state, threads, rec.pc, rec.result, rec.error, waits, history


def tamper(backend: Store, wid: str, state: dict[str, Any]) -> None:
    """Overwrite the stored state as a hand-edited database row would, bypassing the model."""
    rec = backend.acquire(wid, "tamper", now=T0, until=T0 + timedelta(minutes=1))
    rec.state = state
    backend.checkpoint(rec, owner="tamper", waits=None, history=[])
    backend.release(wid, "tamper")


# -- workflows ------------------------------------------------------------------------------


class Order(BaseModel):
    sku: str = Field(min_length=1, max_length=40)
    qty: int = Field(ge=1, le=1000)
    price: float = 0.0
    note: str = ""
    tags: list[str] = []
    meta: dict[str, Any] = {}


class Shop(Workflow):
    orders: list[dict[str, Any]] = []
    last_price: float = 0.0
    approved: bool = False

    def definition(self) -> Section:
        return S(
            Wait("order", On("order", Event(Order, self.take))),
            Wait("approval", On("decision", WaitForUserAction(approve=self.ok, deny=self.no))),
            Return("done"),
        )

    def take(self, order: Order) -> int:
        self.orders.append(order.model_dump(mode="json"))
        self.last_price = order.price
        return len(self.orders)

    def ok(self) -> None:
        self.approved = True

    def no(self, reason: str) -> None:
        self.approved = False


class Ledger(Workflow):
    amount: int
    currency: str = "EUR"
    notes: list[str] = []

    def definition(self) -> Section:
        return S(
            Wait("approval", On("decision", WaitForUserAction(approve=self.book, deny=print))),
            Return(self.amount),
        )

    def book(self) -> None:
        self.notes.append("booked")


# -- fuzzed callback input ------------------------------------------------------------------

LEAF = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
JSONISH = st.recursive(
    LEAF,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=10,
)
ORDERISH = st.fixed_dictionaries(
    {"sku": st.text(max_size=50) | JSONISH, "qty": st.integers(-3, 1003) | JSONISH},
    optional={
        "note": st.text(max_size=30) | JSONISH,
        "tags": st.lists(st.text(max_size=5), max_size=3) | JSONISH,
        "meta": JSONISH,
        "surprise": JSONISH,
    },
)


def nested(depth: int) -> dict[str, Any]:
    order: dict[str, Any] = {"sku": "deep", "qty": 1, "meta": {}}
    inner = order["meta"]
    for _ in range(depth):
        inner["m"] = {}
        inner = inner["m"]
    return order


def cyclic(_: int) -> dict[str, Any]:
    order: dict[str, Any] = {"sku": "loop", "qty": 1, "meta": {}}
    order["meta"]["self"] = order
    return order


PAYLOADS = st.one_of(
    ORDERISH,
    JSONISH,
    ORDERISH.map(lambda o: json.dumps(o, default=str)),  # JSON text, NaN and all
    ORDERISH.map(lambda o: json.dumps(o, default=str).encode("utf-8", "surrogatepass")),
    st.text(max_size=30),  # malformed JSON text
    st.binary(max_size=30),  # and bytes, often not even UTF-8
    st.integers(100, 3000).map(nested),
    st.integers(0, 1).map(cyclic),
    st.integers(100, 5000).map(lambda n: {"sku": "big", "qty": 1, "note": "n" * n}),
    st.sampled_from([object(), {1, 2}, Order, float("nan"), b"\xff"]),
)


@FUZZ
@given(payload=PAYLOADS)
def test_fuzzed_callback_input_is_accepted_or_rejected_alike_everywhere(
    store: Store,  # noqa: F811
    payload: Any,
) -> None:
    answers = []
    for backend in (MemoryStore(), store):
        engine = make(backend, Shop, max_input_bytes=2_000)
        wid = engine.new_workflow(Shop())
        before = snapshot(engine, wid)
        try:
            assert engine.on_callback(wid, "order", payload, actor="fuzz") == 1
        except GorchError as e:
            assert snapshot(engine, wid) == before, e
            assert e.workflow_id == wid and e.message
            answers.append(type(e).__name__)
        else:
            info = engine.get(wid)
            assert len(info.state.orders) == 1 and info.status is WorkflowStatus.WAITING
            assert [w.event for w in engine.pending_waits(wid)] == ["decision"]
            answers.append("accepted")
    assert answers[0] == answers[1]  # the memory store answers as the database does
    assert "StoreError" not in answers


@FUZZ
@given(
    wid=st.text(max_size=250),
    event=st.text(max_size=20) | st.just("order"),
    thread=st.none() | st.just("main") | st.text(max_size=10),
    pc=st.none() | st.integers(-2, 5),
)
def test_unknown_ids_events_threads_and_stale_pcs_change_nothing(
    store: Store,  # noqa: F811
    wid: str,
    event: str,
    thread: str | None,
    pc: int | None,
) -> None:
    engine = make(store, Shop)
    real = engine.new_workflow(Shop())
    before, count = snapshot(engine, real), len(engine.list(limit=1000))
    unknown = "nope-" + wid
    calls: list[Callable[[], object]] = [
        lambda: engine.get(unknown),
        lambda: engine.execute(unknown),
        lambda: engine.step(unknown),
        lambda: engine.on_callback(unknown, event, {"sku": "a", "qty": 1}),
        lambda: engine.history(unknown),
        lambda: engine.pending_waits(unknown),
        lambda: engine.cancel(unknown, "op"),
        lambda: engine.retry(unknown, "op"),
        lambda: engine.goto(unknown, "main", "order", "op"),
        lambda: engine.update_state(unknown, {}, "op"),
    ]
    for call in calls:
        with pytest.raises(WorkflowNotFound):
            call()
    wait_pc = engine.pending_waits(real)[0].pc
    assume(not (event == "order" and thread in (None, "main") and pc in (None, wait_pc)))
    with pytest.raises(CallbackRejected) as err:
        engine.on_callback(real, event, {"sku": "a", "qty": 1}, thread=thread, pc=pc)
    assert err.value.reason in ("no_wait", "stale_pc") and err.value.workflow_id == real
    with pytest.raises(InvalidOperation):
        engine.goto(real, thread or "main", "nowhere-" + event, "op")
    assert snapshot(engine, real) == before
    assert len(engine.list(limit=1000)) == count  # nothing was created on the way


def test_ids_and_names_no_store_can_hold_are_refused_before_the_database(
    store: Store,  # noqa: F811
) -> None:
    engine = make(store, Shop)
    real = engine.new_workflow(Shop())
    before = snapshot(engine, real)
    for bad in ("a\x00b", "\ud800", "x" * 201, "", 7, None):
        with pytest.raises(WorkflowNotFound):
            engine.get(bad)  # type: ignore[arg-type]
        with pytest.raises(WorkflowNotFound):
            engine.on_callback(bad, "order", {"sku": "a", "qty": 1})  # type: ignore[arg-type]
        with pytest.raises(WorkflowNotFound):
            engine.history(bad)  # type: ignore[arg-type]
        if bad is not None:  # None asks for a fresh id
            with pytest.raises(InvalidOperation, match="without NUL or unpaired surrogates"):
                engine.new_workflow(Shop(), id=bad)  # type: ignore[arg-type]
    for text in ("a\x00b", "\udfff"):
        with pytest.raises(InvalidInput, match="actor"):
            engine.on_callback(real, "order", {"sku": "a", "qty": 1}, actor=text)
        with pytest.raises(InvalidOperation, match="actor and reason must be text"):
            engine.cancel(real, text, reason=text)
        with pytest.raises(InvalidOperation, match="search"):
            engine.list(search=text)
    assert snapshot(engine, real) == before
    assert [w.id for w in engine.list()] == [real]


# -- oversized and unstorable callback input ------------------------------------------------

UNSTORABLE = {
    "holds NaN": {"sku": "a", "qty": 1, "price": float("nan")},
    "holds -Infinity": {"sku": "a", "qty": 1, "meta": {"x": float("-inf")}},
    "NUL character": {"sku": "a", "qty": 1, "note": "a\x00b"},
    "unpaired surrogate": {"sku": "a", "qty": 1, "note": "\ud800"},
    "nested too deeply": nested(400),
    "circular reference": cyclic(0),
    "not valid UTF-8": b'{"sku": "\xff", "qty": 1}',
}


@pytest.mark.parametrize("why", list(UNSTORABLE))
def test_input_no_store_could_hold_is_invalid_everywhere(
    store: Store,  # noqa: F811
    why: str,
) -> None:
    engine = make(store, Shop)
    wid = engine.new_workflow(Shop())
    before = snapshot(engine, wid)
    with pytest.raises(InvalidInput, match="cannot be stored as JSON") as err:
        engine.on_callback(wid, "order", UNSTORABLE[why])
    assert why in err.value.message
    assert (err.value.workflow_id, err.value.event, err.value.reason) == (
        wid,
        "order",
        "invalid_input",
    )
    assert snapshot(engine, wid) == before


def test_oversized_input_is_refused_at_the_documented_limit(store: Store) -> None:  # noqa: F811
    engine = make(store, Shop)
    assert engine.max_input_bytes == 1_000_000  # the documented default
    wid = engine.new_workflow(Shop())
    before = snapshot(engine, wid)
    with pytest.raises(InvalidInput, match=r"over the limit of 1000000 \(Engine\(max_input_bytes"):
        engine.on_callback(wid, "order", {"sku": "a", "qty": 1, "note": "x" * 1_000_001})
    assert snapshot(engine, wid) == before
    small = make(store, Shop, max_input_bytes=5_000)
    with pytest.raises(InvalidInput, match="over the limit of 5000"):
        small.on_callback(wid, "order", {"sku": "a", "qty": 1, "note": "x" * 6_000})
    assert snapshot(engine, wid) == before
    unlimited = make(store, Shop, max_input_bytes=None)
    assert unlimited.on_callback(wid, "order", {"sku": "a", "qty": 1, "note": "x" * 6_000}) == 1


# -- state that no longer fits the model ----------------------------------------------------

DRIFT = {
    "required field removed": ({"currency": "EUR", "notes": []}, "amount: Field required"),
    "required field renamed": ({"amt": 5, "currency": "EUR", "notes": []}, "amount"),
    "field with a default renamed": ({"amount": 5, "curency": "USD", "notes": []}, "'curency'"),
    "field the model dropped": ({"amount": 5, "legacy": True, "notes": []}, "'legacy'"),
    "wrong type": ({"amount": "lots", "currency": "EUR", "notes": []}, "amount"),
    "wrong nested type": ({"amount": 5, "currency": "EUR", "notes": [1, {}]}, "notes.1"),
    "not an object": ({"amount": [5]}, "amount"),
}


@pytest.mark.parametrize("case", list(DRIFT))
def test_stored_state_that_no_longer_fits_is_a_state_error_and_nothing_changes(
    store: Store,  # noqa: F811
    case: str,
) -> None:
    engine = make(store, Ledger)
    wid = engine.new_workflow(Ledger(amount=5))
    state, match = DRIFT[case]
    tamper(store, wid, state)
    before = snapshot(engine, wid)
    info = engine.get(wid)  # shown, not raised: an operator can repair it (update_state)
    assert info.state is None and re.search(match, info.state_error or ""), info.state_error
    actions: list[Callable[[], object]] = [
        lambda: engine.execute(wid),
        lambda: engine.step(wid),
        lambda: engine.on_callback(wid, "decision", {"approved": True}, actor="ana"),
        lambda: engine.cancel(wid, "op"),
        lambda: engine.goto(wid, "main", "approval", "op"),
    ]
    for act in actions:
        with pytest.raises(StateError, match=match) as err:
            act()
        assert err.value.workflow_id == wid
    assert snapshot(engine, wid) == before
    assert [w.event for w in engine.pending_waits(wid)] == ["decision"]  # still visible
    report = check_compatibility(Ledger, store)  # `gorch check` names it before a deploy
    assert [(p.workflow_id, p.kind) for p in report.problems] == [(wid, "state")]


SAFE_TEXT = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"))
SAFE_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | SAFE_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(SAFE_TEXT, inner, max_size=3),
    max_leaves=10,
)  # JSON every store holds, as a hand-edited row could be


@FUZZ
@given(field=st.sampled_from(["amount", "currency", "notes"]), value=SAFE_JSON)
def test_a_stored_field_of_any_value_loads_exactly_when_the_model_accepts_it(
    store: Store,  # noqa: F811
    field: str,
    value: Any,
) -> None:
    engine = make(store, Ledger)
    wid = engine.new_workflow(Ledger(amount=5))
    state = {"amount": 5, "currency": "EUR", "notes": [], field: value}
    tamper(store, wid, state)
    # As the store hands it back: PostgreSQL's jsonb writes 9.223372036854776e+18 back as the
    # integer 9223372036854776000, which an int field takes.
    stored = store.load(wid).state
    try:
        fits = bool(Ledger.model_validate_json(json.dumps(stored)))
    except ValidationError:
        fits = False
    before = snapshot(engine, wid)
    try:
        engine.execute(wid)
    except StateError:
        assert not fits
        assert snapshot(engine, wid) == before
    else:
        assert fits


def test_a_model_can_drop_or_migrate_old_fields_on_purpose(store: Store) -> None:  # noqa: F811
    class Lenient(Ledger):
        type_name = "Ledger"
        model_config = ConfigDict(extra="ignore")

    class Migrating(Ledger):
        type_name = "Ledger"

        @model_validator(mode="before")
        @classmethod
        def renamed(cls, data: Any) -> Any:
            if isinstance(data, dict) and "amt" in data:
                data = dict(data)
                data["amount"] = data.pop("amt")
            return data

    wid = make(store, Ledger).new_workflow(Ledger(amount=5))
    tamper(store, wid, {"amount": 5, "legacy": True})
    assert make(store, Lenient).get(wid).state.amount == 5
    tamper(store, wid, {"amt": 7})
    assert make(store, Migrating).get(wid).state.amount == 7


# -- definitions that raise, recurse or nest too deeply -------------------------------------


class Flaky(Workflow):
    broken: str = ""
    depth: int = 0

    def definition(self) -> Section:
        if self.broken == "raise":
            raise KeyError("missing config")
        if self.broken == "recurse":
            return self.definition()
        if self.broken == "type":
            return [Step("a", print)]  # type: ignore[return-value]
        if self.broken == "gorch":
            raise InvalidOperation("refused by the definition itself")
        return S(
            Wait("approval", On("decision", WaitForUserAction(approve=print, deny=print))),
            nest(self.depth),
            Return(),
        )


def nest(depth: int) -> Section:
    inner: Section = S(Step("deepest", lambda: None))
    for i in range(depth):
        inner = S(inner) if i % 2 else S(If(True, inner))
    return inner


BROKEN = {
    "raise": (DefinitionError, r"Flaky.definition\(\) raised KeyError: 'missing config'"),
    "recurse": (DefinitionError, r"Flaky.definition\(\) raised RecursionError"),
    "type": (DefinitionError, "definition\\(\\) must return S\\(...\\), not list"),
    "gorch": (InvalidOperation, "refused by the definition itself"),
}


@pytest.mark.parametrize("how", list(BROKEN))
def test_a_definition_that_raises_or_recurses(store: Store, how: str) -> None:  # noqa: F811
    engine = make(store, Flaky)
    error, match = BROKEN[how]
    with pytest.raises(error, match=match):
        engine.new_workflow(Flaky(broken=how), id="never")
    with pytest.raises(WorkflowNotFound):
        engine.get("never")  # nothing was stored
    wid = engine.new_workflow(Flaky())  # then the state turns the definition bad
    tamper(store, wid, {"broken": how, "depth": 0})
    before = snapshot(engine, wid)
    for act in (
        lambda: engine.execute(wid),
        lambda: engine.on_callback(wid, "decision", {"approved": True}),
        lambda: engine.goto(wid, "main", "approval", "op"),
    ):
        with pytest.raises(error, match=match) as err:
            act()
        assert err.value.workflow_id == wid
    assert snapshot(engine, wid) == before


def test_very_deep_nesting_is_a_definition_error_not_a_crash(store: Store) -> None:  # noqa: F811
    engine = make(store, Flaky)
    for depth in (300, 5_000):
        with pytest.raises(DefinitionError, match="nested deeper than 200 levels"):
            validate(nest(depth))
        with pytest.raises(DefinitionError, match="nested deeper"):
            engine.new_workflow(Flaky(depth=depth), id=f"deep-{depth}")
        with pytest.raises(WorkflowNotFound):
            engine.get(f"deep-{depth}")
    wid = engine.new_workflow(Flaky(depth=100))  # deep, but within the limit: it runs
    engine.on_callback(wid, "decision", {"approved": True})
    assert engine.get(wid).status is WorkflowStatus.FINISHED
    wid = engine.new_workflow(Flaky(depth=10))
    tamper(store, wid, {"broken": "", "depth": 5_000})  # a state that deepens the definition
    before = snapshot(engine, wid)
    with pytest.raises(DefinitionError, match="nested deeper"):
        engine.execute(wid)
    assert snapshot(engine, wid) == before


# -- steps that never return ----------------------------------------------------------------


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    """What stuck steps wait on; opened at the end so no abandoned thread outlives the test."""
    ev = threading.Event()
    yield ev
    ev.set()
    for t in threading.enumerate():
        if t.name.startswith("gorch-step-"):
            t.join(5)


GATES: dict[str, threading.Event] = {}
RAN_ON: list[str] = []


class Stuck(Workflow):
    n: int = 0
    log: list[str] = []
    attempts: int = 1

    def definition(self) -> Section:
        return S(
            Go("other", S(Step("o1", self.note), Step("o2", self.note))),
            Step("hang", self.hang, timeout=timedelta(milliseconds=200), retry=self.policy()),
            Step("after", lambda: self.log.append("after")),
            Return(self.n),
        )

    def note(self) -> None:
        self.log.append(f"o{len(self.log) + 1}")

    def policy(self) -> RetryPolicy:
        return RetryPolicy(max_attempts=self.attempts)

    def hang(self) -> None:
        RAN_ON.append(threading.current_thread().name)
        self.n += 1
        self.log.append(f"hang {current_attempt()}")
        if current_attempt() == 1:
            GATES["gate"].wait()
            self.n += 1000  # the abandoned attempt, long after its session ended
            self.log.append("abandoned attempt finished")


def test_a_step_that_never_returns_times_out_and_is_retried(
    store: Store,  # noqa: F811
    gate: threading.Event,
) -> None:
    GATES["gate"] = gate
    RAN_ON.clear()
    engine = make(store, Stuck)
    started = time.monotonic()
    wid = engine.new_workflow(Stuck(attempts=2))
    assert time.monotonic() - started < 5
    info = engine.get(wid)
    main = info.threads[0]
    assert (info.status, main.position, main.attempts) == (WorkflowStatus.RUNNING, "hang", 1)
    assert main.error is not None and main.error.startswith("StepTimeout: step 'hang' did not")
    assert "within 0.2 s" in main.error and "test_bad_input.py" in main.error  # where it hung
    # The stuck attempt's changes are not kept; the goroutine went on in a fresh session.
    assert info.state.n == 0 and info.state.log == ["o1", "o2"]
    errors = [h for h in engine.history(wid) if h.kind == "step_error"]
    assert len(errors) == 1 and "StepTimeout" in errors[0].detail["error"]
    stuck = snapshot(engine, wid)
    gate.set()  # the abandoned attempt finishes now, in the background, and changes its model
    for t in threading.enumerate():
        if t.name.startswith("gorch-step-"):
            t.join(5)
    assert snapshot(engine, wid) == stuck  # ... which is not the stored one
    engine.clock.advance(timedelta(seconds=2))  # type: ignore[attr-defined]
    engine.run_due()
    info = engine.get(wid)
    assert info.status is WorkflowStatus.FINISHED and info.result == 1
    assert info.state.log == ["o1", "o2", "hang 2", "after"]
    assert RAN_ON[0].startswith("gorch-step-hang")


def test_out_of_attempts_a_timeout_fails_the_thread(
    store: Store,  # noqa: F811
    gate: threading.Event,
) -> None:
    GATES["gate"] = gate
    engine = make(store, Stuck)
    wid = engine.new_workflow(Stuck(attempts=1))
    info = engine.get(wid)
    assert info.status is WorkflowStatus.FAILED
    assert info.threads[0].status is ThreadStatus.FAILED
    assert "StepTimeout" in (info.threads[0].error or "")
    failed = [h for h in engine.history(wid) if h.kind == "thread_failed"]
    assert len(failed) == 1 and "StepTimeout" in failed[0].detail["error"]
    assert (info.state.n, info.state.log) == (0, [])
    gate.set()
    engine.retry(wid, "op")  # an operator gives it fresh attempts: the second one returns
    assert engine.get(wid).status is WorkflowStatus.FINISHED


class Timed(Workflow):
    seconds: float = 0.0
    own: float | None = None
    done: list[str] = []

    def definition(self) -> Section:
        return S(
            Step("work", self.work, timeout=self.own, retry=ONCE),
            Step("async work", self.async_work, retry=ONCE),
            Return(),
        )

    def work(self) -> None:
        RAN_ON.append(threading.current_thread().name)
        time.sleep(self.seconds)
        self.done.append("work")

    async def async_work(self) -> None:
        await asyncio.sleep(self.seconds)
        self.done.append("async")


def test_the_engine_default_timeout_applies_unless_a_step_sets_its_own(
    store: Store,  # noqa: F811
) -> None:
    RAN_ON.clear()
    plain = make(store, Timed)
    wid = plain.new_workflow(Timed())  # no timeout: the step runs on the caller's thread
    assert plain.get(wid).state.done == ["work", "async"]
    assert [threading.current_thread().name] == RAN_ON

    engine = make(store, Timed, step_timeout=0.2)
    wid = engine.new_workflow(Timed(seconds=0.5))
    info = engine.get(wid)
    assert info.status is WorkflowStatus.FAILED and "within 0.2 s" in (info.threads[0].error or "")

    wid = engine.new_workflow(Timed(seconds=0.4, own=5))  # its own timeout wins for "work" ...
    info = engine.get(wid)
    assert info.threads[0].position == "async work"  # ... and the async step still times out
    assert "StepTimeout: step 'async work'" in (info.threads[0].error or "")
    assert info.state.done == ["work"]

    fast = make(store, Timed, step_timeout=timedelta(seconds=5))
    wid = fast.new_workflow(Timed(seconds=0.01))  # timeouts that do not fire change nothing
    assert fast.get(wid).status is WorkflowStatus.FINISHED
    assert fast.get(wid).state.done == ["work", "async"]
    for t in threading.enumerate():  # let the abandoned attempts end before the test does
        if t.name.startswith("gorch-step-"):
            t.join(5)


def test_step_timeout_carries_the_step_the_limit_and_where_it_hung(gate: threading.Event) -> None:
    with pytest.raises(StepTimeout) as err:
        call_with_timeout(gate.wait, 0.05, step="fetch", thread="main")
    e = err.value
    assert (e.statement, e.thread, e.timeout) == ("fetch", "main", 0.05)
    assert e.where is not None and "in wait()" in e.where  # nothing of the user's below it
    assert "may still be running in the background" in e.message
    assert call_with_timeout(lambda: 42, 10, step="quick", thread="main") == 42

    def missing() -> None:
        raise KeyError("k")

    with pytest.raises(KeyError):  # the step's own exception, as without a timeout
        call_with_timeout(missing, 10, step="raises", thread="main")


@pytest.mark.parametrize("bad", [0, -1, float("inf"), float("nan"), "5", True, timedelta(0)])
def test_a_timeout_must_be_a_positive_duration(bad: Any) -> None:
    with pytest.raises(DefinitionError, match="Step 'x': timeout must be"):
        validate(S(Step("x", print, timeout=bad)))
    with pytest.raises(DefinitionError, match=r"Engine\(step_timeout=...\) must be"):
        Engine(MemoryStore(), step_timeout=bad)


# -- state too large, or holding what no store can ------------------------------------------


ERRORS = {"nul": "bad \x00 byte", "surrogate": "lone \ud800 surrogate"}


class Growing(Workflow):
    blob: list[str] = []
    value: Any = None
    number: float = 0.0
    error: str = ""

    def definition(self) -> Section:
        return S(
            Step("grow", lambda: self.blob.append("x" * 4_000), retry=ONCE),
            Step("grow more", lambda: self.blob.append("y" * 4_000), retry=ONCE),
            Step("set", self.set_value, retry=ONCE),
            Return(),
        )

    def set_value(self) -> None:
        if self.error:
            raise ValueError(ERRORS[self.error])
        self.value = self.value


def test_a_state_over_the_limit_fails_the_step_and_keeps_the_last_state(
    store: Store,  # noqa: F811
) -> None:
    engine = make(store, Growing, max_state_bytes=6_000)
    with pytest.raises(StateError, match=r"over the limit of 6000 \(Engine\(max_state_bytes"):
        engine.new_workflow(Growing(blob=["z" * 7_000]), id="too-big")
    with pytest.raises(WorkflowNotFound):
        engine.get("too-big")
    wid = engine.new_workflow(Growing())
    info = engine.get(wid)
    assert info.status is WorkflowStatus.FAILED and info.threads[0].position == "grow more"
    assert "StateError" in (info.threads[0].error or "")
    assert "max_state_bytes" in (info.threads[0].error or "")
    assert [len(b) for b in info.state.blob] == [4_000]  # the last state within the limit
    before = snapshot(engine, wid)
    with pytest.raises(StateError, match="over the limit"):
        engine.update_state(wid, {"blob": ["q" * 7_000]}, "op")
    assert snapshot(engine, wid) == before
    roomy = make(store, Growing, max_state_bytes=None)  # no limit: the same step passes
    roomy.retry(wid, "op")
    assert roomy.get(wid).status is WorkflowStatus.FINISHED


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("number", float("nan")),
        ("number", float("inf")),
        ("value", "a\x00b"),
        ("value", {"k\x00": 1}),
        ("value", ["\ud800"]),
    ],
)
def test_a_step_that_makes_unstorable_state_fails_alike_everywhere(
    store: Store,  # noqa: F811
    field: str,
    value: Any,
) -> None:
    class Storing(Growing):
        type_name = "Growing"

        def set_value(self) -> None:
            setattr(self, field, value)

    engine = make(store, Storing)
    wid = engine.new_workflow(Storing())
    info = engine.get(wid)
    assert info.status is WorkflowStatus.FAILED and info.threads[0].position == "set"
    assert "StateError" in (info.threads[0].error or ""), info.threads[0].error
    assert (info.state.value, info.state.number) == (None, 0.0)


def test_a_handler_that_makes_unstorable_state_writes_nothing(store: Store) -> None:  # noqa: F811
    engine = make(store, Shop)
    wid = engine.new_workflow(Shop())
    before = snapshot(engine, wid)
    with pytest.raises(StateError, match="NaN"):  # valid JSON text, but the state cannot hold it
        engine.on_callback(wid, "order", '{"sku": "a", "qty": 1, "price": NaN}')
    assert snapshot(engine, wid) == before


@pytest.mark.parametrize("key", list(ERRORS))
def test_an_error_message_no_store_can_hold_is_recorded_escaped(
    store: Store,  # noqa: F811
    key: str,
) -> None:
    engine = make(store, Growing)
    wid = engine.new_workflow(Growing(error=key))
    info = engine.get(wid)
    assert info.status is WorkflowStatus.FAILED  # not a database error, step after step
    escaped = ERRORS[key].replace("\x00", "\\x00").replace("\ud800", "\\ud800")
    assert info.threads[0].error == "ValueError: " + escaped
    [failed] = [h for h in engine.history(wid) if h.kind == "thread_failed"]
    assert escaped in failed.detail["traceback"]


class Nested(Workflow):
    data: dict[str, Any] = {"inner": {"n": 0}}

    def definition(self) -> Section:
        return S(Step("bump", self.bump, retry=ONCE), Return())

    def bump(self) -> None:
        self.data["inner"]["n"] += 1  # in place, deep inside a field typed Any
        raise RuntimeError("after changing nested data")


def test_a_failed_step_leaves_nested_data_as_stored(store: Store) -> None:  # noqa: F811
    engine = make(store, Nested)
    wid = engine.new_workflow(Nested())
    assert engine.get(wid).state.data == {"inner": {"n": 0}}
    engine.retry(wid, "op")
    assert engine.get(wid).state.data == {"inner": {"n": 0}}
    assert engine.get(wid).threads[0].error == "RuntimeError: after changing nested data"
