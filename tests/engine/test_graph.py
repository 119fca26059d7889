"""``engine.graph``: the DOT text is parsed (not grepped) and checked node by node, edge by edge."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import graphviz
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from engine import (
    Break,
    Case,
    Continue,
    Default,
    Engine,
    Event,
    For,
    Go,
    If,
    ManualClock,
    MemoryStore,
    On,
    PollingResumer,
    RetryPolicy,
    Return,
    S,
    Section,
    Step,
    Switch,
    Timeout,
    Wait,
    WaitFor,
    WaitForUserAction,
    Workflow,
    WorkflowStatus,
)
from engine.examples import Expense, Import
from engine.graph import (
    FAILED,
    THREAD_COLOURS,
    definition_graph,
    svg,
    text,
    text_tree,
    to_dot,
    tooltip,
    workflow_dot,
)
from tests.engine.dot_parse import Dot, html_text, parse

# Without the Graphviz binary the SVG tests skip, except in CI, where they run (and fail).
needs_dot = pytest.mark.skipif(
    shutil.which("dot") is None and os.environ.get("CI", "").lower() != "true",
    reason="the Graphviz `dot` binary is not installed",
)


def noop() -> None:
    pass


class Ping(BaseModel):
    """Input of the ``ping`` event."""


class Kitchen(Workflow):
    """Every kind of statement once (and a loop inside a goroutine)."""

    ready: bool = True

    def definition(self) -> Section:
        return S(
            Step("a", noop),
            Go("worker", S(
                For("inner loop", lambda: False,
                    Step("inner step", noop),
                ),
                Return("worker done"),
            ), id="w1"),
            Wait("decide",
                On("approve", WaitForUserAction(approve=noop, deny=lambda r: None)),
                On("late", Timeout(after=timedelta(minutes=5)),
                    Step("on late", noop),
                    Return(error="too late"),
                ),
            ),
            WaitFor("ready?", lambda: self.ready),
            If(self.ready, Step("yes", noop), name="check")
                .ElseIf(lambda: False, Step("maybe", noop))
                .Else(Step("no", noop)),
            Switch(
                Case(lambda: True, Step("first case", noop)),
                Default(Step("fallback", noop)),
            ),
            For("loop", lambda: True,
                Step("body", noop),
                If(lambda: True, Break()),
                If(lambda: False, Continue()),
                Step("tail", noop),
            ),
            Return({"ok": 1}),
        )  # fmt: skip


def _kitchen() -> tuple[Any, Dot]:
    d = Kitchen().definition()
    g = definition_graph(d)
    return g, parse(to_dot(g).source)


def _node(g: Any, name: str) -> str:
    return str(g.graph["names"][name])


def _edges(g: Any, kind: str) -> list[tuple[str, str, str]]:
    return [(a, b, d["label"]) for a, b, d in g.edges(data=True) if d["kind"] == kind]


# -- structure ------------------------------------------------------------------------------


def test_one_node_per_statement_with_its_kind_and_name() -> None:
    g, dot = _kitchen()
    kinds = Counter(d["kind"] for _, d in g.nodes(data=True))
    assert kinds == {
        "start": 1,
        "end": 2,  # the workflow's and the goroutine's
        "step": 10,
        "go": 1,
        "for": 2,
        "wait": 1,
        "waitfor": 1,
        "if": 3,
        "switch": 1,
        "return": 3,
        "break": 1,
        "continue": 1,
    }
    named = {d["name"] for _, d in g.nodes(data=True) if d["name"]}
    assert named == {
        "a", "worker", "inner loop", "inner step", "decide", "on late", "ready?", "check",
        "yes", "maybe", "no", "first case", "fallback", "loop", "body", "tail",
    }  # fmt: skip
    # The DOT declares exactly these nodes, each once, each labelled with its name.
    assert set(dot.nodes) == set(g.nodes)
    for name in named:
        nid = _node(g, name)
        assert html_text(dot.attr(nid, "label")).splitlines()[0] == name
        assert dot.tooltip(nid) == f"{g.nodes[nid]['kind']} {name}"
    assert dot.attr(_node(g, "decide"), "shape") == "hexagon"
    assert dot.attr(_node(g, "a"), "shape") == "box"
    assert g.nodes[_node(g, "decide")]["events"] == ["approve", "late"]
    assert g.nodes[_node(g, "inner step")]["thread"] == "worker"
    assert g.nodes[_node(g, "a")]["thread"] is None


def test_typed_edges_for_order_branches_loops_forks_cases_and_returns() -> None:
    g, dot = _kitchen()
    n = lambda name: _node(g, name)  # noqa: E731
    start, end = g.graph["threads"][None]
    w_go, w_end = g.graph["threads"]["worker"]
    assert w_go == n("worker")

    assert (start, n("a"), "") in _edges(g, "next")
    assert (n("a"), n("worker"), "") in _edges(g, "next")
    assert (n("worker"), n("decide"), "") in _edges(g, "next")
    assert _edges(g, "fork") == [(n("worker"), n("inner loop"), "go")]
    assert dot.edge(n("worker"), n("inner loop"))["style"].text == "bold"
    # no label on the fork edge: it would sit on the goroutine box's border and title
    assert "label" not in dot.edge(n("worker"), n("inner loop"))

    cases = _edges(g, "case")
    assert (n("decide"), n("on late"), "late (timeout)") in cases
    assert (n("decide"), n("ready?"), "approve (user_action)") in cases  # empty case body
    assert html_text(dot.edge(n("decide"), n("on late"))["label"].text) == "late (timeout)"

    branch = {(a, b): label for a, b, label in _edges(g, "branch")}
    assert branch[(n("check"), n("yes"))] == "then"  # plainly, whatever the condition is now
    assert branch[(n("check"), n("maybe"))] == "elif"
    assert branch[(n("check"), n("no"))] == "else"
    switch = next(a for a, d in g.nodes(data=True) if d["kind"] == "switch")
    assert branch[(switch, n("first case"))] == "case 1"
    assert branch[(switch, n("fallback"))] == "default"

    # loops: into the body, back from its end, out when the condition is false
    assert (n("loop"), n("body"), "true") in _edges(g, "loop")
    assert (n("tail"), n("loop"), "") in _edges(g, "back")
    back = dot.edge(n("tail"), n("loop"))
    assert (back["style"].text, back["constraint"].text) == ("dashed", "false")
    assert (n("inner step"), n("inner loop"), "") in _edges(g, "back")
    final = next(a for a, d in g.nodes(data=True) if d["kind"] == "return" and not d["thread"]
                 and "ok" in d["label"])  # fmt: skip
    assert (n("loop"), final, "false") in _edges(g, "exit")
    inner_exit = [(a, b) for a, b, label in _edges(g, "exit") if a == n("inner loop")]
    assert len(inner_exit) == 1 and g.nodes[inner_exit[0][1]]["kind"] == "return"
    brk = next(a for a, d in g.nodes(data=True) if d["kind"] == "break")
    cont = next(a for a, d in g.nodes(data=True) if d["kind"] == "continue")
    assert _edges(g, "break") == [(brk, final, "")]
    assert _edges(g, "continue") == [(cont, n("loop"), "")]
    assert dot.edge(cont, n("loop"))["style"].text == "dashed"

    # returns end their own thread: the workflow's end, or the goroutine's
    returns = {a: b for a, b, _ in _edges(g, "return")}
    assert returns[final] == end
    assert sorted(returns.values()).count(w_end) == 1
    assert dot.edge(final, end)["style"].text == "dotted"
    # every edge of the graph is in the DOT, and nothing else
    assert sorted((a, b) for a, b, _ in dot.edges) == sorted(g.edges)


def test_go_and_for_bodies_are_clusters() -> None:
    g, dot = _kitchen()
    go_cluster = dot.node_cluster[_node(g, "inner loop")]
    assert len(go_cluster) == 1 and go_cluster[0].startswith("cluster_go_")
    assert dot.node_cluster[_node(g, "inner step")][:1] == go_cluster
    assert dot.node_cluster[_node(g, "inner step")][1].startswith("cluster_for_")
    assert dot.node_cluster[_node(g, "body")][0].startswith("cluster_for_")
    assert dot.node_cluster[_node(g, "tail")] == dot.node_cluster[_node(g, "body")]
    # the statements outside any body, the loops themselves included, are at the top
    for name in ("a", "worker", "decide", "loop", "check"):
        assert dot.node_cluster[_node(g, name)] == ()
    assert html_text(dot.clusters[go_cluster[0]]["label"].text) == "goroutine worker"
    loop_cluster = dot.node_cluster[_node(g, "body")][0]
    assert html_text(dot.clusters[loop_cluster]["label"].text) == "loop loop"


def test_empty_cases_to_the_same_statement_share_one_edge_with_both_labels() -> None:
    def user() -> WaitForUserAction:
        return WaitForUserAction(approve=noop, deny=lambda r: None)

    d = S(
        Wait("w", On("yes", user()), On("no", user())),
        If(lambda: True).Else(),
        Step("after", noop),
    )
    g = definition_graph(d)
    w, after = _node(g, "w"), _node(g, "after")
    if_node = next(a for a, x in g.nodes(data=True) if x["kind"] == "if")
    assert g.edges[w, if_node]["labels"] == ["yes (user_action)", "no (user_action)"]
    assert g.edges[w, if_node]["label"] == "yes (user_action) | no (user_action)"
    assert g.edges[if_node, after]["labels"] == ["then", "else"]
    dot = parse(to_dot(g).source)
    assert html_text(dot.edge(w, if_node)["label"].text) == "yes (user_action) | no (user_action)"


def test_a_malformed_definition_is_refused() -> None:
    from engine import DefinitionError

    with pytest.raises(DefinitionError):
        definition_graph(S(Step("x", noop), Step("x", noop)))


# -- overlay --------------------------------------------------------------------------------


def polling() -> Engine:
    return Engine(MemoryStore(), clock=ManualClock(), resumer=PollingResumer())


def draw(engine: Engine, wid: str) -> tuple[Any, Dot]:
    info = engine.get(wid)
    definition = info.state.definition()
    g = definition_graph(definition)
    dot = workflow_dot(definition, info, engine.pending_waits(wid), engine.history(wid))
    return g, parse(dot.source)


def legend_rows(dot: Dot) -> list[tuple[str, str, str, str]]:
    """(colour, thread id, status, position) per row of the legend table."""
    label = dot.attr("legend", "label")
    return re.findall(
        r'<TR><TD BGCOLOR="([^"]+)"[^>]*> </TD><TD[^>]*>(.*?)</TD><TD[^>]*>(.*?)</TD>'
        r"<TD[^>]*>(.*?)</TD></TR>",
        label,
    )


def test_each_live_thread_is_drawn_in_its_colour_with_a_legend() -> None:
    engine = polling()
    wid = engine.new_workflow(Expense(amount=5))
    for _ in range(3):  # first action, the Go, then main blocks on the wait
        engine.step(wid)
    info = engine.get(wid)
    assert [(t.id, t.status.value) for t in info.threads] == [
        ("main", "waiting"),
        ("g1", "running"),
    ]
    g, dot = draw(engine, wid)
    wait, go = _node(g, "waiting for approval"), _node(g, "notification goroutine")
    assert dot.attr(wait, "color") == THREAD_COLOURS[0]
    assert dot.attr(go, "color") == THREAD_COLOURS[1]  # g1 stands at its start: its Go
    assert dot.attr(wait, "penwidth") == "3"
    assert f'COLOR="{THREAD_COLOURS[0]}">● main' in dot.attr(wait, "label")
    assert f'COLOR="{THREAD_COLOURS[1]}">● g1' in dot.attr(go, "label")
    assert "thread main waiting at waiting for approval" in dot.tooltip(wait)
    assert legend_rows(dot) == [
        (THREAD_COLOURS[0], "main", "waiting", "waiting for approval"),
        (THREAD_COLOURS[1], "g1", "running", "(start)"),
    ]
    # statements no thread stands on keep their plain style
    assert "color" not in dot.nodes[_node(g, "abort workflow")]


class Fan(Workflow):
    """Six goroutines that all wait at the same statement."""

    i: int = 0

    def definition(self) -> Section:
        return S(
            For("spawn", self.i < 6,
                Go("worker", S(Wait("hold", On("go", Event(model=Ping)))), id=lambda: f"w{self.i}"),
                Step("next", self.inc),
            ),
            Wait("main hold", On("stop", Event(model=Ping))),
        )  # fmt: skip

    def inc(self) -> None:
        self.i += 1


def test_threads_sharing_a_statement_are_all_named_there_in_their_colours() -> None:
    engine = polling()
    wid = engine.new_workflow(Fan())
    engine.execute(wid)
    info = engine.get(wid)
    assert [t.id for t in info.threads] == ["main", "w0", "w1", "w2", "w3", "w4", "w5"]
    g, dot = draw(engine, wid)
    hold = _node(g, "hold")
    label = dot.attr(hold, "label")
    assert dot.attr(hold, "color") == THREAD_COLOURS[1]  # the first thread standing there
    shown = re.findall(r'COLOR="([^"]+)">● ([^<]+)</FONT>', label)
    assert shown == [(THREAD_COLOURS[i], f"w{i - 1}") for i in range(1, 5)]
    assert "+2 more" in label
    tip = dot.tooltip(hold).splitlines()
    assert tip[:6] == [f"thread w{i} waiting at hold" for i in range(6)]
    # The decision's context (the plain fields) and who decides: once, not once per thread.
    assert tip[6:] == ["to decide: go (event)", "  i: 6", "  may decide: anyone"]
    assert [row[:2] for row in legend_rows(dot)] == [
        (THREAD_COLOURS[i % len(THREAD_COLOURS)], t.id) for i, t in enumerate(info.threads)
    ]
    assert THREAD_COLOURS[0] == legend_rows(dot)[0][0] == dot.attr(_node(g, "main hold"), "color")


def test_a_waiting_node_shows_the_decision_context_in_its_tooltip() -> None:
    engine = polling()
    hostile = 'x" URL="https://evil" <b>&amp;\\N'
    wid = engine.new_workflow(Expense(amount=5, requester=hostile, approvers=["role:approver"]))
    engine.execute(wid)
    g, dot = draw(engine, wid)
    tip = dot.tooltip(_node(g, "waiting for approval")).splitlines()
    assert "to decide: slackApproval (user_action)" in tip
    assert "  amount: 5" in tip and f"  requester: {hostile}" in tip  # exactly as written
    assert f"  may decide: role:approver; not {hostile}" in tip


def test_pending_waits_show_their_events_and_since_when() -> None:
    engine = polling()
    wid = engine.new_workflow(Expense(amount=5))
    engine.clock.advance(timedelta(minutes=3))  # type: ignore[attr-defined]
    engine.execute(wid)
    g, dot = draw(engine, wid)
    label = html_text(dot.attr(_node(g, "waiting for approval"), "label"))
    assert "waiting: slackApproval (user_action) since 2026-01-01 00:03" in label
    assert "waiting: timeout (timeout) since 2026-01-01 00:03" in label
    assert dot.attr(_node(g, "waiting for approval"), "fillcolor") == "#ffe08a"
    # once resolved, the wait is no longer drawn as pending
    engine.on_callback(wid, "slackApproval", {"approved": True})
    g, dot = draw(engine, wid)
    assert "waiting:" not in dot.attr(_node(g, "waiting for approval"), "label")


def test_statements_already_run_are_dimmed_ticked_and_counted_in_loops() -> None:
    engine = polling()
    wid = engine.new_workflow(Import(pages=3))
    engine.execute(wid)
    assert engine.get(wid).status is WorkflowStatus.FINISHED
    g, dot = draw(engine, wid)
    fetch = _node(g, "fetch page")
    assert html_text(dot.attr(fetch, "label")).splitlines() == ["fetch page", "✓ x3"]
    assert dot.attr(fetch, "fillcolor") == "#e6e6e6"
    assert dot.attr(fetch, "fontcolor") == "#555555"
    brk = next(a for a, d in g.nodes(data=True) if d["kind"] == "break")
    assert "✓" not in dot.attr(brk, "label")

    engine = polling()
    wid = engine.new_workflow(Expense(amount=5))
    engine.execute(wid)
    g, dot = draw(engine, wid)
    assert html_text(dot.attr(_node(g, "first action"), "label")).splitlines() == [
        "first action",
        "✓",
    ]
    assert "✓" not in dot.attr(_node(g, "abort workflow"), "label")
    assert dot.attr(_node(g, "abort workflow"), "fillcolor") == "#ffffff"


class FlakyImport(Import):
    """The bundled import, with failure counts of its own.

    ``Import`` counts simulated failures in a module global keyed by class, so a subclass
    leaves the counts other tests (the demo seeding) rely on untouched.
    """


def test_a_failed_step_is_red_with_its_error_as_tooltip() -> None:
    engine = polling()
    wid = engine.new_workflow(FlakyImport(pages=2, flaky=[0], failures=99, attempts=1))
    engine.execute(wid)
    assert engine.get(wid).status is WorkflowStatus.FAILED
    g, dot = draw(engine, wid)
    fetch = _node(g, "fetch page")
    assert dot.attr(fetch, "color") == FAILED
    assert dot.attr(fetch, "fillcolor") == "#ffd6d6"
    assert dot.tooltip(fetch) == (
        "thread main failed at fetch page: ConnectionError: page 0: service unavailable"
    )
    assert "● main failed" in html_text(dot.attr(fetch, "label"))


def test_a_step_waiting_for_its_retry_shows_the_attempt_and_error() -> None:
    engine = polling()
    wid = engine.new_workflow(FlakyImport(pages=2, flaky=[1], failures=99, attempts=3))
    engine.execute(wid)
    g, dot = draw(engine, wid)
    tip = dot.tooltip(_node(g, "fetch page"))
    assert tip == (
        "thread main running at fetch page (attempt 1): ConnectionError: page 1: service "
        "unavailable"
    )
    assert dot.attr(_node(g, "fetch page"), "color") == THREAD_COLOURS[0]


@pytest.mark.parametrize(
    ("decision", "label", "fill"),
    [
        ({"approved": True}, "result: {'approved': 5}", "#d8f5d0"),
        (
            {"approved": False, "reason": "no"},
            "error: workflow was not approved: no",
            "#ffd6d6",
        ),
    ],
)
def test_a_finished_workflow_shows_its_result_or_error(
    decision: dict[str, Any], label: str, fill: str
) -> None:
    engine = polling()
    wid = engine.new_workflow(Expense(amount=5))
    engine.execute(wid)
    engine.on_callback(wid, "slackApproval", decision)
    engine.execute(wid)
    g, dot = draw(engine, wid)
    end = g.graph["threads"][None][1]
    assert html_text(dot.attr(end, "label")) == label
    assert dot.tooltip(end) == label
    assert dot.attr(end, "fillcolor") == fill
    assert html_text(dot.graph_attrs["label"].text) == f"Expense {wid} — finished"
    # no thread is live any more: nothing is outlined
    assert not any("penwidth" in attrs for nid, attrs in dot.nodes.items() if nid != "legend")


def test_links_lead_to_named_statements() -> None:
    d = S(Step("a b/c", noop))
    dot = parse(to_dot(d, link="/wait?name={name}").source)
    nid = next(n for n, a in dot.nodes.items() if "tooltip" in a)
    assert dot.attr(nid, "URL") == "/wait?name=a%20b%2Fc"


def test_text_tree_outlines_the_definition_and_marks_threads() -> None:
    engine = polling()
    wid = engine.new_workflow(Expense(amount=5))
    engine.execute(wid)
    info = engine.get(wid)
    tree = text_tree(info.state.definition(), info)
    assert tree.splitlines()[:4] == [
        "Step('first action')",
        "Go('notification goroutine')",
        "  Step('parallel thread')",
        "Wait('waiting for approval')   <- main:waiting",
    ]
    assert "    Step('abort workflow')" in tree.splitlines()


# -- escaping -------------------------------------------------------------------------------

HOSTILE = [
    '"]; x [label="',
    "<script>alert(1)</script>",
    "{}",
    "back\\slash\\",
    "\\l\\N\\G \\",
    "two\nlines",
    "ünïcødé ✓ 😀 漢字",
    "</B></FONT><B>",
    "&amp; &lt; &#x27;",
    "-> n0 }\ndigraph { evil",
    "<<TABLE>>",
    # NUL and unpaired surrogates cannot be stored (engine._jsonsafe): test_hostile.py draws them
    # in names only, and test_escaping_helpers below checks text() on them
    "a\x01b\x1b\ufffe\x7f",
]


class Hostile(Workflow):
    """Every user-written string of a workflow set to ``t``: names, events, ids, errors."""

    t: str
    fail: bool = True
    deny: bool = False

    def definition(self) -> Section:
        t = self.t
        return S(
            Step(f"{t} step", noop),
            Go(f"{t} go", S(
                Wait(f"{t} wait",
                    On(t, WaitForUserAction(approve=noop, deny=lambda r: None)),
                    On(f"{t} 2", Event(model=Ping)),
                ),
            ), id=t),
            Step(f"{t} more", noop),  # the goroutine's turn comes: it blocks on its wait
            Step(f"{t} fail", self.maybe_fail, retry=RetryPolicy(max_attempts=1)),
            If(self.deny, Return(error=t)),
            Return({t: t}),
        )  # fmt: skip

    def maybe_fail(self) -> None:
        if self.fail:
            raise ValueError(self.t)


def _cleaned(t: str) -> str:
    """What may be shown of ``t``: control characters and XML non-characters dropped."""
    t = re.sub(r"[\x00-\x08\x0b-\x1f\x7f\ufffe\uffff]", "", t)
    return t.encode("utf-8", "backslashreplace").decode("utf-8")


def short(s: str, limit: int) -> str:
    """``s`` cut to ``limit`` characters as labels cut it."""
    return s if len(s) <= limit else s[: limit - 1] + "…"


def hostile_states(t: str) -> list[tuple[str, Engine, str]]:
    """A hostile workflow failed with a goroutine waiting, one finished, one denied."""
    out = []
    for what, fail, deny in [("failed", True, False), ("result", False, False),
                             ("error", False, True)]:  # fmt: skip
        engine = polling()
        wid = engine.new_workflow(Hostile(t=t, fail=fail, deny=deny), f"{what} {t}"[:200])
        engine.execute(wid)
        out.append((what, engine, wid))
    return out


def assert_statements(g: Any, dot: Dot, *, legend: bool) -> None:
    """One statement per node and edge, one subgraph per cluster, and nothing else."""
    assert dot.statements["node"] == len(g.nodes) + legend
    assert dot.statements["edge"] == len(g.edges)
    assert dot.statements["subgraph"] == len(dot.clusters) == len(g.graph["clusters"])
    assert dot.statements["defaults"] == 3  # graph, node and edge
    # ID = ID statements: the title, and each cluster's attributes (four; a goroutine's
    # title goes at its foot, five)
    assert dot.statements["assign"] == ("label" in dot.graph_attrs) + sum(
        len(a) for a in dot.clusters.values()
    )
    assert set(dot.graph_attrs) <= {"fontname", "fontsize", "labelloc", "rankdir", "label"}
    for name, attrs in dot.clusters.items():
        go = {"labelloc"} if name.startswith("cluster_go_") else set()
        assert set(attrs) == {"color", "fontsize", "label", "style", *go}


def check_statements(g: Any, dot: Dot, t: str) -> None:
    """The DOT holds exactly the graph's nodes and edges, with ``t`` inside their values."""
    assert set(dot.nodes) == set(g.nodes) | {"legend"}
    assert sorted((a, b) for a, b, _ in dot.edges) == sorted(g.edges)
    assert_statements(g, dot, legend=True)
    shown = _cleaned(t)
    step = _node(g, f"{t} step")
    assert dot.tooltip(step) == f"step {shown} step"
    assert html_text(dot.attr(step, "label")).startswith(f"{shown} step"[:79])


