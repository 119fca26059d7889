"""Hostile names and inputs stay text: in the DOT (parsed), the SVG Graphviz draws from it and
the notebook's HTML; NUL and over-long ids are accepted or refused with a clear error.

Every user-writable string of one workflow is set to the same hostile text at once: statement
names, goroutine ids, event names, the workflow id, callback input, the actor and reason of
every operator action, state values, the result and the error. The DOT drawn for it must
declare exactly the nodes, edges and clusters of the same workflow with a plain name, and show
the hostile text as text.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import timedelta
from html.parser import HTMLParser
from typing import Any
from urllib.parse import quote, unquote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from engine import (
    Engine,
    Event,
    Go,
    If,
    InvalidOperation,
    ManualClock,
    MemoryStore,
    On,
    PollingResumer,
    Return,
    S,
    Section,
    SQLModelStore,
    StateError,
    Step,
    Timeout,
    Wait,
    WaitForUserAction,
    Workflow,
    WorkflowStatus,
)
from engine._jsonsafe import printable, storable_text
from engine.graph import definition_graph, svg, to_dot, workflow_dot
from engine.notebook import Notebook, definition_bundle, workflow_bundle
from tests.engine.dot_parse import Dot, html_text, parse, subst

needs_dot = pytest.mark.skipif(
    shutil.which("dot") is None and os.environ.get("CI", "").lower() != "true",
    reason="the Graphviz `dot` binary is not installed",
)

HOSTILE = {
    "dot-breakout": '"]; x [label="',
    "script": "<script>alert(1)</script>",
    "svg-breakout": '</text><script>alert(1)</script><text x="0">',
    "backslash": "\\",
    "escapes": '\\N \\G \\l \\" \\\\',
    "newlines": "one\ntwo\r\nthree",
    "braces": "} digraph { evil -> x }",
    "entities": "&amp; &lt;b&gt; &#60;script&#62;",
    "bidi": "\u202eevil\u200b\u2066x\u2069\ufeff",
    "nul": "a\x00b",
    "surrogate": "a\ud800b",
    "sql": "' OR 1=1 --",
    "markup": "]]><!-- --><![CDATA[ <?xml?>",
    "long": "long " + "x" * 5000,
}


def noop() -> None:
    pass


class Note(BaseModel):
    """Input of the goroutine's event: free text."""

    text: str


STAND_INS = {"\x00": "\ue000", "\ud800": "\ue001"}
"""No store holds NUL or unpaired surrogates (``engine._jsonsafe``): state, ids, actors and inputs
hold these private-use stand-ins instead, and only the names decode them."""


def storable(t: str) -> str:
    for bad, stand_in in STAND_INS.items():
        t = t.replace(bad, stand_in)
    return t


class Tainted(Workflow):
    """A workflow whose every name is made of ``t``; ``note`` is a state value."""

    t: str
    note: str = ""
    approved: bool = False

    def definition(self) -> Section:
        t = self.t
        for bad, stand_in in STAND_INS.items():
            t = t.replace(stand_in, bad)
        return S(
            Step(t, noop),
            Go(f"go {t}", S(
                Wait(f"inner {t}", On(f"{t} ping", Event(model=Note, handle=self.remember))),
            ), id=t),
            Wait(f"{t} wait",
                On(t, WaitForUserAction(approve=self.approve, deny=lambda reason: None)),
                On(f"{t} late", Timeout(after=timedelta(hours=1))),
            ),
            If(lambda: self.approved, Return({self.t: self.note})),  # a result is data
            Return(error=t),
        )  # fmt: skip

    def remember(self, note: Note) -> None:
        self.note = note.text

    def approve(self) -> None:
        self.approved = True


def cleaned(t: str) -> str:
    """What the graph may show of ``t``: control characters and XML non-characters dropped."""
    t = re.sub(r"[\x00-\x08\x0b-\x1f\x7f\ufffe\uffff]", "", t)
    return t.encode("utf-8", "backslashreplace").decode("utf-8")


def short(s: str, limit: int) -> str:
    return s if len(s) <= limit else s[: limit - 1] + "…"


def wid_of(t: str) -> str:
    return f"wf {storable(t)}"[:200]


@pytest.fixture(params=list(HOSTILE), ids=list(HOSTILE))
def t(request: pytest.FixtureRequest) -> str:
    return HOSTILE[str(request.param)]


