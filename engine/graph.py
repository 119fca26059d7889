"""Draw definitions as graphs: definition -> ``networkx.DiGraph`` -> Graphviz DOT with an overlay.

``definition_graph`` gives one node per statement (plus start and end nodes per thread) and
typed edges: ``next``, ``branch``, ``loop`` (into a loop body), ``back`` (loop back-edge),
``exit`` (loop condition false), ``fork`` (a ``Go`` starting a thread), ``case`` (a wait
case), ``return``, ``break`` and ``continue``. ``to_dot`` renders it with the runtime state of
one workflow laid over it: each live thread's position in its own colour, pending waits with
their events, statements already run dimmed with a count, failed steps in red, the result.

Every string a user wrote (names, events, errors, results) is escaped: it renders as text
and can never break or inject DOT or HTML.
"""

from __future__ import annotations

import html
import itertools
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, assert_never

import graphviz
import networkx as nx

from engine._definition.compiler import compile_definition
from engine._definition.statements import (
    Break,
    Continue,
    For,
    Go,
    If,
    Return,
    Section,
    Statement,
    StatementKind,
    Step,
    Switch,
    Wait,
    WaitFor,
)
from engine._outline import branch_label as _branch_label
from engine._outline import text_tree
from engine._records import (
    MAIN,
    HistoryEntry,
    HistoryKind,
    Phase,
    ThreadInfo,
    ThreadStatus,
    WaitInfo,
    WorkflowInfo,
)

STYLES: dict[str, dict[str, str]] = {
    "step": {"shape": "box", "style": "rounded,filled", "fillcolor": "#ffffff"},
    "wait": {"shape": "hexagon", "style": "filled", "fillcolor": "#fff4d6"},
    "waitfor": {"shape": "hexagon", "style": "filled,dashed", "fillcolor": "#fff4d6"},
    "go": {"shape": "parallelogram", "style": "filled", "fillcolor": "#e8f0ff"},
    "if": {"shape": "diamond", "style": "filled", "fillcolor": "#f3f3f3"},
    "switch": {"shape": "diamond", "style": "filled", "fillcolor": "#f3f3f3"},
    "for": {"shape": "ellipse", "style": "filled", "fillcolor": "#f0e8ff"},
    "return": {"shape": "box", "style": "filled", "fillcolor": "#eeeeee"},
    "break": {"shape": "plaintext", "style": "", "fillcolor": ""},
    "continue": {"shape": "plaintext", "style": "", "fillcolor": ""},
    "start": {
        "shape": "circle",
        "style": "filled",
        "fillcolor": "#333333",
        "width": "0.25",
        "fontcolor": "#ffffff",
    },
    "end": {
        "shape": "doublecircle",
        "style": "filled",
        "fillcolor": "#333333",
        "width": "0.2",
        "fontcolor": "#ffffff",
    },
}
"""Node styles by statement kind; change them to restyle every graph."""

THREAD_COLOURS = ["#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#17becf", "#e377c2",
                  "#8c564b", "#bcbd22"]  # fmt: skip
"""The colours live threads are drawn in, in order of the threads' creation."""

FAILED = "#d62728"
# Characters XML 1.0 forbids (Graphviz parses HTML labels as XML) and DEL.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff]")


def _clean(value: Any) -> str:
    # Control characters are dropped; lone surrogates (which UTF-8 cannot encode, so the
    # Graphviz pipe would fail on them) become visible ``\udxxx`` text.
    s = _CONTROL.sub("", str(value)).replace("\r", "")
    return s.encode("utf-8", "backslashreplace").decode("utf-8")


def text(value: Any, limit: int = 80) -> str:
    """``value`` as short HTML-escaped text, safe inside an HTML-like DOT label.

    Graphviz expands ``\\N``, ``\\G``, ``\\E``, ``\\T``, ``\\H`` and ``\\L`` (object names)
    even inside HTML labels, and reads ``\\\\`` as one backslash: so backslashes are doubled.
    """
    s = _clean(value)
    if len(s) > limit:
        s = s[: limit - 1] + "…"
    return html.escape(s.replace("\\", "\\\\"), quote=True).replace("\n", "<BR/>")


