"""In-memory benchmarks: per-step cost, and the Go original's own loop benchmark ported.

Run: ``.venv/bin/python bench/bench_memory.py [--quick]``. Each row prints our figure, a
floor measured in the same run, and the ratio (see bench/README.md for what each floor is).
"""

from __future__ import annotations

import argparse
import gc
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

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


def timed(fn: Callable[[], Any], runs: int) -> tuple[float, int]:
    """Seconds per run of ``fn`` (best of three batches) and peak traced memory in bytes."""
    fn()  # warm up
    best = float("inf")
    for _ in range(3):
        gc.collect()
        t0 = time.perf_counter()
        for _ in range(runs):
            fn()
        best = min(best, (time.perf_counter() - t0) / runs)
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return best, peak


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
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
    for name, ours, floor, per in [
        ("in-memory, per step (10-step workflow)", ten_steps, ten_steps_floor, 10),
        ("Go original's loop benchmark, per run", go_loop, go_loop_floor, 1),
    ]:
        t, peak = timed(ours, runs)
        f, _ = timed(floor, runs)
        rows.append(
            {
                "bench": name,
                "ours_us": t / per * 1e6,
                "floor_us": f / per * 1e6,
                "ratio": t / f,
                "peak_kib": peak / 1024,
            }
        )
    print(f"{'benchmark':44} {'ours':>10} {'floor':>10} {'ratio':>7} {'peak mem':>10}")
    for r in rows:
        print(
            f"{r['bench']:44} {r['ours_us']:8.1f}µs {r['floor_us']:8.1f}µs "
            f"{r['ratio']:6.1f}x {r['peak_kib']:7.0f}KiB"
        )
    return rows


if __name__ == "__main__":
    main()
