"""Callback latency (row 6): from ``Engine.on_callback`` to the next step done.

A workflow loops on a wait for an event and a step after it. With the default
``InlineResumer`` the callback runs the rest in the calling process: ``on_callback`` returns
once the handler ran, the step after the wait was checkpointed and the thread waits again,
which is the latency timed here. In memory and on SQLite.

Floors, measured in the same run: in memory, what any durable engine must do, i.e. run the
handler and the step's action and serialise the state after each; on SQLite, two SQLAlchemy
Core UPDATE + commit of a row of the same size (the callback's write and the step's
checkpoint). ``bench_celery.py`` measures the same through Celery and ``gorch worker``.

Run: ``.venv/bin/python bench/bench_callback.py [--quick]`` (or ``bench/run.py --only
callback``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from pydantic import BaseModel

from engine import (
    Engine,
    Event,
    For,
    MemoryStore,
    On,
    S,
    Section,
    SQLModelStore,
    Step,
    Wait,
    Workflow,
)

sys.path.insert(0, str(Path(__file__).parent))
from bench_durable import core_floor
from common import Row, Target, best_of, peak_memory, print_table

ROWS = {
    "callback.memory": (6, "on_callback → next step done, in memory"),
    "callback.sqlite": (6, "on_callback → next step done, SQLite"),
}


class Go(BaseModel):
    """The event's input."""


class Loop(Workflow):
    """Waits for ``go``, runs a step, and waits again (until a billion rounds)."""

    n: int = 0
    payload: str = "x" * 200

    def definition(self) -> Section:
        return S(
            For("loop", lambda: self.n < 10**9,
                Wait("wait", On("go", Event(model=Go, handle=self.on_go))),
                Step("next", self.bump),
            ),
        )  # fmt: skip

    def on_go(self, _: Go) -> None:
        self.n += 1

    def bump(self) -> None:
        self.n += 1


def latency(engine: Engine, runs: int) -> tuple[float, int]:
    """Seconds per callback to the next step done, and the peak bytes of one."""
    wid = engine.new_workflow(Loop())

    def one() -> None:
        engine.on_callback(wid, "go", {})

    return best_of(one, runs), peak_memory(one)


def memory_floor() -> None:
    model = Loop()
    model.on_go(Go.model_validate({}))
    model.model_dump_json()
    model.bump()
    model.model_dump_json()


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="few runs: a smoke test")
    args = parser.parse_args(argv)
    runs = 20 if args.quick else 1000

    ours, peak = latency(Engine(MemoryStore(), [Loop]), runs)
    floor = best_of(memory_floor, runs)
    rows = [Row("callback.memory", ROWS["callback.memory"][1], ours * 1e6, floor=floor * 1e6,
                floor_what="handler + action + 2 state serialisations", peak=peak,
                target=Target(30, on="ours"), issue=6)]  # fmt: skip

    with tempfile.TemporaryDirectory() as tmp:
        store = SQLModelStore(f"sqlite:///{tmp}/callback.db")
        try:
            ours, peak = latency(Engine(store, [Loop]), max(5, runs // 5))
        finally:
            store.close()
        floor = 2 * core_floor(f"sqlite:///{tmp}/floor.db", max(5, runs // 5))
    rows.append(Row("callback.sqlite", ROWS["callback.sqlite"][1], ours * 1e6, floor=floor * 1e6,
                    floor_what="2 SQLAlchemy Core UPDATE + commit", peak=peak,
                    target=Target(3), issue=6))  # fmt: skip
    return rows


if __name__ == "__main__":
    print_table(main())