def run(t: str, *, approve: bool) -> tuple[Engine, str, dict[str, Any]]:
    """The workflow of ``t`` driven through every input: returns the engine, its id and the
    snapshots ``waiting`` (both threads blocked) and ``done`` (finished or failed)."""
    engine = Engine(MemoryStore(), [Tainted], clock=ManualClock(), resumer=PollingResumer())
    u = storable(t)  # what a store can hold of t
    wid = engine.new_workflow(Tainted(t=u), wid_of(t), actor=u)
    engine.execute(wid, actor=u, reason=u)
    engine.on_callback(wid, f"{t} ping", {"text": u}, actor=u, thread=t)
    engine.execute(wid)
    engine.update_state(wid, {"t": u, "note": f"{u}!"}, u, u)
    snaps = {"waiting": _snap(engine, wid)}
    engine.on_callback(wid, t, {"approved": approve, "reason": u}, actor=u)
    engine.execute(wid)
    snaps["done"] = _snap(engine, wid)
    return engine, wid, snaps


def _snap(engine: Engine, wid: str) -> dict[str, Any]:
    return {"info": engine.get(wid), "waits": engine.pending_waits(wid),
            "history": engine.history(wid)}  # fmt: skip


def draw(snap: dict[str, Any], **kw: Any) -> str:
    info = snap["info"]
    return str(
        workflow_dot(info.state.definition(), info, snap["waits"], snap["history"], **kw).source
    )


def shape(dot: Dot) -> tuple[Any, ...]:
    """The structure of a parsed DOT: node ids and their attribute names, the edges with
    their attribute names, the clusters and where each node sits, the statement counts."""
    return (
        {n: sorted(a) for n, a in dot.nodes.items()},
        sorted((a, b, tuple(sorted(attrs))) for a, b, attrs in dot.edges),
        {c: sorted(a) for c, a in dot.clusters.items()},
        dict(dot.node_cluster),
        sorted(dot.graph_attrs),
        dict(dot.statements),
    )


PLAIN: dict[bool, dict[str, str]] = {}


def plain_dots(approve: bool) -> dict[str, str]:
    """The DOT of each snapshot of the same workflow with a harmless name."""
    if approve not in PLAIN:
        _, _, snaps = run("plain", approve=approve)
        PLAIN[approve] = {k: draw(s, link=LINK) for k, s in snaps.items()}
    return PLAIN[approve]


LINK = "inbox?wait={name}"
"""Named nodes link here, the name percent-encoded by ``to_dot``."""


def link(name: str, kind: str) -> str:
    """The same link made by a function: ``to_dot`` takes the URL as it is."""
    return LINK.format(name=quote(name, safe="", errors="backslashreplace"))


def as_text(name: str) -> str:
    """A name as URLs and labels carry it: a lone surrogate as its ``\\udxxx`` escape."""
    return name.encode("utf-8", "backslashreplace").decode("utf-8")


# -- DOT -----------------------------------------------------------------------------------


@pytest.mark.parametrize("approve", [True, False], ids=["finished", "failed"])
def test_the_dot_declares_exactly_the_plain_graph_and_shows_the_text(t: str, approve: bool):
    _, wid, snaps = run(t, approve=approve)
    shown = cleaned(t)
    for when, snap in snaps.items():
        dot = parse(draw(snap, link=LINK))
        assert shape(dot) == shape(parse(plain_dots(approve)[when])), when
        g = definition_graph(snap["info"].state.definition())
        names: dict[str, str] = g.graph["names"]
        step, wait, go = names[t], names[f"{t} wait"], names[f"go {t}"]
        assert html_text(dot.attr(step, "label")).startswith(short(shown, 80)), when
        assert dot.tooltip(step) == f"step {shown}"[:1000]
        where = "thread main waiting at " if when == "waiting" else "wait "
        tip = dot.tooltip(wait)  # then, while it waits, the decision's context and who decides
        assert tip.startswith(f"{where}{shown} wait"[:1000])
        assert (when == "waiting") == ("\nto decide: " in tip) or len(tip) == 1000
        assert html_text(dot.attr(go, "label")).startswith(short(f"go {shown}", 80))
        title = f"Tainted {wid} — {snap['info'].status.value}"
        assert html_text(dot.graph_attrs["label"].text) == short(cleaned(title), 120)
        for node in (step, wait, go):  # the URL carries the name, percent-encoded
            assert unquote(dot.attr(node, "URL").removeprefix("inbox?wait=")) in (
                as_text(t),
                as_text(f"{t} wait"),
                as_text(f"go {t}"),
            )
        legend = html_text(dot.attr("legend", "label"))
        assert short(shown, 30) in legend  # the goroutine's thread id
    waiting = parse(draw(snaps["waiting"]))
    assert f"waiting: {short(shown, 30)} (user_action)" in html_text(
        waiting.attr(names[f"{t} wait"], "label")
    )
    info = snaps["done"]["info"]
    end = g.graph["threads"][None][1]
    done = parse(draw(snaps["done"]))
    if approve:
        assert info.status is WorkflowStatus.FINISHED and info.result == {
            storable(t): f"{storable(t)}!"
        }
        assert done.tooltip(end) == cleaned(f"result: {info.result}")[:1000]
    else:
        # a Return's error text is a description, like a step's: NUL and surrogates escaped
        assert (info.status, info.error) == (WorkflowStatus.FINISHED, printable(t))
        assert done.tooltip(end) == f"error: {cleaned(printable(t))}"[:1000]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(st.characters(exclude_categories=["Cs"], exclude_characters=STAND_INS.values()),
               min_size=1, max_size=40).filter(
    lambda s: s.strip() != ""
))  # fmt: skip
def test_no_name_an_input_or_an_actor_can_change_the_graph(t: str) -> None:
    _, _, snaps = run(t, approve=True)
    for when, snap in snaps.items():
        dot = parse(draw(snap, link=link))
        assert shape(dot) == shape(parse(plain_dots(True)[when]))
        step = definition_graph(snap["info"].state.definition()).graph["names"][t]
        assert html_text(dot.attr(step, "label")).startswith(cleaned(t))
        assert dot.tooltip(step) == f"step {cleaned(t)}"
        # A link function may return the name as it is: the URL still holds it as text.
        raw = parse(draw(snap, link=lambda name, kind: f"x:{name}"))
        assert shape(raw) == shape(dot)
        assert subst(raw.attr(step, "URL")) == cleaned(f"x:{t}")