def tooltip(value: Any, limit: int = 1000) -> str:
    """``value`` as a DOT tooltip attribute that Graphviz shows exactly as written.

    Graphviz decodes HTML entities in a tooltip, then reads its backslash escapes twice
    (``\\n`` as a newline, then ``\\\\`` as a backslash and ``\\N`` as the node's name), so
    ``&`` becomes ``&amp;`` and each backslash four. The result is a ``graphviz.nohtml``
    string: a value that looks like ``<...>`` is still quoted text, never a raw HTML string.
    """
    s = _clean(value)[:limit]
    s = s.replace("&", "&amp;").replace("\\", "\\" * 4).replace("\n", "\\n")
    out: str = graphviz.nohtml(s)
    return out


def _escstring(value: str) -> str:
    """``value`` as a DOT escString attribute (a URL): backslashes doubled, quoted as text."""
    out: str = graphviz.escape(_clean(value))
    return out


@dataclass
class _Builder:
    g: nx.DiGraph[str] = field(default_factory=nx.DiGraph)
    ids: Iterable[int] = field(default_factory=itertools.count)

    def node(
        self,
        kind: str,
        label: str,
        *,
        name: str | None = None,
        cluster: tuple[str, ...] = (),
        thread: str | None = None,
        **attrs: Any,
    ) -> str:
        nid = f"n{next(iter(self.ids))}"
        self.g.add_node(
            nid, kind=kind, label=label, name=name, cluster=cluster, thread=thread, **attrs
        )
        if name is not None:
            self.g.graph["names"][name] = nid
        return nid

    def edge(self, a: str, b: str, kind: str, label: str = "") -> None:
        # Two cases (or branches) with empty bodies lead from one node to the same next one;
        # a DiGraph holds one edge per pair, so they share it with both labels.
        if self.g.has_edge(a, b):
            data = self.g.edges[a, b]
            data["labels"].append(label)
            data["label"] = " | ".join(x for x in data["labels"] if x)
            return
        self.g.add_edge(a, b, kind=kind, label=label, labels=[label])


Exits = list[tuple[str, str, str]]  # (node, edge kind, label) still to connect onward


@dataclass
class _Ctx:
    thread: str | None
    cluster: tuple[str, ...]
    end: str
    loop: str | None = None  # the For node that Continue goes back to
    breaks: Exits | None = None  # where Break exits of the innermost loop collect


def definition_graph(definition: Section) -> nx.DiGraph[str]:
    """One node per statement (kind, label, name, thread, cluster) and typed edges.

    Every edge has ``kind`` and ``label``. Where two cases or branches with empty bodies lead
    from one node to the same next node, they share one edge: ``labels`` lists each one's
    label and ``label`` joins them with ``" | "``.

    ``graph.graph["names"]`` maps statement names to node ids; ``graph.graph["clusters"]``
    maps cluster ids to their titles. Raises ``DefinitionError`` for a malformed definition.
    """
    compile_definition(definition)  # a graph of a broken definition would mislead
    b = _Builder()
    b.g.graph.update(names={}, clusters={}, threads={})
    start = b.node("start", "start", thread=None)
    end = b.node("end", "end", thread=None)
    b.g.graph["threads"][None] = (start, end)
    entry, exits = _section(b, definition.stmts, _Ctx(None, (), end))
    _join(b, start, "next", "", entry, end, exits)
    return b.g


def _join(
    b: _Builder, src: str, kind: str, label: str, entry: str | None, end: str, exits: Exits
) -> None:
    if entry is None:
        b.edge(src, end, kind, label)
        return
    b.edge(src, entry, kind, label)
    for node, k, lab in exits:
        b.edge(node, end, k, lab)


def _section(b: _Builder, stmts: Sequence[Statement], ctx: _Ctx) -> tuple[str | None, Exits]:
    """Build ``stmts``; return the entry node and the exits to connect to what follows."""
    entry: str | None = None
    pending: Exits = []
    for st in stmts:
        first, exits = _stmt(b, st, ctx)
        if first is None:  # an empty section: what was pending stays pending
            continue
        if entry is None:
            entry = first
        for node, kind, label in pending:
            b.edge(node, first, kind, label)
        pending = exits
    return entry, pending