@pytest.mark.parametrize("t", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_text_stays_text_in_the_dot(t: str) -> None:
    for what, engine, wid in hostile_states(t):
        info = engine.get(wid)
        definition = info.state.definition()
        g = definition_graph(definition)
        dot = parse(workflow_dot(definition, info, engine.pending_waits(wid),
                                 engine.history(wid)).source)  # fmt: skip
        check_statements(g, dot, t)
        shown = _cleaned(t)
        end = g.graph["threads"][None][1]
        if what == "failed":
            fail = _node(g, f"{t} fail")
            assert dot.tooltip(fail) == f"thread main failed at {shown} fail: ValueError: {shown}"
            wait_label = html_text(dot.attr(_node(g, f"{t} wait"), "label"))
            assert f"waiting: {short(shown, 30)} (user_action)" in wait_label
            assert html_text(legend_rows(dot)[1][1]) == short(shown, 30)  # the goroutine's id
        elif what == "result":
            assert dot.tooltip(end) == _cleaned("result: " + str({t: t}))
        else:
            assert dot.tooltip(end) == f"error: {shown}"


@needs_dot
@pytest.mark.parametrize("t", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_text_renders_as_text_in_the_svg(t: str) -> None:
    for what, engine, wid in hostile_states(t):
        info = engine.get(wid)
        definition = info.state.definition()
        g = definition_graph(definition)
        out = svg(workflow_dot(definition, info, engine.pending_waits(wid), engine.history(wid)))
        assert out is not None  # dot parsed it and rendered it without an error
        root = ET.fromstring(out)  # well-formed XML
        ns = "{http://www.w3.org/2000/svg}"
        tags = {el.tag.removeprefix(ns) for el in root.iter()}
        assert "script" not in tags and "foreignObject" not in tags
        nodes = [el for el in root.iter(f"{ns}g") if el.get("class") == "node"]
        assert len(nodes) == len(g.nodes) + 1  # + the legend
        assert not re.search(r"<script", out, re.I)
        shown = _cleaned(t)
        texts = "\n".join("".join(el.itertext()) for el in root.iter(f"{ns}text"))
        titles = [v for el in root.iter() for k, v in el.attrib.items() if k.endswith("}title")]
        for line in f"{shown} step".splitlines():
            assert line.strip() in texts, (what, line)
        assert f"step {shown} step" in titles
        if what == "failed":
            assert f"thread main failed at {shown} fail: ValueError: {shown}" in titles


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(min_size=1, max_size=30).filter(lambda s: s.strip() != ""))
def test_no_user_text_can_create_a_dot_statement(t: str) -> None:
    d = Hostile(t=t).definition()
    g = definition_graph(d)
    dot = parse(to_dot(g, title=t, link="https://x/{name}").source)
    assert set(dot.nodes) == set(g.nodes)
    assert sorted((a, b) for a, b, _ in dot.edges) == sorted(g.edges)
    assert_statements(g, dot, legend=False)
    shown = _cleaned(t)
    assert dot.tooltip(_node(g, f"{t} step")) == f"step {shown} step"
    assert html_text(dot.graph_attrs["label"].text) == (
        shown if len(shown) <= 120 else shown[:119] + "…"
    )


def test_escaping_helpers() -> None:
    assert text('<b a="1">&\n') == "&lt;b a=&quot;1&quot;&gt;&amp;<BR/>"
    assert text("x" * 100, 10) == "x" * 9 + "…"
    assert text("a\x00\x1b\ufffeb\r") == "ab"
    assert text("\\N") == "\\\\N"  # Graphviz reads \\ as \ (and \N as the node's name)
    assert text("\ud800") == "\\\\ud800"  # a lone surrogate is shown as its escape
    # A tooltip that looks like HTML is still quoted text, never a raw <...> value.
    g = graphviz.Digraph()
    g.node("a", tooltip=tooltip("<x>]; evil [label=<y>"))
    dot = parse(g.source)
    assert set(dot.nodes) == {"a"}
    assert dot.nodes["a"]["tooltip"].kind == "quoted"
    assert dot.tooltip("a") == "<x>]; evil [label=<y>"
    # Graphviz decodes entities in tooltips and reads backslashes twice: see tooltip().
    assert tooltip('&lt; a\\"b\nc') == "&amp;lt; a" + "\\" * 4 + '"b\\nc'


# -- size -----------------------------------------------------------------------------------


def big_definition(blocks: int) -> tuple[Section, int]:
    """``blocks`` blocks of 11 statements each (steps, a loop, a goroutine, a wait, a branch)."""
    stmts: list[Any] = []
    for i in range(blocks):
        stmts += [
            Step(f"s{i}", noop),
            For(f"loop{i}", lambda: False, Step(f"ls{i}", noop), If(lambda: True, Break())),
            Go(f"go{i}", S(Step(f"gs{i}", noop))),
            Wait(f"w{i}", On(f"e{i}", WaitForUserAction(approve=noop, deny=lambda r: None))),
            If(lambda: True, Step(f"y{i}", noop)).Else(Step(f"n{i}", noop)),
        ]
    stmts.append(Return())
    # per block: s, for, ls, if, break, go, gs, w, if, y, n; plus the Return
    return S(*stmts), blocks * 11 + 1


def test_a_definition_of_300_statements_renders() -> None:
    d, statements = big_definition(30)
    assert statements >= 300
    t0 = time.perf_counter()
    g = definition_graph(d)
    source = to_dot(g).source
    elapsed = time.perf_counter() - t0
    # one node per statement, plus the start, the end and one end per goroutine
    assert len(g.nodes) == statements + 2 + 30
    assert len(parse(source).nodes) == len(g.nodes)
    print(f"\n{statements} statements: graph + DOT in {elapsed * 1000:.1f} ms (see bench/)")


def test_the_readme_example_draws_a_waiting_expense(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "workflow_dot" in b]
    assert len(blocks) == 1
    out = subprocess.run([sys.executable, "-c", blocks[0]], capture_output=True, text=True,
                         timeout=60, cwd=tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stderr
    dot = parse(out.stdout)
    assert any("waiting: slackApproval" in a["label"].text for a in dot.nodes.values())
    assert "legend" in dot.nodes
