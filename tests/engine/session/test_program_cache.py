"""The program cache: a session takes over the model and program the last session of its
workflow left in this engine, and only when nothing else could have changed them."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel

from engine import Engine, Event, For, MemoryStore, On, S, Section, Step, Wait, Workflow


class Go(BaseModel):
    """The event's input."""


class Looping(Workflow):
    """Waits for ``go``, then a step, again and again; counts its definition's builds."""

    builds: ClassVar[int] = 0
    n: int = 0

    def definition(self) -> Section:
        Looping.builds += 1  # (type(self) is a tracing subclass while it runs)
        return S(
            For("loop", lambda: self.n < 100,
                Wait("wait", On("go", Event(model=Go, handle=self.on_go))),
                Step("bump", self.bump),
            ),
        )  # fmt: skip

    def on_go(self, _: Go) -> None:
        self.n += 1

    def bump(self) -> None:
        self.n += 1


def builds() -> int:
    return Looping.builds


def test_callbacks_take_over_the_last_sessions_program() -> None:
    engine = Engine(MemoryStore(), [Looping])
    before = builds()
    wid = engine.new_workflow(Looping())  # built once, to check it; run by the inline resumer
    for _ in range(3):
        engine.on_callback(wid, "go", {})
    assert builds() - before == 1
    assert engine.get(wid).state.n == 6


def test_a_model_handed_to_a_caller_is_not_taken_over() -> None:
    engine = Engine(MemoryStore(), [Looping])
    wid = engine.new_workflow(Looping())
    info = engine.execute(wid)  # its model is info.state now
    before = builds()
    info.state.n = 1000  # the caller's copy: never written, never run
    engine.on_callback(wid, "go", {})
    assert builds() - before == 1  # loaded and built afresh
    assert engine.get(wid).state.n == 2
    assert info.state.n == 1000  # and the caller's object was not touched


def test_a_workflow_another_engine_wrote_meanwhile_is_loaded_afresh() -> None:
    store = MemoryStore()
    one, other = Engine(store, [Looping]), Engine(store, [Looping])
    wid = one.new_workflow(Looping())
    one.on_callback(wid, "go", {})  # leaves its program in `one`
    other.on_callback(wid, "go", {})  # writes the workflow: `one`'s entry is stale now
    before = builds()
    one.on_callback(wid, "go", {})
    assert builds() - before == 1
    assert one.get(wid).state.n == 6  # it saw what `other` wrote
