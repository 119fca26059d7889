"""Graph benchmarks (extra rows, no target): drawing a definition of 300+ statements, with
and without a workflow's overlay.

Each row is set against a floor measured in the same run on a graph of the same size:
building a plain ``networkx.DiGraph`` with as many nodes and edges (with their attributes) and
writing it as DOT with the ``graphviz`` package, with no statements, escaping or overlay. With
the Graphviz binary installed, the SVG layout of our DOT is set against the layout of that
plain DOT.

Run: ``.venv/bin/python bench/bench_graph.py [--quick] [--blocks N]`` (or ``bench/run.py
--only graph``). The SVG row's peak memory is the maximum RSS of the ``dot`` process.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import graphviz
import networkx as nx

sys.path.insert(0, str(Path(__file__).parent))
from common import Row, best_of, peak_memory, print_table, run_process, skipped

from engine import (
    Break,
    For,
    Go,
    If,
    On,
    Return,
    S,
    Section,
    Step,
    Wait,
    WaitForUserAction,
)
from engine._records import (
    HistoryEntry,
    Phase,
    ThreadInfo,
    ThreadStatus,
    WorkflowInfo,
    WorkflowStatus,
)
from engine.graph import Overlay, definition_graph, svg, to_dot

ROWS = {
    "graph.dot": (None, "graph + DOT of a definition"),
    "graph.overlay": (None, "graph + DOT with a workflow's overlay"),
    "graph.svg": (None, "SVG layout by Graphviz dot"),
}


def noop() -> None:
    pass


def deny(reason: str) -> None:
    pass


def big_definition(blocks: int) -> tuple[Section, int]:
    """``blocks`` blocks of 11 statements (steps, a loop, a goroutine, a wait, a branch)."""
    stmts: list[Any] = []
    for i in range(blocks):
        stmts += [
            Step(f"s{i}", noop),
            For(f"loop{i}", lambda: False, Step(f"ls{i}", noop), If(lambda: True, Break())),
            Go(f"go{i}", S(Step(f"gs{i}", noop))),
            Wait(f"w{i}", On(f"e{i}", WaitForUserAction(approve=noop, deny=deny))),
            If(lambda: True, Step(f"y{i}", noop)).Else(Step(f"n{i}", noop)),
        ]
    stmts.append(Return())
    return S(*stmts), blocks * 11 + 1


def overlay(blocks: int) -> Overlay:
    """A running workflow halfway through: a thread per goroutine, history for half."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    half = blocks // 2
    threads = [ThreadInfo("main", "main", ThreadStatus.WAITING, f"w{half}", Phase.AT, None, 0,
                          None, None)]  # fmt: skip
    threads += [
        ThreadInfo(f"g{i}", f"go{i}", ThreadStatus.RUNNING, f"gs{i}", Phase.AT, None, 0, None, None)
        for i in range(half)
    ]
    info: WorkflowInfo[Any] = WorkflowInfo(
        "bench", "Big", WorkflowStatus.WAITING, None, tuple(threads), None, None, 0, 0, now, now,
        None,
    )  # fmt: skip
    history = [
        HistoryEntry("bench", now, "step", "main", f"{name}{i}")
        for i in range(half)
        for name in ("s", "ls", "y")
    ]
    return Overlay(info, (), history)


def plain_floor(nodes: int, edges: list[tuple[int, int]]) -> str:
    """A plain DiGraph of the same size, written as DOT with no escaping or overlay."""
    g: nx.DiGraph[int] = nx.DiGraph()
    for i in range(nodes):
        g.add_node(i, kind="step", label=f"n{i}", name=f"n{i}")
    for a, b in edges:
        g.add_edge(a, b, kind="next", label="")
    dot = graphviz.Digraph("plain")
    for i, data in g.nodes(data=True):
        dot.node(str(i), label=data["label"], shape="box")
    for a, b in g.edges:
        dot.edge(str(a), str(b))
    return str(dot.source)


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="few runs: a smoke test")
    parser.add_argument("--blocks", type=int, default=30, help="blocks of 11 statements")
    args = parser.parse_args(argv)
    runs = 3 if args.quick else 20
    definition, statements = big_definition(args.blocks)
    g = definition_graph(definition)
    index = {n: i for i, n in enumerate(g.nodes)}
    edges = [(index[a], index[b]) for a, b in g.edges]
    ov = overlay(args.blocks)

    def ours() -> str:
        return str(to_dot(definition_graph(definition)).source)

    def ours_overlay() -> str:
        return str(to_dot(definition_graph(definition), ov).source)

    def floor() -> str:
        return plain_floor(len(g.nodes), edges)

    size = f"{statements} statements ({len(g.nodes)} nodes, {len(g.edges)} edges)"
    rows: list[Row] = []
    f = best_of(floor, runs)
    for key, fn in [("graph.dot", ours), ("graph.overlay", ours_overlay)]:
        rows.append(Row(key, f"{ROWS[key][1]}, {size}", best_of(fn, runs) * 1e3, unit="ms",
                        floor=f * 1e3, floor_what="networkx graph of that size as DOT",
                        peak=peak_memory(fn)))  # fmt: skip
    if svg(graphviz.Digraph()) is None:
        return rows + skipped(ROWS, "the Graphviz `dot` binary is not installed", "graph.svg")
    ours_dot = to_dot(definition_graph(definition), ov)
    plain = graphviz.Source(floor())
    t = best_of(lambda: svg(ours_dot), max(1, runs // 4), batches=2)
    fl = best_of(lambda: plain.pipe(format="svg"), max(1, runs // 4), batches=2)
    _, rss = run_process(["dot", "-Tsvg"], ours_dot.source.encode())
    rows.append(Row("graph.svg", f"{ROWS['graph.svg'][1]}, {size}", t * 1e3, unit="ms",
                    floor=fl * 1e3, floor_what="dot on the plain graph", peak=rss,
                    peak_kind="rss"))  # fmt: skip
    return rows


if __name__ == "__main__":
    print_table(main(), "graph benchmarks")
