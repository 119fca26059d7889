"""Property tests: random definitions driven by random event sequences keep the invariants.

After every action: no thread is lost, no checkpointed step runs twice, every error raised is a
``GorchError``, rejected callbacks change nothing, and the workflow's status agrees with its
threads and waits.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from engine import (
    Break,
    CallbackRejected,
    Engine,
    Event,
    For,
    Go,
    GorchError,
    If,
    InvalidInput,
    ManualClock,
    MemoryStore,
    On,
    PollingResumer,
    RetryPolicy,
    Return,
    S,
    Step,
    ThreadStatus,
    Timeout,
    Wait,
    WaitFor,
    WaitForUserAction,
    WaitInfo,
    Workflow,
    WorkflowStatus,
    current_thread,
    validate,
)

Key = tuple[str, str, tuple[int, ...], int]

EXEC: Counter[Key] = Counter()
"""Successful runs of each step, keyed by (thread, step, iteration, epoch).

The iteration is the state's counters of the loops around the step in its thread's body, so
a step that ran and was checkpointed can only run again under the same key if the engine ran it
twice. The epoch counts successful ``goto``s, the one way an operator re-runs steps on purpose.
"""

FAILS: Counter[Key] = Counter()
"""Failed attempts so far, by the same key: outside the state, which a failure rolls back."""

EPOCH = [0]

STATS: Counter[str] = Counter()
"""What the property runs covered (printed with ``pytest -s``)."""

POLICY = RetryPolicy(max_attempts=2, initial_interval=timedelta(minutes=1))


class Ping(BaseModel):
    x: int


class Prop(Workflow):
    """A workflow whose definition is the JSON ``spec`` in its own state.

    ``n`` counts successful steps; ``counters`` counts each loop's iterations.
    """

    spec: list[dict[str, Any]] = []
    n: int = 0
    counters: dict[str, int] = {}
    handled: int = 0

    def definition(self):
        return S(*self._section(self.spec, ()))

    def _section(self, nodes: list[dict[str, Any]], loops: tuple[str, ...]) -> list[Any]:
        return [self._stmt(x, loops) for x in nodes]

    def _stmt(self, x: dict[str, Any], loops: tuple[str, ...]) -> Any:
        k, name = x["k"], x.get("name")
        if k == "step":
            return Step(name, self._action(name, x["fails"], loops), retry=POLICY)
        if k == "if":
            then = self._section(x["then"], loops)
            st_ = If(self.n % x["mod"] == x["rem"], *then, name=name)
            return st_ if x["else"] is None else st_.Else(*self._section(x["else"], loops))
        if k == "for":
            bound, inner = x["bound"], (*loops, name)
            return For(
                name,
                lambda: self.counters.get(name, 0) < bound,
                Step(f"{name}+", self._action(f"{name}+", 0, inner, count=name), retry=POLICY),
                *self._section(x["body"], inner),
            )
        if k == "go":  # a goroutine's body is a new thread: the loops around it do not count
            return Go(name, S(*self._section(x["body"], ())), id=lambda: f"{name}#{self.n}")
        if k == "wait":
            cases = [
                On(c["event"], self._handler(c), *self._section(c["body"], loops))
                for c in x["cases"]
            ]
            return Wait(name, *cases)
        if k == "waitfor":
            target = x["target"]
            return WaitFor(name, lambda: self.n >= target)
        if k == "return":
            return Return(self.n, error="stopped early" if x["error"] else None)
        if k == "break":
            return Break()
        raise AssertionError(f"unknown spec node {x}")

    def _action(
        self, name: str, fails: int, loops: tuple[str, ...], count: str | None = None
    ) -> Any:
        def act() -> None:
            iteration = tuple(self.counters.get(loop, 0) for loop in loops)
            key = (current_thread() or "?", name, iteration, EPOCH[0])
            if FAILS[key] < fails:
                FAILS[key] += 1
                self.n += 1000  # a partial change that the failure must discard
                raise RuntimeError(f"{name} failed")
            EXEC[key] += 1
            self.n += 1
            if count is not None:
                self.counters[count] = self.counters.get(count, 0) + 1

        return act

    def _handler(self, case: dict[str, Any]) -> Any:
        if case["type"] == "user":
            return WaitForUserAction(approve=self._handled, deny=lambda reason: self._handled())
        if case["type"] == "event":
            return Event(model=Ping, handle=lambda p: self._handled())
        return Timeout(after=timedelta(minutes=case["after"]))

    def _handled(self) -> None:
        self.handled += 1


# -- random definitions -------------------------------------------------------------------

_step = st.tuples(st.just("step"), st.sampled_from([0, 0, 0, 1, 2]))  # failures first
_simple_case = st.tuples(
    st.sampled_from(["user", "event", "timeout"]), st.integers(1, 30), st.just([])
)
_wait = st.tuples(st.just("wait"), st.lists(_simple_case, min_size=1, max_size=2))
_leaf = st.one_of(
    _step,
    _wait,
    _step,
    st.tuples(st.just("waitfor"), st.integers(0, 6)),
    _step,
    _wait,
    _step,
    _wait,
    st.tuples(st.just("return"), st.booleans()),
    st.just(("break",)),
)


def _extend(children: Any) -> Any:
    section = st.lists(children, max_size=4)
    case = st.tuples(st.sampled_from(["user", "event", "timeout"]), st.integers(1, 30), section)
    return st.one_of(
        st.tuples(
            st.just("if"),
            st.integers(1, 3),
            st.integers(0, 2),
            section,
            st.none() | section,
            st.booleans(),
        ),
        st.tuples(st.just("for"), st.integers(0, 3), section),
        st.tuples(st.just("go"), section),
        st.tuples(st.just("wait"), st.lists(case, min_size=1, max_size=3)),
    )


_helpers = st.lists(st.tuples(st.just("go"), st.lists(_leaf, max_size=3)), max_size=2)
"""Goroutines started first, as the seed's notification goroutine is."""

