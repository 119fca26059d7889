"""In-memory benchmarks (rows 1 and 2): per-step cost, and the Go original's loop benchmark.

Run: ``.venv/bin/python bench/bench_memory.py [--quick]`` (or ``bench/run.py --only memory``).
Each row is set against a floor measured in the same run: what any durable engine must do for
the same work, i.e. run the same actions and serialise the state after each step.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pydantic import BaseModel

from engine import (
    Engine,
    Event,
    For,
    ManualClock,
    MemoryStore,
    On,
    S,
    Section,
    Step,
    Wait,
    Workflow,
)

sys.path.insert(0, str(Path(__file__).parent))
from common import Row, Target, best_of, peak_memory, print_table

ROWS = {
    "memory.step": (1, "in-memory, per step of a 10-step workflow"),
    "memory.goloop": (2, "the Go original's loop benchmark, per run"),
}


class Empty(BaseModel):
    """Input of the loop benchmark's event."""


class TenSteps(Workflow):
    """Ten sequential trivial steps."""

    n: int = 0

    def definition(self) -> Section:
        return S(*(Step(f"step {i}", self.bump) for i in range(10)))

    def bump(self) -> None:
        self.n += 1


class GoLoop(Workflow):
    """The Go original's benchmark workflow: a loop of 5 steps, a reset, then 2 waits in a loop."""

    i: int = 0

    def definition(self) -> Section:
        return S(
            For("loop", self.i < 5, Step("inc", self.inc)),
            Step("reset", self.reset),
            For("loop2", self.i < 2,
                Wait("wait",
                    On("event", Event(model=Empty, handle=self.on_event)),
                ),
                Step("after wait", self.noop),
            ),
        )  # fmt: skip

    def inc(self) -> None:
        self.i += 1

    def reset(self) -> None:
        self.i = 0

    def on_event(self, _: Empty) -> None:
        self.i += 1

    def noop(self) -> None:
        pass


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="few runs: a smoke test")
    args = parser.parse_args(argv)
    runs = 20 if args.quick else 2000

    engine = Engine(MemoryStore(), [TenSteps, GoLoop], clock=ManualClock())

    def ten_steps() -> None:
        engine.new_workflow(TenSteps())

    def ten_steps_floor() -> None:
        # What any durable engine must do per step: run the action, serialise the state.
        model = TenSteps()
        for _ in range(10):
            model.bump()
            model.model_dump_json()

    def go_loop() -> None:
        wid = engine.new_workflow(GoLoop())
        engine.on_callback(wid, "event", {})
        engine.on_callback(wid, "event", {})

    def go_loop_floor() -> None:
        model = GoLoop()
        for _ in range(5):
            model.inc()
            model.model_dump_json()
        model.reset()
        for _ in range(2):
            model.on_event(Empty())
            model.noop()
            model.model_dump_json()

    rows = []
    for key, ours, floor, per, target in [
        ("memory.step", ten_steps, ten_steps_floor, 10, Target(10, on="ours")),
        ("memory.goloop", go_loop, go_loop_floor, 1,
         Target(170, on="ours", note="(Go: 17 µs)")),
    ]:  # fmt: skip
        issue, label = ROWS[key]
        rows.append(
            Row(
                key,
                label,
                best_of(ours, runs) / per * 1e6,
                floor=best_of(floor, runs) / per * 1e6,
                floor_what="the actions + serialising the state per step",
                target=target,
                peak=peak_memory(ours),
                issue=issue,
            )
        )
    return rows


if __name__ == "__main__":
    print_table(main())