# -- SVG -----------------------------------------------------------------------------------

SVG = "{http://www.w3.org/2000/svg}"
XLINK = "{http://www.w3.org/1999/xlink}"
DRAWN = {"svg", "g", "title", "text", "polygon", "ellipse", "path", "polyline", "a"}
"""The elements Graphviz draws these graphs with; anything else would be injected."""


def check_svg(out: str | None, t: str, urls: set[str]) -> ET.Element:
    """Well-formed SVG of Graphviz's own elements only, no handlers, only our links."""
    assert out is not None  # dot parsed the DOT and drew it without an error
    root = ET.fromstring(out)
    tags = {el.tag.removeprefix(SVG) for el in root.iter()}
    assert tags <= DRAWN, tags - DRAWN
    for el in root.iter():
        assert not [k for k in el.attrib if k.lower().startswith("on")], el.attrib
        href = el.get(f"{XLINK}href") or el.get("href")
        if href is not None:
            assert href in urls, href
    assert not re.search(r"<\s*script|javascript:", out, re.I)
    texts = "\n".join("".join(el.itertext()) for el in root.iter(f"{SVG}text"))
    for line in short(cleaned(t), 80).splitlines():
        assert line.strip() in texts
    return root


@needs_dot
@pytest.mark.parametrize("approve", [True, False], ids=["finished", "failed"])
def test_the_svg_holds_only_what_graphviz_draws(t: str, approve: bool) -> None:
    _, _, snaps = run(t, approve=approve)
    for snap in snaps.values():
        info = snap["info"]
        dot = workflow_dot(info.state.definition(), info, snap["waits"], snap["history"],
                           link=link)  # fmt: skip
        g = definition_graph(info.state.definition())
        urls = {link(n, "") for n in g.graph["names"]}
        root = check_svg(svg(dot), t, urls)
        nodes = [el for el in root.iter(f"{SVG}g") if el.get("class") == "node"]
        assert len(nodes) == len(g.nodes) + 1  # + the legend
        titles = {v for el in root.iter() for k, v in el.attrib.items() if k.endswith("}title")}
        assert f"step {cleaned(t)}"[:1000] in titles


# -- notebook HTML and bundles ----------------------------------------------------------------