_trees = st.builds(
    lambda helpers, body: helpers + body,
    _helpers,
    st.lists(st.recursive(_leaf, _extend, max_leaves=20), min_size=2, max_size=8),
)


class _Namer:
    def __init__(self) -> None:
        self.i = 0
        self.waitfors: set[str] = set()

    def name(self, prefix: str) -> str:
        self.i += 1
        return f"{prefix}{self.i}"

    def section(self, nodes: list[Any], in_loop: bool) -> list[dict[str, Any]]:
        """Name every statement; drop what validation would reject (Break outside a loop,
        anything after a Return or Break)."""
        out: list[dict[str, Any]] = []
        for node in nodes:
            k = node[0]
            if k == "break" and not in_loop:
                continue
            out.append(self.node(node, in_loop))
            if k in ("return", "break"):
                break
        return out

    def node(self, node: Any, in_loop: bool) -> dict[str, Any]:
        k = node[0]
        if k == "step":
            return {"k": k, "name": self.name("step"), "fails": node[1]}
        if k == "waitfor":
            name = self.name("waitfor")
            self.waitfors.add(name)
            return {"k": k, "name": name, "target": node[1]}
        if k == "return":
            return {"k": k, "error": node[1]}
        if k == "break":
            return {"k": k}
        if k == "if":
            _, mod, rem, then, other, named = node
            return {
                "k": k,
                "name": self.name("if") if named else None,
                "mod": mod,
                "rem": rem % mod,
                "then": self.section(then, in_loop),
                "else": None if other is None else self.section(other, in_loop),
            }
        if k == "for":
            return {
                "k": k,
                "name": self.name("for"),
                "bound": node[1],
                "body": self.section(node[2], True),
            }
        if k == "go":
            return {"k": k, "name": self.name("go"), "body": self.section(node[1], False)}
        if k == "wait":
            name = self.name("wait")
            return {
                "k": k,
                "name": name,
                "cases": [
                    {
                        "event": f"{name}.e{j}",
                        "type": typ,
                        "after": after,
                        "body": self.section(body, in_loop),
                    }
                    for j, (typ, after, body) in enumerate(node[1])
                ],
            }
        raise AssertionError(node)


_actions = st.one_of(
    st.just(("execute",)),
    st.just(("step",)),
    st.just(("run_due",)),
    st.tuples(st.just("advance"), st.integers(1, 12)),
    st.tuples(st.just("callback"), st.integers(0, 10), st.booleans()),
    st.tuples(st.just("callback"), st.integers(0, 10), st.booleans()),
    st.tuples(st.just("callback"), st.integers(0, 10), st.booleans()),
    st.tuples(
        st.just("invalid"),
        st.sampled_from(["unknown_event", "stale_pc", "bad_input", "twice", "wrong_thread"]),
        st.integers(0, 10),
    ),
    st.just(("retry",)),
    st.tuples(st.just("goto"), st.integers(0, 10), st.integers(0, 40)),
    st.just(("cancel",)) | st.just(("execute",)) | st.just(("run_due",)),
)


# -- checks -------------------------------------------------------------------------------


def _picture(engine: Engine, wid: str) -> tuple[Any, ...]:
    info = engine.get(wid)
    return (
        info.status,
        info.pc,
        info.version,
        info.state.model_dump(mode="json"),
        tuple((t.id, t.status, t.position, t.phase, t.event, t.attempts) for t in info.threads),
        len(engine.history(wid)),
        sorted((w.id, w.status, w.attempts) for w in engine.store.load_waits(wid)),
    )