def _label(kind: str, title: str, detail: str = "") -> str:
    small = f'<BR/><FONT POINT-SIZE="9" COLOR="#666666">{detail}</FONT>' if detail else ""
    return f"<B>{title}</B>{small}" if title else f'<FONT POINT-SIZE="10">{kind}</FONT>{small}'


def _stmt(b: _Builder, st: Statement, ctx: _Ctx) -> tuple[str | None, Exits]:
    common: dict[str, Any] = {"cluster": ctx.cluster, "thread": ctx.thread}
    match st:
        case Section():
            return _section(b, st.stmts, ctx)
        case Step():
            n = b.node(st.kind, _label("step", text(st.name)), name=st.name, **common)
            return n, [(n, "next", "")]
        case WaitFor():
            n = b.node(st.kind, _label("wait for", text(st.name), "wait for"), name=st.name,
                       **common)  # fmt: skip
            return n, [(n, "next", "")]
        case Wait():
            return _wait(b, st, ctx, common)
        case Go():
            n = b.node(st.kind, _label("go", text(st.name), "go"), name=st.name, **common)
            cluster = (*ctx.cluster, f"cluster_go_{n}")
            b.g.graph["clusters"][cluster[-1]] = f"goroutine {st.name}"
            g_end = b.node("end", "end", cluster=cluster, thread=st.name)
            b.g.graph["threads"][st.name] = (n, g_end)
            first, g_exits = _section(b, st.section.stmts, _Ctx(st.name, cluster, g_end))
            _join(b, n, "fork", "go", first, g_end, g_exits)
            return n, [(n, "next", "")]
        case If() | Switch():
            return _branches(b, st, ctx, common)
        case For():
            n = b.node(st.kind, _label("for", text(st.name), "loop"), name=st.name, **common)
            cluster = (*ctx.cluster, f"cluster_for_{n}")
            b.g.graph["clusters"][cluster[-1]] = f"loop {st.name}"
            breaks: Exits = []
            inner = _Ctx(ctx.thread, cluster, ctx.end, loop=n, breaks=breaks)
            first, body_exits = _section(b, st.body.stmts, inner)
            if first is not None:
                b.edge(n, first, "loop", "true")
            for node, _, label in body_exits:
                b.edge(node, n, "back", label)
            return n, [(n, "exit", "false"), *breaks]
        case Return():
            detail = (
                f"error: {text(st.error, 40)}"
                if st.error
                else (text(st.value, 40) if st.value is not None else "")
            )
            n = b.node(st.kind, _label("return", "", detail), **common)
            b.edge(n, ctx.end, "return", "")
            return n, []
        case Break():
            n = b.node(st.kind, _label("break", ""), **common)
            if ctx.breaks is not None:
                ctx.breaks.append((n, "break", ""))
            return n, []
        case Continue():
            n = b.node(st.kind, _label("continue", ""), **common)
            if ctx.loop is not None:
                b.edge(n, ctx.loop, "continue", "")
            return n, []
        case _:
            assert_never(st)


def _wait(b: _Builder, st: Wait, ctx: _Ctx, common: dict[str, Any]) -> tuple[str, Exits]:
    n = b.node(
        st.kind,
        _label("wait", text(st.name), "wait"),
        name=st.name,
        events=[c.event for c in st.cases],
        **common,
    )
    exits: Exits = []
    for case in st.cases:
        ev = f"{case.event} ({getattr(case.handler, 'type', '?')})"
        first, case_exits = _section(b, case.body.stmts, ctx)
        if first is None:
            exits.append((n, "case", ev))
        else:
            b.edge(n, first, "case", ev)
            exits.extend(case_exits)
    return n, exits


def _branches(b: _Builder, st: If | Switch, ctx: _Ctx, common: dict[str, Any]) -> tuple[str, Exits]:
    kind = st.kind
    n = b.node(
        kind,
        _label(kind, text(st.name) if st.name else "", kind if st.name else ""),
        name=st.name,
        **common,
    )
    exits: Exits = []
    has_default = False
    for i, br in enumerate(st.branches):
        has_default = has_default or br.default
        label = _branch_label(kind, i, br)
        first, br_exits = _section(b, br.body.stmts, ctx)
        if first is None:
            exits.append((n, "branch", label))
        else:
            b.edge(n, first, "branch", label)
            exits.extend(br_exits)
    if not has_default:
        exits.append((n, "branch", "else" if kind == StatementKind.IF else "no case"))
    return n, exits