class _Html(HTMLParser):
    """Collects the tags, attributes and cell texts of a notebook table."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: set[str] = set()
        self.attrs: list[tuple[str, str | None]] = []
        self.rows: list[list[str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.attrs += attrs
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self.rows[-1].append("")

    def handle_data(self, data: str) -> None:
        if self.rows and self.rows[-1]:
            self.rows[-1][-1] += data

    def handle_comment(self, data: str) -> None:
        self.tags.add("<!--")

    def handle_decl(self, decl: str) -> None:
        self.tags.add("<!")

    def handle_pi(self, data: str) -> None:
        self.tags.add("<?")

    def unknown_decl(self, data: str) -> None:
        self.tags.add("<![")


def table(html: str) -> list[dict[str, str]]:
    """The rows of a notebook table, after checking it is nothing but a plain table."""
    p = _Html()
    p.feed(html)
    p.close()
    assert p.tags <= {"table", "thead", "tbody", "tr", "th", "td"}, p.tags
    assert p.attrs == []
    head, *rows = p.rows
    assert all(len(r) == len(head) for r in rows)
    return [dict(zip(head, r, strict=True)) for r in rows]


def test_notebook_tables_escape_every_cell(t: str) -> None:
    engine, wid, _ = run(t, approve=False)
    nb = Notebook(engine)
    history = table(nb.history(wid)._repr_html_())
    mine = [r for r in history if r["actor"] == storable(t)]
    assert [r["kind"] for r in mine] == [
        "created", "execute_requested", "callback", "state_updated", "callback"
    ]  # fmt: skip
    (updated,) = [r for r in mine if r["kind"] == "state_updated"]
    assert json.loads(updated["detail"])["reason"] == storable(t)
    workflows = table(nb.workflows()._repr_html_())
    assert [(r["id"], r["error"]) for r in workflows] == [(wid_of(t), printable(t))]
    assert table(nb.waits()._repr_html_()) == []  # finished: nothing waits


@needs_dot
def test_notebook_bundles_are_svg_of_the_drawn_elements_only(t: str) -> None:
    _, _, snaps = run(t, approve=True)
    snap = snaps["waiting"]
    bundle = workflow_bundle(snap["info"], snap["waits"], snap["history"])
    assert set(bundle) == {"image/svg+xml", "text/plain"}
    check_svg(bundle["image/svg+xml"], t, set())
    definition = definition_bundle(Tainted(t=storable(t)).definition())
    check_svg(definition["image/svg+xml"], t, set())
    assert t in definition["text/plain"] or repr(t)[1:-1] in definition["text/plain"]


# -- ids: NUL, length, every store ------------------------------------------------------------

PG_URL = os.environ.get("GORCH_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture
def pg_store() -> Iterator[SQLModelStore]:
    """A store on a fresh PostgreSQL schema; skips (fails in CI) without a server."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    schema = f"gorch_hostile_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT",
                          connect_args={"connect_timeout": 3})  # fmt: skip
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))  # a generated name, not input
    except SQLAlchemyError as e:
        admin.dispose()
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is unreachable at {PG_URL}: {e}")
        pytest.skip(f"PostgreSQL is unreachable at {PG_URL}")
    url = make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    store = SQLModelStore(url.render_as_string(hide_password=False))
    try:
        yield store
    finally:
        store.close()
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _stores(kind: str, tmp_path: Any, request: pytest.FixtureRequest) -> Any:
    if kind == "memory":
        return MemoryStore()
    if kind == "sqlite":
        return SQLModelStore(f"sqlite:///{tmp_path / 'g.db'}")
    return request.getfixturevalue("pg_store")


@pytest.mark.parametrize(
    "kind", ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_hostile_ids_are_stored_as_they_are_or_refused_clearly(
    kind: str, tmp_path: Any, request: pytest.FixtureRequest
) -> None:
    engine = Engine(_stores(kind, tmp_path, request), [Tainted], resumer=PollingResumer())
    for name, t in HOSTILE.items():
        wid = f"wf {t}"[:200]
        if not storable_text(t):  # PostgreSQL cannot store NUL or unpaired surrogates:
            # refused on every store, nothing written
            with pytest.raises(InvalidOperation, match="without NUL"):
                engine.new_workflow(Tainted(t="plain"), wid)
            with pytest.raises(StateError, match=r"NUL|surrogate"):
                engine.new_workflow(Tainted(t="plain", note=t), "nul state")
            assert not {wid, "nul state"} & {w.id for w in engine.list(limit=1000)}
            continue
        assert engine.new_workflow(Tainted(t="plain", note=t), wid) == wid, name
        info = engine.get(wid)
        assert (info.id, info.state.note) == (wid, t), name
        assert [w.id for w in engine.list(search=wid)] == [wid], name
    with pytest.raises(InvalidOperation, match="at most 200 characters"):
        engine.new_workflow(Tainted(t="plain"), "x" * 201)
    with pytest.raises(InvalidOperation, match="non-empty"):
        engine.new_workflow(Tainted(t="plain"), "")


def test_a_very_long_name_is_cut_in_labels_and_tooltips() -> None:
    t = HOSTILE["long"]
    dot = parse(to_dot(Tainted(t=t).definition()).source)
    g = definition_graph(Tainted(t=t).definition())
    step = g.graph["names"][t]
    assert html_text(dot.attr(step, "label")) == short(t, 80)
    assert dot.tooltip(step) == f"step {t}"[:1000]
