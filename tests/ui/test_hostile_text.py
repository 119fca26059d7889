"""Hostile names and links in the operator UI show as text: no link, image, HTML element,
formula or directive comes out of them, in AppTest's Markdown and in a real browser.

The names come from ``tests/apps/hostile_app.py``; ``gorch_ui.escape`` does the escaping. The
engine's side (DOT, SVG, notebook HTML) is ``tests/engine/test_hostile.py``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st
from streamlit.testing.v1 import AppTest

from engine import Engine, PollingResumer, SQLModelStore, WorkflowStatus
from gorch_ui.escape import WORD_JOINER, code, md
from tests.apps import hostile_app
from tests.engine.dot_parse import parse
from tests.ui.helpers import streamlit_server, user_wait
from tests.ui.test_browser import (  # noqa: F401  (playwright_api is a fixture)
    CHROMIUM,
    CHROMIUM_ARGS,
    playwright_api,
)

ROOT = Path(__file__).resolve().parents[2]


# -- hostile text in the pages stays text ------------------------------------------------------


def test_the_ui_never_renders_raw_html() -> None:
    """Streamlit shows HTML in Markdown as text unless told otherwise: nothing tells it, but
    for the one script that sets the session cookie (``auth.cookie_script``: our own token,
    checked to be base64url; tested in test_sign_in_sessions.py)."""
    raw = re.compile(r"unsafe_allow_html|st\.html\(|components\.v1|\.components\b")
    found = [
        f"{path.relative_to(ROOT)}:{line.strip()}"
        for path in sorted(ROOT.glob("gorch_ui/**/*.py"))
        for line in path.read_text().splitlines()
        if raw.search(line)
    ]
    audited = "st.html(cookie_script(token, age), unsafe_allow_javascript=True)"
    assert found == [f"gorch_ui/auth.py:{audited}  # the one script: audited"]


INLINE = set("[]<>~$|&`*_:")


def markup(body: str) -> str:
    """What Markdown would read as syntax in ``body``: escaped characters and code spans out."""
    body = re.sub(r"(`+)(.+?)(?<!`)\1(?!`)", "", body)
    return re.sub(r"\\[!-/:-@\[-`{-~]", "", body)


@given(st.text())
def test_md_shows_any_text_as_written_on_one_line(s: str) -> None:
    out = md(s)
    one_line = re.sub(r"\r\n|[\r\n\u2028\u2029]", " ", s)
    assert re.sub(r"\\(.)", r"\1", out).replace(WORD_JOINER, "") == one_line.replace(
        WORD_JOINER, ""
    )
    assert not re.search(r"(?i)https?:|www\.", re.sub(r"\\(.)", r"\1", out))  # no autolink
    assert not INLINE & set(markup(out))
    assert not re.match(r"\s*([#+\-=>]|\d+[.)])", out)  # no block can start
    span = code(s)
    if one_line.strip():
        fence = re.match(r"`+", span).group(0)  # type: ignore[union-attr]
        assert span.endswith(fence) and fence not in span[len(fence) : -len(fence)]
        assert span[len(fence) : -len(fence)].strip() == one_line.strip()


def hostile_bodies(at: AppTest) -> list[str]:
    """Every Markdown body and label that shows hostile text."""
    out = []
    for kind in ("title", "markdown", "caption", "info", "warning", "error", "success"):
        out += [str(el.value) for el in at.get(kind)]
    out += [str(p.proto.label) for p in at.get("page_link")]
    out += [str(b.proto.help) for b in at.get("selectbox")]
    return [b for b in out if hostile_app.MARK in b]


def assert_inert(bodies: list[str], *, at_least: int) -> None:
    assert len(bodies) >= at_least, bodies
    for body in bodies:
        left = markup(body.replace("**", ""))  # the page's own bold
        assert not INLINE & set(left), (body, INLINE & set(left))


@pytest.fixture
def hostile(engine: Engine) -> str:
    return hostile_app.seed(engine)


def test_hostile_names_show_as_text_on_the_workflow_page(
    open_page: Callable[..., AppTest], engine: Engine, hostile: str
) -> None:
    at = open_page("workflow", id=hostile)
    assert_inert(hostile_bodies(at), at_least=2)  # the title and the pending wait's link
    (chart,) = at.get("graphviz_chart")  # its DOT: every label is escaped HTML-like text
    dot = parse(chart.proto.spec)
    labels = [v.text for a in dot.nodes.values() for k, v in a.items() if v.kind == "html"]
    assert any("&lt;img" in label for label in labels)
    assert not any("<img" in label or "<b>" in label for label in labels)
    at.text_input(key="act_reason").set_value(hostile_app.PAYLOAD)
    at.button(key="act_cancel").click().run()
    assert_inert(hostile_bodies(at), at_least=2)  # the question quotes the names too
    at.button(key="act_cancel_confirm").click().run()
    assert_inert(hostile_bodies(at), at_least=1)
    assert engine.get(hostile).status is WorkflowStatus.CANCELLED


def test_hostile_names_and_links_show_as_text_in_the_inbox(
    open_page: Callable[..., AppTest], engine: Engine, hostile: str
) -> None:
    wait = user_wait(engine, hostile)
    at = open_page("inbox", workflow=hostile, wait=wait.wait)
    assert_inert(hostile_bodies(at), at_least=3)  # the filter note, the card, its link
    # a crafted link whose parameters are Markdown: reflected as text only
    at = open_page("inbox", workflow=hostile_app.PAYLOAD, wait=hostile_app.PAYLOAD)
    assert_inert(hostile_bodies(at), at_least=2)
    at = open_page("workflow", id=hostile_app.PAYLOAD)  # no such workflow: said as text
    assert_inert(hostile_bodies(at), at_least=1)
    at = open_page("workflow", id=hostile, goto=hostile_app.PAYLOAD)
    assert_inert(hostile_bodies(at), at_least=2)
    # A click on the hostile wait's node: its card beside the graph, context and all, as text.
    at = open_page("workflow", id=hostile, decide=wait.wait)
    assert f"approve_g_{wait.id}" in {str(b.key) for b in at.button}
    assert_inert(hostile_bodies(at), at_least=3)
    at = open_page("workflow", id=hostile, decide=hostile_app.PAYLOAD)  # no such wait
    assert_inert(hostile_bodies(at), at_least=2)


# -- the same in a real browser ----------------------------------------------------------------


@pytest.fixture
def hostile_server(tmp_path: Path) -> Iterator[str]:
    """``streamlit run gorch_ui`` over a SQLite file holding the hostile workflow."""
    db = f"sqlite:///{tmp_path / 'gorch.db'}"
    store = SQLModelStore(db)
    hostile_app.seed(Engine(store, hostile_app.WORKFLOWS, resumer=PollingResumer()))
    store.close()
    env = {"GORCH_DB_URL": db, "GORCH_APP": "tests.apps.hostile_app",
           "GORCH_UI_EXECUTE": "worker", "PYTHONPATH": str(ROOT)}  # fmt: skip
    unset = ("GORCH_UI_PASSWORD", "GORCH_UI_VIEWER_PASSWORD", "GORCH_UI_OPERATORS")
    with streamlit_server(tmp_path, env, unset) as url:
        yield url


def assert_nothing_rendered(page: Any) -> None:
    """No link, image, element, style or formula came out of the hostile text."""
    injected = page.locator(
        'a[href^="https://evil"], img[src*="evil.example"], .katex, del, s, '
        "[data-testid='stMarkdownContainer'] b, [data-testid='stMarkdownContainer'] img"
    )
    assert injected.count() == 0, injected.evaluate_all("els => els.map(e => e.outerHTML)")
    assert page.evaluate("window.pwned") is None
    assert page.locator("svg script, svg foreignObject").count() == 0
    text = page.locator("body").inner_text()
    assert "\\[" not in text and "\\:" not in text  # the escapes do not show


@pytest.mark.browser
def test_hostile_text_renders_as_text_in_a_browser(
    request: pytest.FixtureRequest, hostile_server: str
) -> None:
    url = hostile_server
    api: Any = request.getfixturevalue("playwright_api")  # skips without Chromium
    shown = "EVIL [click](https"  # then an invisible word joiner: no autolink
    with api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1200})
            page.set_default_timeout(30_000)
            page.goto(f"{url}/workflow?id={quote(hostile_app.WID, safe='')}")
            page.get_by_role("heading", name="Hostile · EVIL wf [id](https").wait_for()
            page.locator("svg g.node").first.wait_for()
            page.get_by_text(shown).first.wait_for()  # the pending wait's link, as text
            assert_nothing_rendered(page)

            wait = f"{hostile_app.PAYLOAD} wait"
            page.goto(f"{url}/inbox?workflow={quote(hostile_app.WID, safe='')}"
                      f"&wait={quote(wait, safe='')}")  # fmt: skip
            page.get_by_role("button", name="Approve").wait_for()
            page.get_by_text(shown).first.wait_for()
            assert_nothing_rendered(page)

            # a crafted link whose parameters are Markdown and HTML
            payload = quote(hostile_app.PAYLOAD, safe="")
            page.goto(f"{url}/inbox?workflow={payload}&wait={payload}")
            page.get_by_text("it may have been resolved already").wait_for()
            assert_nothing_rendered(page)
        finally:
            browser.close()