Link = str | Callable[[str, str], str | None]
"""How ``to_dot`` makes nodes links: a URL template, or a function of (name, kind)."""


_RAN = (HistoryKind.STEP, HistoryKind.GO, HistoryKind.CALLBACK, HistoryKind.WAITFOR_DONE)
"""History lines that mean their statement ran: a ran statement is drawn dimmed, with a count."""


@dataclass(frozen=True)
class Overlay:
    """The runtime state drawn over a definition graph."""

    info: WorkflowInfo[Any] | None = None
    waits: Sequence[WaitInfo] = ()
    history: Sequence[HistoryEntry] = ()


def thread_colours(info: WorkflowInfo[Any]) -> dict[str, str]:
    """The colour of each thread of ``info``, stable in thread creation order."""
    return {t.id: THREAD_COLOURS[i % len(THREAD_COLOURS)] for i, t in enumerate(info.threads)}


def to_dot(
    definition: Section | nx.DiGraph[str],
    overlay: Overlay | None = None,
    *,
    title: str | None = None,
    link: Link | None = None,
) -> graphviz.Digraph:
    """Render a definition (or its graph) as a ``graphviz.Digraph``; ``.source`` is DOT.

    Args:
        overlay: a workflow's threads, waits and history to draw over the definition.
        title: a caption drawn above the graph.
        link: makes named nodes links, so a click in the browser leads somewhere (the UI's
            resolve form, its goto form): a URL template with ``{name}`` (URL-quoted) for
            every named node, or a function of (name, kind) giving a URL or None for none.
    """
    g = definition if isinstance(definition, nx.DiGraph) else definition_graph(definition)
    ov = overlay or Overlay()
    dot = graphviz.Digraph("workflow", graph_attr={"rankdir": "TB", "fontname": "Helvetica",
                                                   "fontsize": "11", "labelloc": "t"},
                           node_attr={"fontname": "Helvetica", "fontsize": "11"},
                           edge_attr={"fontname": "Helvetica", "fontsize": "9"})  # fmt: skip
    if title:
        dot.attr(label=f"<<B>{text(title, 120)}</B>>")
    attrs = _overlay_attrs(g, ov, link)
    _emit_clusters(dot, g, attrs)
    for a, bnode, data in g.edges(data=True):
        e: dict[str, str] = {}
        if data["label"]:
            e["label"] = f"<{text(data['label'], 40)}>"
        if data["kind"] in ("back", "continue"):
            e.update(style="dashed", constraint="false")
        elif data["kind"] == "fork":
            # Bold blue into the goroutine's box says "go"; a label there would sit on the
            # box's border and its title.
            e.pop("label", None)
            e.update(style="bold", color="#4a6fd1", tooltip=tooltip(data["label"] or "go"))
        elif data["kind"] == "return":
            e.update(style="dotted")
        dot.edge(a, bnode, **e)
    if ov.info is not None:
        _legend(dot, ov.info)
    return dot