def _valid_input(w: WaitInfo) -> Any:
    if w.type == "user_action":
        return {"approved": w.pc % 2 == 0, "reason": "prop"}
    if w.type == "event":
        return {"x": w.pc}
    return None


def _bad_input(w: WaitInfo) -> Any:
    return {"approved": "maybe"} if w.type == "user_action" else {"x": "not a number"}


class Checker:
    def __init__(self, engine: Engine, wid: str, waitfors: set[str]) -> None:
        self.engine, self.wid, self.waitfors = engine, wid, waitfors
        self.ever: set[str] = set()

    def check(self) -> None:
        info = self.engine.get(self.wid)
        history = self.engine.history(self.wid)
        ids = [t.id for t in info.threads]

        # No thread is lost: every thread ever seen or started is still there, once.
        assert len(ids) == len(set(ids))
        self.ever |= set(ids)
        self.ever |= {h.detail["started"] for h in history if h.kind == "go"}
        assert self.ever <= set(ids), f"lost threads: {self.ever - set(ids)}"

        # A checkpointed step never runs twice, and every run was checkpointed.
        assert all(v == 1 for v in EXEC.values()), [k for k, v in EXEC.items() if v > 1]
        ran = Counter((t, name) for (t, name, _, _) in EXEC)
        logged = Counter((h.thread, h.statement) for h in history if h.kind == "step")
        assert ran == logged
        # Failed attempts left nothing behind: the state counts exactly the successful runs.
        assert info.state.n == sum(EXEC.values())

        # The status agrees with the threads and the waits.
        status = info.status
        open_waits = self.engine.pending_waits(self.wid)
        by_id = {t.id: t for t in info.threads}
        statuses = {t.status for t in info.threads}
        for w in open_waits:
            t = by_id[w.thread_id]
            assert t.status is ThreadStatus.WAITING, (w, t)
            assert t.position == w.wait
        if status in (WorkflowStatus.FINISHED, WorkflowStatus.CANCELLED):
            assert open_waits == []
            assert not statuses & {ThreadStatus.RUNNING, ThreadStatus.WAITING}
        if status is WorkflowStatus.FINISHED:
            assert ThreadStatus.FAILED not in statuses  # a failure is never hidden
        else:
            waiting_ok = all(
                t.position in self.waitfors or any(w.thread_id == t.id for w in open_waits)
                for t in info.threads
                if t.status is ThreadStatus.WAITING
            )
            assert waiting_ok, (info.threads, open_waits)
        if status is WorkflowStatus.WAITING:
            assert ThreadStatus.WAITING in statuses
            assert not statuses & {ThreadStatus.RUNNING, ThreadStatus.FAILED}
        if status is WorkflowStatus.RUNNING:
            assert ThreadStatus.RUNNING in statuses
            assert ThreadStatus.FAILED not in statuses
        if status is WorkflowStatus.FAILED:
            assert ThreadStatus.FAILED in statuses


def _act(engine: Engine, clock: ManualClock, wid: str, action: tuple[Any, ...]) -> None:
    kind = action[0]
    waits = sorted(engine.pending_waits(wid), key=lambda w: (w.thread_id, w.event))
    if kind == "execute":
        engine.execute(wid)
    elif kind == "step":
        engine.step(wid)
    elif kind == "run_due":
        engine.run_due()
    elif kind == "advance":
        clock.advance(timedelta(minutes=action[1]))
        engine.run_due()
    elif kind == "retry":
        engine.retry(wid, actor="prop")
    elif kind == "cancel":
        engine.cancel(wid, actor="prop")
    elif kind == "goto":
        info = engine.get(wid)
        thread = info.threads[action[1] % len(info.threads)].id
        names = _names(info.state.spec) or ["nowhere"]
        EPOCH[0] += 1  # before: the goto itself runs the thread on
        engine.goto(wid, thread, names[action[2] % len(names)], actor="prop")
    elif kind == "callback":
        if not waits:
            engine.on_callback(wid, "nothing-waits")
            return
        w = waits[action[1] % len(waits)]
        engine.on_callback(
            wid,
            w.event,
            _valid_input(w),
            actor="prop",
            thread=w.thread_id,
            pc=w.pc if action[2] else None,
        )
    elif kind == "invalid":
        _invalid(engine, wid, action[1], waits[action[2] % len(waits)] if waits else None)
    else:  # pragma: no cover
        raise AssertionError(action)


