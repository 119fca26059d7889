"""Timeline benchmark (extra rows, no target): ``Engine.timeline`` of a 1,000-line history.

The floor is reading that history (``Engine.history``) from the same store in the same run:
the timeline reads it too (and the workflow's row, to tell an unknown id), then replays the
positions line by line in Python. The ratio is what the replay adds to the read.

Run: ``.venv/bin/python bench/bench_timeline.py [--quick] [--lines N]`` (or ``bench/run.py
--only timeline``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import Row, best_of, peak_memory, print_table

from engine import (
    Engine,
    For,
    ManualClock,
    MemoryStore,
    PollingResumer,
    S,
    Section,
    SQLModelStore,
    Step,
    Store,
    Workflow,
)

ROWS = {
    "timeline.memory": (None, "timeline of a 1,000-line history, memory store"),
    "timeline.sqlite": (None, "timeline of a 1,000-line history, SQLite"),
}


class Loop(Workflow):
    """One ``step`` line per iteration: ``created`` + n steps + ``thread_end`` + ``finished``."""

    n: int = 0
    until: int = 997

    def definition(self) -> Section:
        return S(For("loop", lambda: self.n < self.until, Step("tick", self.tick)))

    def tick(self) -> None:
        self.n += 1


def workflow(store: Store, lines: int) -> tuple[Engine, str]:
    engine = Engine(store, [Loop], clock=ManualClock(), resumer=PollingResumer(),
                    max_steps=lines + 10)  # fmt: skip
    wid = engine.new_workflow(Loop(until=lines - 3), "bench-timeline")
    engine.execute(wid)
    assert len(engine.history(wid)) == lines, len(engine.history(wid))
    return engine, wid


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="few runs: a smoke test")
    parser.add_argument("--lines", type=int, default=1000, help="history lines")
    args = parser.parse_args(argv)
    runs = 3 if args.quick else 20
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        sql = SQLModelStore(f"sqlite:///{tmp}/bench.db")
        try:
            for key, store in (("timeline.memory", MemoryStore()), ("timeline.sqlite", sql)):
                engine, wid = workflow(store, args.lines)
                points = engine.timeline(wid)
                assert len(points) == args.lines and points[-1].status == "finished"
                floor = best_of(lambda e=engine, w=wid: e.history(w), runs)
                replayed = lambda e=engine, w=wid: e.timeline(w)  # noqa: E731
                ours = best_of(replayed, runs)
                what = ROWS[key][1].replace("1,000", f"{args.lines:,}")
                rows.append(Row(key, what, ours * 1e3, unit="ms", floor=floor * 1e3,
                                floor_what="reading that history (Engine.history)",
                                peak=peak_memory(replayed)))  # fmt: skip
        finally:
            sql.close()
    return rows


if __name__ == "__main__":
    print_table(main(), "timeline benchmarks")