def _overlay_attrs(g: nx.DiGraph[str], ov: Overlay, link: Link | None) -> dict[str, dict[str, str]]:
    names: dict[str, str] = g.graph["names"]
    attrs: dict[str, dict[str, str]] = {}
    extra: dict[str, list[str]] = {}  # node -> lines added under its label
    for nid, data in g.nodes(data=True):
        a = {k: v for k, v in STYLES.get(data["kind"], {}).items() if v}
        if data["name"] is not None:
            a["tooltip"] = tooltip(f"{data['kind']} {data['name']}")
            url = (link(data["name"], data["kind"]) if callable(link)
                   else link.format(name=_url_quote(data["name"])) if link else None)  # fmt: skip
            if url:
                a["URL"] = _escstring(url)
                a["target"] = "_top"
        attrs[nid] = a
    ran = Counter(h.statement for h in ov.history if h.statement and h.kind in _RAN)
    for name, count in ran.items():
        ran_node = names.get(name)
        if ran_node is None:
            continue
        attrs[ran_node].update(fillcolor="#e6e6e6", fontcolor="#555555")
        tick = "✓" if count == 1 else f"✓ x{count}"
        extra.setdefault(ran_node, []).append(f'<FONT POINT-SIZE="9">{tick}</FONT>')
    wait_tips: dict[str, list[str]] = {}  # what a person must see to decide it, on hover
    for w in ov.waits:
        wait_node = names.get(w.wait)
        if wait_node is None or not w.status.open:
            continue
        tips = wait_tips.setdefault(wait_node, [])
        tips += [line for line in _wait_tip(w) if line not in tips]  # threads share waits
        extra.setdefault(wait_node, []).append(
            f'<FONT POINT-SIZE="9">waiting: {text(w.event, 30)} ({text(w.type, 20)}) since '
            f"{w.created_at:%Y-%m-%d %H:%M}</FONT>"
        )
        attrs[wait_node]["fillcolor"] = "#ffe08a"
    labels: dict[str, str] = {nid: data["label"] for nid, data in g.nodes(data=True)}
    info = ov.info
    if info is not None:
        _thread_marks(g, info, attrs, extra, wait_tips)
        if info.status.done:
            end = g.graph["threads"][None][1]
            outcome = (
                f"error: {info.error}"
                if info.error
                else f"result: {info.result}"
                if info.result is not None
                else info.status.value
            )
            attrs[end].update(
                shape="box",
                style="rounded,filled",
                fillcolor="#ffd6d6" if info.error else "#d8f5d0",
                fontcolor="#000000",
                tooltip=tooltip(outcome),
            )
            labels[end] = text(outcome, 60)
    for nid, tips in wait_tips.items():  # no thread mark took them
        attrs[nid]["tooltip"] = tooltip("\n".join(tips))
    for nid, label in labels.items():
        attrs[nid]["label"] = "<" + "<BR/>".join([label, *extra.get(nid, [])]) + ">"
    return attrs


def _wait_tip(w: WaitInfo) -> list[str]:
    """A pending decision as tooltip lines: the event, the decision's context (the workflow's
    ``summary()``), who may decide. None for a wait no person decides (a timer)."""
    if w.assignees is None:
        return []
    who = ", ".join(w.assignees) or "anyone"
    return [
        f"to decide: {w.event} ({w.type})",
        *(f"  {k}: {v}" for k, v in w.context.items()),
        "  may decide: " + who + (f"; not {', '.join(w.excluded)}" if w.excluded else ""),
    ]


_MARKS = 4
"""At most this many threads are named on one node; the rest are counted."""


def _thread_marks(
    g: nx.DiGraph[str],
    info: WorkflowInfo[Any],
    attrs: dict[str, dict[str, str]],
    extra: dict[str, list[str]],
    wait_tips: dict[str, list[str]],
) -> None:
    """Outline each live or failed thread's node in the thread's colour and name it there
    (a waiting node's tooltip takes its ``wait_tips`` too: they are used up here)."""
    names: dict[str, str] = g.graph["names"]
    colours = thread_colours(info)
    here: dict[str, list[ThreadInfo]] = {}
    for t in info.threads:
        if not t.status.unfinished:
            continue
        # A thread at the start of its body stands on its start: main's start node, or the
        # Go statement that started a goroutine.
        start = g.graph["threads"].get(None if t.id == MAIN else t.name, (None, None))[0]
        at = names.get(t.position) if t.position else start
        if at is not None:
            here.setdefault(at, []).append(t)
    for nid, threads in here.items():
        a = attrs[nid]
        failed = [t for t in threads if t.status is ThreadStatus.FAILED]
        a.update(color=FAILED if failed else colours[threads[0].id], penwidth="3")
        if failed:
            a["fillcolor"] = "#ffd6d6"
        elif all(t.phase is Phase.DONE for t in threads):
            a["style"] = ",".join(x for x in (a.get("style", ""), "dashed") if x)
        tips: list[str] = []
        for t in threads:
            where = "after" if t.phase is Phase.DONE else "at"
            tip = f"thread {t.id} {t.status.value} {where} {t.position or '(start)'}"
            if t.error:
                tip += f" (attempt {t.attempts})" if t.status is not ThreadStatus.FAILED else ""
                tip += f": {t.error}"
            tips.append(tip)
        a["tooltip"] = tooltip("\n".join(tips + wait_tips.pop(nid, [])))
        marks = [
            f'<FONT POINT-SIZE="9" COLOR="{FAILED if t in failed else colours[t.id]}">'
            f"● {text(t.id, 30)}{' failed' if t in failed else ''}</FONT>"
            for t in threads[:_MARKS]
        ]
        if len(threads) > _MARKS:
            marks.append(f'<FONT POINT-SIZE="9">+{len(threads) - _MARKS} more</FONT>')
        extra.setdefault(nid, []).extend(marks)


