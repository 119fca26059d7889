"""The Engine API on a memory store: starting, running, stepping, retries and runaway loops."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest

from engine import (
    Engine,
    For,
    Go,
    If,
    InvalidOperation,
    ManualClock,
    MemoryStore,
    On,
    PollingResumer,
    RetryPolicy,
    Return,
    S,
    Step,
    ThreadStatus,
    UnknownWorkflowType,
    Wait,
    WaitFor,
    WaitForUserAction,
    Workflow,
    WorkflowExists,
    WorkflowInfo,
    WorkflowNotFound,
    WorkflowStatus,
    current_thread,
)

CALLS: Counter[str] = Counter()
"""How many times each action ran, outside the state (which a failed step rolls back)."""

ORDER: list[str] = []


@pytest.fixture(autouse=True)
def _reset() -> None:
    CALLS.clear()
    ORDER.clear()
    Flaky.failures = 0


def ua(model: Any) -> WaitForUserAction:
    return WaitForUserAction(approve=model.yes, deny=model.no)


class Linear(Workflow):
    n: int = 0

    def definition(self):
        return S(
            Step("one", self.bump),
            Step("two", self.bump),
            Wait("hold", On("go", ua(self))),
            Step("three", self.bump),
            Return({"n": self.n}),
        )

    def bump(self) -> None:
        CALLS[f"bump{self.n}"] += 1
        self.n += 1

    def yes(self) -> None:
        return None

    def no(self, reason: str) -> None:
        return None


# -- starting -----------------------------------------------------------------------------


def test_new_workflow_runs_until_blocked_and_get_shows_it(engine: Engine) -> None:
    wid = engine.new_workflow(Linear(), id="lin-1")
    info = engine.get(wid)

    assert wid == "lin-1"
    assert isinstance(info, WorkflowInfo)
    assert info.type == "Linear"
    assert info.status is WorkflowStatus.WAITING
    assert isinstance(info.state, Linear)
    assert info.state.n == 2
    assert [(t.id, t.name, t.status, t.position) for t in info.threads] == [
        ("main", "main", ThreadStatus.WAITING, "hold")
    ]
    assert info.next_run_at is None


def test_finished_workflow_carries_its_result(engine: Engine) -> None:
    wid = engine.new_workflow(Linear())
    engine.on_callback(wid, "go", {"approved": True})
    info = engine.get(wid)
    assert info.status is WorkflowStatus.FINISHED
    assert info.result == {"n": 3}
    assert info.error is None
    assert Counter({"bump0": 1, "bump1": 1, "bump2": 1}) == CALLS


def test_new_workflow_is_idempotent_by_id(engine: Engine) -> None:
    first = engine.new_workflow(Linear(n=0), id="same")
    second = engine.new_workflow(Linear(n=100), id="same")
    assert first == second == "same"
    assert len(engine.list()) == 1
    assert engine.get("same").state.n == 2  # the second start changed nothing
    assert Counter({"bump0": 1, "bump1": 1}) == CALLS


def test_same_id_with_another_type_is_workflow_exists(engine: Engine) -> None:
    class Other(Workflow):
        def definition(self):
            return S(Return())

    engine.new_workflow(Linear(), id="taken")
    with pytest.raises(WorkflowExists) as err:
        engine.new_workflow(Other(), id="taken")
    assert err.value.workflow_id == "taken"


@pytest.mark.parametrize("bad", ["", "x" * 201, 12])
def test_bad_ids_are_invalid_operations(engine: Engine, bad: Any) -> None:
    with pytest.raises(InvalidOperation):
        engine.new_workflow(Linear(), id=bad)
    assert engine.list() == []


def test_new_workflow_of_a_non_workflow_is_a_definition_error(engine: Engine) -> None:
    from engine import DefinitionError

    with pytest.raises(DefinitionError):
        engine.new_workflow("not a workflow")  # type: ignore[arg-type]


def test_polling_resumer_only_stores_and_execute_runs(polling_engine: Engine) -> None:
    wid = polling_engine.new_workflow(Linear())
    assert polling_engine.get(wid).pc == 0
    assert polling_engine.get(wid).status is WorkflowStatus.RUNNING
    assert Counter() == CALLS

    info = polling_engine.execute(wid)

    assert info.status is WorkflowStatus.WAITING
    assert info.state.n == 2


def test_run_due_executes_scheduled_workflows(polling_engine: Engine) -> None:
    ids = [polling_engine.new_workflow(Linear()) for _ in range(3)]
    assert polling_engine.run_due() == 3
    assert {polling_engine.get(i).status for i in ids} == {WorkflowStatus.WAITING}
    assert polling_engine.run_due() == 0  # waiting workflows are not due


def test_unknown_workflow_is_workflow_not_found(engine: Engine) -> None:
    for call in (
        lambda: engine.get("nope"),
        lambda: engine.execute("nope"),
        lambda: engine.step("nope"),
        lambda: engine.history("nope"),
        lambda: engine.pending_waits("nope"),
        lambda: engine.cancel("nope", actor="ops"),
        lambda: engine.retry("nope", actor="ops"),
        lambda: engine.goto("nope", "main", "one", actor="ops"),
        lambda: engine.on_callback("nope", "go"),
    ):
        with pytest.raises(WorkflowNotFound) as err:
            call()
        assert err.value.workflow_id == "nope"


def test_stored_workflow_of_an_unregistered_type(store: MemoryStore, clock: ManualClock) -> None:
    Engine(store, clock=clock).new_workflow(Linear(), id="w")
    other = Engine(store, clock=clock)
    with pytest.raises(UnknownWorkflowType) as err:
        other.get("w")
    assert err.value.type_name == "Linear"
    assert err.value.workflow_id == "w"


def test_type_name_is_the_stored_name(engine: Engine) -> None:
    class RenamedV2(Workflow):
        type_name = "expense"

        def definition(self):
            return S(Return())

    wid = engine.new_workflow(RenamedV2())
    assert engine.get(wid).type == "expense"


def test_list_filters(engine: Engine) -> None:
    a = engine.new_workflow(Linear(), id="alpha")
    b = engine.new_workflow(Linear(), id="beta")
    engine.on_callback(b, "go", {"approved": True})

    assert {w.id for w in engine.list()} == {a, b}
    assert [w.id for w in engine.list(status=WorkflowStatus.FINISHED)] == [b]
    assert [w.id for w in engine.list(status="waiting")] == [a]
    assert [w.id for w in engine.list(search="lph")] == [a]
    assert engine.list(type="Other") == []
    assert len(engine.list(limit=1)) == 1


def test_pending_waits_filter(engine: Engine) -> None:
    a = engine.new_workflow(Linear())
    b = engine.new_workflow(Linear())
    assert {w.workflow_id for w in engine.pending_waits()} == {a, b}
    assert [w.workflow_id for w in engine.pending_waits(a)] == [a]
    assert engine.pending_waits(type="timeout") == []
    assert len(engine.pending_waits(type="user_action")) == 2


# -- steps --------------------------------------------------------------------------------


class AsyncSteps(Workflow):
    log: list[str] = []

    def definition(self):
        return S(Step("sync", self.sync), Step("async", self.coro), Return(self.log))

    def sync(self) -> None:
        self.log.append("sync")

    async def coro(self) -> None:
        await asyncio.sleep(0)
        self.log.append(f"async in {current_thread()}")


def test_sync_and_async_steps(engine: Engine) -> None:
    wid = engine.new_workflow(AsyncSteps())
    info = engine.get(wid)
    assert info.status is WorkflowStatus.FINISHED
    assert info.result == ["sync", "async in main"]


def test_async_steps_from_inside_a_running_event_loop(
    store: MemoryStore, clock: ManualClock
) -> None:
    engine = Engine(store, clock=clock, resumer=PollingResumer())

    async def notebook_cell() -> WorkflowInfo[Any]:
        wid = engine.new_workflow(AsyncSteps())
        return engine.execute(wid)  # synchronous call while a loop runs (Jupyter)

    info = asyncio.run(notebook_cell())
    assert info.status is WorkflowStatus.FINISHED
    assert info.result == ["sync", "async in main"]


class Flaky(Workflow):
    """``risky`` fails ``Flaky.failures`` times (a counter outside the state), then works."""

    failures: int = 0  # a ClassVar-like knob kept on the class below
    touched: int = 0
    done: bool = False

    def definition(self):
        policy = RetryPolicy(max_attempts=3, initial_interval=timedelta(seconds=10), backoff=3)
        return S(
            Step("safe", self.safe),
            Step("risky", self.risky, retry=policy),
            Return(self.touched),
        )

    def safe(self) -> None:
        CALLS["safe"] += 1

    def risky(self) -> None:
        CALLS["risky"] += 1
        self.touched += 100  # a partial change that a failure must discard
        if CALLS["risky"] <= type(self).failures:
            raise ConnectionError(f"attempt {CALLS['risky']} failed")
        self.done = True


Flaky.failures = 0


def test_failing_step_is_retried_with_backoff(engine: Engine, clock: ManualClock) -> None:
    Flaky.failures = 2
    start = clock.now()
    wid = engine.new_workflow(Flaky())

    info = engine.get(wid)
    t = info.thread("main")
    assert t is not None
    assert info.status is WorkflowStatus.RUNNING
    assert (t.position, t.attempts, t.error) == ("risky", 1, "ConnectionError: attempt 1 failed")
    assert t.retry_at == start + timedelta(seconds=10)
    assert info.next_run_at == t.retry_at
    assert info.state.touched == 0  # the failed attempt's change was discarded

    clock.advance(timedelta(seconds=9))
    engine.run_due()
    assert CALLS["risky"] == 1  # not due yet

    clock.advance(timedelta(seconds=1))
    engine.run_due()
    t = engine.get(wid).thread("main")
    assert t is not None
    assert CALLS["risky"] == 2
    assert t.attempts == 2
    assert t.retry_at == clock.now() + timedelta(seconds=30)  # 10s * 3

    clock.advance(timedelta(seconds=30))
    engine.run_due()
    info = engine.get(wid)
    assert info.status is WorkflowStatus.FINISHED
    assert info.result == 100  # only the successful attempt's change counts
    assert info.state.done is True
    assert Counter({"safe": 1, "risky": 3}) == CALLS
    errors = [h for h in engine.history(wid) if h.kind == "step_error"]
    assert [h.detail["attempt"] for h in errors] == [1, 2]
    assert all(h.statement == "risky" for h in errors)


def test_out_of_attempts_fails_the_workflow_and_retry_resumes_it(
    engine: Engine, clock: ManualClock
) -> None:
    Flaky.failures = 3
    wid = engine.new_workflow(Flaky())
    for delay in (10, 30):
        clock.advance(timedelta(seconds=delay))
        engine.run_due()

    info = engine.get(wid)
    t = info.thread("main")
    assert t is not None
    assert info.status is WorkflowStatus.FAILED
    assert t.status is ThreadStatus.FAILED
    assert t.error == "ConnectionError: attempt 3 failed"
    assert t.retry_at is None
    assert info.next_run_at is None
    assert CALLS["risky"] == 3
    failed = [h for h in engine.history(wid) if h.kind == "thread_failed"]
    assert len(failed) == 1 and "attempt 3 failed" in failed[0].detail["error"]
    assert "Traceback" in failed[0].detail["traceback"]

    clock.advance(timedelta(hours=1))
    assert engine.run_due() == 0  # a failed workflow is not retried by itself
    assert CALLS["risky"] == 3

    info = engine.retry(wid, actor="ops", reason="service is back")

    assert info.status is WorkflowStatus.FINISHED
    assert info.result == 100
    assert Counter({"safe": 1, "risky": 4}) == CALLS  # the checkpointed step did not re-run
    retried = [h for h in engine.history(wid) if h.kind == "retried"]
    assert [(h.actor, h.thread, h.statement) for h in retried] == [("ops", "main", "risky")]
    assert retried[0].detail["reason"] == "service is back"


def test_engine_default_retry_policy(store: MemoryStore, clock: ManualClock) -> None:
    class Once(Workflow):
        def definition(self):
            return S(Step("boom", self.boom))

        def boom(self) -> None:
            CALLS["boom"] += 1
            raise RuntimeError("no")

    engine = Engine(store, clock=clock, retry=RetryPolicy(max_attempts=1))
    wid = engine.new_workflow(Once())
    assert engine.get(wid).status is WorkflowStatus.FAILED
    assert CALLS["boom"] == 1


def test_a_checkpointed_step_never_runs_again(polling_engine: Engine, clock: ManualClock) -> None:
    engine = polling_engine
    wid = engine.new_workflow(Linear())
    for _ in range(3):
        engine.execute(wid)
        engine.step(wid)
        clock.advance(timedelta(minutes=5))
        engine.run_due()
    engine.on_callback(wid, "go", {"approved": True})
    for _ in range(3):
        engine.execute(wid)
        engine.run_due()

    assert engine.get(wid).status is WorkflowStatus.FINISHED
    assert Counter({"bump0": 1, "bump1": 1, "bump2": 1}) == CALLS
    steps = [h.statement for h in engine.history(wid) if h.kind == "step"]
    assert steps == ["one", "two", "three"]


def test_a_raising_condition_fails_the_thread(engine: Engine) -> None:
    class BadCond(Workflow):
        def definition(self):
            return S(Step("a", lambda: None), If(lambda: 1 / 0, Return(), name="check"))

    wid = engine.new_workflow(BadCond())
    info = engine.get(wid)
    t = info.thread("main")
    assert info.status is WorkflowStatus.FAILED
    assert t is not None and t.error is not None and "ZeroDivisionError" in t.error
    failed = [h for h in engine.history(wid) if h.kind == "thread_failed"]
    assert [h.statement for h in failed] == ["check"]


# -- runaway loops ------------------------------------------------------------------------


class Endless(Workflow):
    n: int = 0

    def definition(self):
        return S(For("forever", True, Step("tick", self.tick)))

    def tick(self) -> None:
        self.n += 1


def test_step_that_loops_forever_is_stopped_by_max_steps(
    store: MemoryStore, clock: ManualClock
) -> None:
    engine = Engine(store, clock=clock, max_steps=50)
    wid = engine.new_workflow(Endless())  # returns: no hang

    info = engine.get(wid)
    t = info.thread("main")
    assert info.status is WorkflowStatus.FAILED
    assert t is not None and t.status is ThreadStatus.FAILED
    assert t.error is not None and t.error.startswith("RunawayLoop")
    assert "max_steps" in t.error
    assert info.state.n == 50
    assert engine.run_due() == 0  # stays stopped


def test_loop_whose_step_never_runs_is_stopped_by_max_iterations(
    store: MemoryStore, clock: ManualClock
) -> None:
    class Spin(Workflow):
        def definition(self):
            return S(For("l", True, If(False, Step("never", lambda: None))))

    engine = Engine(store, clock=clock, max_iterations=100)
    wid = engine.new_workflow(Spin())

    info = engine.get(wid)
    t = info.thread("main")
    assert info.status is WorkflowStatus.FAILED
    assert t is not None and t.error is not None
    assert "'l'" in t.error and "100 iterations" in t.error
    assert "RunawayLoop" in t.error  # the error names its kind, as the max_steps one does
    failed = [h for h in engine.history(wid) if h.kind == "thread_failed"]
    assert [h.statement for h in failed] == ["l"]


def test_step_never_reports_a_runaway(store: MemoryStore, clock: ManualClock) -> None:
    """``step()`` runs one step by design; it is no runaway, whatever ``max_steps`` is."""
    engine = Engine(store, clock=clock, max_steps=1, resumer=PollingResumer())
    wid = engine.new_workflow(Linear())

    info = engine.step(wid)

    assert info.status is WorkflowStatus.RUNNING
    assert info.thread("main").error is None  # type: ignore[union-attr]
    assert engine.step(wid).state.n == 2


# -- step(): one at a time, deterministic interleaving ------------------------------------


class Interleaved(Workflow):
    def definition(self):
        return S(
            Go("g", S(Step("g1", self.mark("g1")), Step("g2", self.mark("g2")))),
            Step("m1", self.mark("m1")),
            Step("m2", self.mark("m2")),
            Step("m3", self.mark("m3")),
        )

    @staticmethod
    def mark(name: str) -> Any:
        return lambda: ORDER.append(f"{current_thread()}:{name}")


def test_step_runs_exactly_one_step_per_call(polling_engine: Engine) -> None:
    engine = polling_engine
    wid = engine.new_workflow(Interleaved())
    pcs = [engine.get(wid).pc]
    lengths = [0]
    while engine.get(wid).status is WorkflowStatus.RUNNING:
        info = engine.step(wid)
        pcs.append(info.pc)
        lengths.append(len(ORDER))
        assert len(pcs) < 20

    assert pcs == list(range(len(pcs)))  # the pc moves by exactly one per call
    assert all(b - a <= 1 for a, b in itertools.pairwise(lengths))
    assert ORDER == ["main:m1", "g:g1", "main:m2", "g:g2", "main:m3"]
    assert engine.get(wid).status is WorkflowStatus.FINISHED


def test_interleaving_is_the_same_with_execute_and_on_every_run(
    polling_engine: Engine,
) -> None:
    runs = []
    for _ in range(3):
        ORDER.clear()
        polling_engine.execute(polling_engine.new_workflow(Interleaved()))
        runs.append(list(ORDER))
    assert runs[0] == ["main:m1", "g:g1", "main:m2", "g:g2", "main:m3"]
    assert runs[0] == runs[1] == runs[2]


def test_step_on_a_blocked_workflow_changes_nothing(engine: Engine, snapshot) -> None:
    wid = engine.new_workflow(Linear())
    before = snapshot(engine, wid)
    engine.step(wid)
    engine.execute(wid)
    assert snapshot(engine, wid) == before


# -- threads ------------------------------------------------------------------------------


def test_return_in_a_goroutine_ends_only_that_thread(engine: Engine) -> None:
    class GoReturn(Workflow):
        def definition(self):
            return S(
                Go("g", S(Step("g1", lambda: ORDER.append("g1")), Return("ignored"))),
                Step("m1", lambda: ORDER.append("m1")),
                Step("m2", lambda: ORDER.append("m2")),
                Return("main result"),
            )

    wid = engine.new_workflow(GoReturn())
    info = engine.get(wid)
    assert info.status is WorkflowStatus.FINISHED
    assert info.result == "main result"
    assert ORDER == ["m1", "g1", "m2"]
    assert info.thread("g").status is ThreadStatus.FINISHED  # type: ignore[union-attr]


def test_main_return_cancels_goroutines_and_their_waits(engine: Engine) -> None:
    class Leaves(Workflow):
        def definition(self):
            return S(
                Go("helper", S(Wait("helper wait", On("poke", ua(self))))),
                Step("m1", lambda: None),
                Return("done"),
            )

        def yes(self) -> None:
            return None

        def no(self, reason: str) -> None:
            return None

    wid = engine.new_workflow(Leaves())
    info = engine.get(wid)
    assert info.status is WorkflowStatus.FINISHED
    assert info.thread("helper").status is ThreadStatus.CANCELLED  # type: ignore[union-attr]
    assert engine.pending_waits(wid) == []


def test_main_ending_waits_for_live_goroutines(engine: Engine) -> None:
    class Tail(Workflow):
        def definition(self):
            return S(
                Go("helper", S(Wait("helper wait", On("poke", ua(self))), Step("h", self.h))),
                Step("m1", lambda: None),
            )

        def h(self) -> None:
            ORDER.append("h")

        def yes(self) -> None:
            return None

        def no(self, reason: str) -> None:
            return None

    wid = engine.new_workflow(Tail())
    info = engine.get(wid)
    assert info.status is WorkflowStatus.WAITING
    assert info.thread("main").status is ThreadStatus.FINISHED  # type: ignore[union-attr]

    engine.on_callback(wid, "poke", {"approved": True})

    info = engine.get(wid)
    assert info.status is WorkflowStatus.FINISHED
    assert ORDER == ["h"]
    assert "finished" in [h.kind for h in engine.history(wid)]


def test_goroutine_return_as_the_last_live_thread_finishes_the_workflow(engine: Engine) -> None:
    class LastIsGo(Workflow):
        def definition(self):
            return S(Go("g", S(Step("s", lambda: None), Return("from g"))))

    wid = engine.new_workflow(LastIsGo())
    info = engine.get(wid)
    assert info.status is WorkflowStatus.FINISHED
    kinds = [h.kind for h in engine.history(wid)]
    assert kinds[-1] == "finished"  # recorded as when main is the last to end


def test_go_with_an_id_already_used_fails_the_thread(engine: Engine) -> None:
    class Twice(Workflow):
        i: int = 0

        def definition(self):
            return S(
                For(
                    "spawn",
                    self.i < 2,
                    Go("worker", S(Step("w", lambda: None)), id="same"),
                    Step("inc", self.inc),
                )
            )

        def inc(self) -> None:
            self.i += 1

    wid = engine.new_workflow(Twice())
    info = engine.get(wid)
    t = info.thread("main")
    assert info.status is WorkflowStatus.FAILED
    assert t is not None and t.error is not None and "'same' is already used" in t.error
    assert [x.id for x in info.threads] == ["main", "same"]


def test_waitfor_that_holds_at_once_does_not_block(engine: Engine) -> None:
    class Ready(Workflow):
        def definition(self):
            return S(WaitFor("ready", True), Return("passed"))

    wid = engine.new_workflow(Ready())
    assert engine.get(wid).result == "passed"


class WakeUp(Workflow):
    flag: bool = False

    def definition(self):
        return S(
            Go("setter", S(
                Step("s1", self.mark("s1")),
                Step("set flag", self.set_flag),
                Step("s3", self.mark("s3")),
            )),
            WaitFor("until flag", lambda: self.flag),
            Step("after flag", self.mark("after flag")),
            Return("done"),
        )  # fmt: skip

    def set_flag(self) -> None:
        ORDER.append("set flag")
        self.flag = True

    @staticmethod
    def mark(name: str) -> Any:
        return lambda: ORDER.append(name)


def test_step_moves_the_pc_by_one_even_when_a_waitfor_wakes(polling_engine: Engine) -> None:
    engine = polling_engine
    wid = engine.new_workflow(WakeUp())
    deltas = []
    prev = engine.get(wid).pc
    while not engine.get(wid).status.done:
        before = len(ORDER)
        info = engine.step(wid)
        assert len(ORDER) - before <= 1  # at most one action per call
        deltas.append(info.pc - prev)
        prev = info.pc
        assert len(deltas) < 20

    assert ORDER == ["s1", "set flag", "after flag", "s3"]
    assert deltas == [1] * len(deltas)


def test_a_definition_that_turns_invalid_is_stopped_with_the_workflow_named(
    polling_engine: Engine,
) -> None:
    """Each session validates the definition in full; within one, a rebuilt tree is bound
    along the validated paths (so a step costs O(depth)). A definition whose shape turns
    invalid mid-session is stopped as soon as a thread reaches a name the validated tree
    did not have, and nothing more runs in any later session (docs/design.md)."""
    from engine import DefinitionError

    class Grows(Workflow):
        n: int = 0

        def definition(self):
            dups = [Step("dup", self.inc), Step("dup", self.inc)] if self.n else []
            return S(Step("first", self.inc), *dups, Step("last", self.inc))

        def inc(self) -> None:
            self.n += 1

    wid = polling_engine.new_workflow(Grows())

    with pytest.raises(DefinitionError) as err:
        polling_engine.execute(wid)
    assert err.value.workflow_id == wid
    assert err.value.statement == "dup"
    ran = [h.statement for h in polling_engine.history(wid) if h.kind == "step"]
    assert ran == ["first", "dup"]

    with pytest.raises(DefinitionError) as again:
        polling_engine.execute(wid)  # a new session validates first: nothing runs
    assert again.value.workflow_id == wid
    assert [h.statement for h in polling_engine.history(wid) if h.kind == "step"] == ran
    assert polling_engine.get(wid).state.n == 2


def test_run_due_honours_its_limit(polling_engine: Engine) -> None:
    ids = [polling_engine.new_workflow(Linear()) for _ in range(3)]
    assert polling_engine.run_due(limit=1) == 1
    statuses = [polling_engine.get(i).status for i in ids]
    assert statuses.count(WorkflowStatus.WAITING) == 1
    assert polling_engine.run_due() == 2


def test_a_waitfor_condition_that_starts_raising_fails_the_workflow(engine: Engine) -> None:
    class Divide(Workflow):
        d: int = 1

        def definition(self):
            return S(
                Go("zeroer", S(Step("zero", self.zero))),
                WaitFor("quotient", lambda: 10 / self.d > 100),
                Return("unreachable"),
            )

        def zero(self) -> None:
            self.d = 0

    wid = engine.new_workflow(Divide())
    info = engine.get(wid)
    t = info.thread("main")
    assert info.status is WorkflowStatus.FAILED
    assert t is not None and t.error is not None and "ZeroDivisionError" in t.error
    failed = [h for h in engine.history(wid) if h.kind == "thread_failed"]
    assert [(h.thread, h.statement) for h in failed] == [("main", "quotient")]


def test_an_async_step_that_raises_is_retried_like_a_sync_one(
    engine: Engine, clock: ManualClock
) -> None:
    class AsyncFlaky(Workflow):
        def definition(self):
            policy = RetryPolicy(max_attempts=2, initial_interval=timedelta(seconds=5))
            return S(Step("fetch", self.fetch, retry=policy), Return("fetched"))

        async def fetch(self) -> None:
            await asyncio.sleep(0)
            CALLS["fetch"] += 1
            if CALLS["fetch"] == 1:
                raise TimeoutError("slow service")

    wid = engine.new_workflow(AsyncFlaky())
    t = engine.get(wid).thread("main")
    assert t is not None and t.error == "TimeoutError: slow service"
    clock.advance(timedelta(seconds=5))
    engine.run_due()
    assert engine.get(wid).result == "fetched"
    assert CALLS["fetch"] == 2


def test_a_step_knows_its_attempt_number(clock: Any) -> None:
    from engine import MemoryStore, PollingResumer, RetryPolicy, current_attempt

    seen: list[int] = []

    class Flaky(Workflow):
        def definition(self):
            return S(Step("call", self.call, retry=RetryPolicy(max_attempts=3)))

        def call(self) -> None:
            seen.append(current_attempt())
            if current_attempt() < 3:
                raise ConnectionError("not yet")

    engine = Engine(MemoryStore(), [Flaky], clock=clock, resumer=PollingResumer())
    wid = engine.new_workflow(Flaky())
    for _ in range(3):
        engine.run_due()
        clock.advance(timedelta(minutes=1))
    assert seen == [1, 2, 3]
    assert engine.get(wid).status is WorkflowStatus.FINISHED
    assert current_attempt() == 0  # outside a step