def _invalid(engine: Engine, wid: str, how: str, w: WaitInfo | None) -> None:
    if how == "twice" and w is not None:
        engine.on_callback(wid, w.event, _valid_input(w), thread=w.thread_id, pc=w.pc)
    before = _picture(engine, wid)
    try:
        if w is None:
            engine.on_callback(wid, "no-such-event", {})
        elif how == "unknown_event":
            engine.on_callback(wid, f"{w.event}-unknown", _valid_input(w))
        elif how in ("stale_pc", "twice"):
            delta = 1 if how == "stale_pc" else 0
            engine.on_callback(wid, w.event, _valid_input(w), thread=w.thread_id, pc=w.pc + delta)
        elif how == "bad_input" and w.type != "timeout":
            engine.on_callback(wid, w.event, _bad_input(w), thread=w.thread_id)
        else:
            engine.on_callback(wid, w.event, _valid_input(w), thread=f"{w.thread_id}-nobody")
    except CallbackRejected as e:
        STATS[f"rejected {e.reason}"] += 1
        if how == "bad_input" and w is not None and w.type != "timeout":
            assert isinstance(e, InvalidInput)
        if how == "stale_pc" and w is not None:
            assert e.reason == "stale_pc"
    else:
        raise AssertionError(f"invalid callback {how!r} was accepted")
    assert _picture(engine, wid) == before, f"rejected callback {how!r} changed the workflow"


def _names(spec: list[dict[str, Any]]) -> list[str]:
    found: list[str] = []

    def walk(nodes: list[dict[str, Any]]) -> None:
        for x in nodes:
            if x.get("name"):
                found.append(x["name"])
                if x["k"] == "for":
                    found.append(f"{x['name']}+")
            for key in ("then", "else", "body"):
                if x.get(key):
                    walk(x[key])
            for c in x.get("cases", []):
                walk(c["body"])

    walk(spec)
    return found


class FlakyManager:
    """Fails every other set-up and tear-down."""

    def __init__(self) -> None:
        self.calls = 0

    def setup(self, wait: WaitInfo) -> None:
        self.calls += 1
        if self.calls % 2:
            raise ConnectionError("flaky setup")

    def teardown(self, wait: WaitInfo, handled: bool) -> None:
        self.calls += 1
        if self.calls % 2:
            raise ConnectionError("flaky teardown")


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(trees=_trees, inline=st.booleans(), flaky_manager=st.booleans(), data=st.data())
def test_random_workflows_keep_their_invariants(
    trees: list[Any], inline: bool, flaky_manager: bool, data: st.DataObject
) -> None:
    EXEC.clear()
    FAILS.clear()
    EPOCH[0] = 0
    namer = _Namer()
    spec = namer.section(trees, False)
    model = Prop(spec=spec)
    validate(model.definition())  # the generator only makes valid definitions

    clock = ManualClock()
    engine = Engine(
        MemoryStore(),
        [Prop],
        clock=clock,
        resumer=None if inline else PollingResumer(),
        managers={"user_action": FlakyManager()} if flaky_manager else None,
        max_steps=2_000,
    )
    wid = engine.new_workflow(model)
    checker = Checker(engine, wid, namer.waitfors)
    checker.check()
    for _ in range(data.draw(st.integers(0, 40), label="actions")):
        action = data.draw(_actions)
        try:
            _act(engine, clock, wid, action)
            STATS[f"ok {action[0]}"] += 1
        except GorchError as e:
            STATS[f"{action[0]} -> {type(e).__name__} {getattr(e, 'reason', '')}".strip()] += 1
        except Exception as e:  # every error the library raises is a GorchError
            raise AssertionError(f"{action}: {type(e).__name__}: {e}") from e
        checker.check()

    # Then drive it on: answer what waits, let time pass, retry what failed.
    for _ in range(30):
        info = engine.get(wid)
        if info.status.done:
            break
        waits = sorted(engine.pending_waits(wid), key=lambda w: (w.thread_id, w.event))
        try:
            if info.status is WorkflowStatus.FAILED:
                engine.retry(wid, actor="drain")
            elif waits and waits[0].type != "timeout":
                w = waits[0]
                engine.on_callback(wid, w.event, _valid_input(w), thread=w.thread_id, pc=w.pc)
                STATS["drain callback"] += 1
            else:
                clock.advance(timedelta(minutes=31))
                engine.run_due()
            engine.execute(wid)
        except GorchError as e:
            STATS[f"drain -> {type(e).__name__}"] += 1
        checker.check()
    info = engine.get(wid)
    STATS[f"end {info.status.value}"] += 1
    STATS[f"threads {min(len(info.threads), 5)}"] += 1
    STATS[f"steps {min(len(EXEC), 10) // 5 * 5}+"] += 1


def teardown_module() -> None:
    print("\nproperty coverage:", dict(sorted(STATS.items())))


@settings(max_examples=100, deadline=None)
@given(trees=_trees)
def test_generated_definitions_have_unique_names_and_validate(trees: list[Any]) -> None:
    namer = _Namer()
    spec = namer.section(trees, False)
    names = _names(spec)
    assert len(names) == len(set(names))
    validate(Prop(spec=spec).definition())