def _legend(dot: graphviz.Digraph, info: WorkflowInfo[Any]) -> None:
    """A table of the threads, each in its colour, with where it stands."""
    colours = thread_colours(info)
    rows = "".join(
        f'<TR><TD BGCOLOR="{colours[t.id]}" WIDTH="12"> </TD>'
        f'<TD ALIGN="LEFT">{text(t.id, 30)}</TD><TD ALIGN="LEFT">{text(t.status.value)}</TD>'
        f'<TD ALIGN="LEFT">{text(t.position or "(start)", 40)}</TD></TR>'
        for t in info.threads
    )
    dot.node(
        "legend",
        shape="plaintext",
        label=(
            '<<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="0" CELLPADDING="3">'
            f'<TR><TD COLSPAN="4"><B>threads</B></TD></TR>{rows}</TABLE>>'
        ),
    )


def _url_quote(name: str) -> str:
    from urllib.parse import quote

    # A lone surrogate cannot be encoded: it goes as its ``\udxxx`` text, as in the labels.
    return quote(name, safe="", errors="backslashreplace")


def _emit_clusters(
    dot: graphviz.Digraph, g: nx.DiGraph[str], attrs: dict[str, dict[str, str]]
) -> None:
    tree: dict[tuple[str, ...], list[str]] = {}
    for nid, data in g.nodes(data=True):
        tree.setdefault(data["cluster"], []).append(nid)
    titles: dict[str, str] = g.graph["clusters"]

    def emit(into: graphviz.Digraph, path: tuple[str, ...]) -> None:
        for nid in tree.get(path, []):
            into.node(nid, **attrs[nid])
        children = sorted(
            {p[: len(path) + 1] for p in tree if len(p) > len(path) and p[: len(path)] == path}
        )
        for child in children:
            with into.subgraph(name=child[-1]) as sub:
                sub.attr(
                    label=f"<<I>{text(titles.get(child[-1], ''), 60)}</I>>",
                    style="rounded",
                    color="#bbbbbb",
                    fontsize="10",
                    # A goroutine's title at its foot: the fork edge comes in at the top.
                    **({"labelloc": "b"} if child[-1].startswith("cluster_go_") else {}),
                )
                emit(sub, child)

    emit(dot, ())


def svg(dot: graphviz.Digraph) -> str | None:
    """The SVG of ``dot`` through the Graphviz binary, or None if it is not installed."""
    try:
        out: bytes = dot.pipe(format="svg")
        return out.decode("utf-8")
    except graphviz.ExecutableNotFound:
        return None


def workflow_dot(
    definition: Section,
    info: WorkflowInfo[Any],
    waits: Sequence[WaitInfo] = (),
    history: Sequence[HistoryEntry] = (),
    **kw: Any,
) -> graphviz.Digraph:
    """The graph of one workflow: its definition with its threads, waits and history."""
    title = kw.pop("title", None) or f"{info.type} {info.id} — {info.status.value}"
    return to_dot(definition, Overlay(info, waits, history), title=title, **kw)


__all__ = [
    "STYLES",
    "THREAD_COLOURS",
    "Overlay",
    "definition_graph",
    "svg",
    "text",
    "text_tree",
    "thread_colours",
    "to_dot",
    "tooltip",
    "workflow_dot",
]
