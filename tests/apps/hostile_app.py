"""A workflow app whose names, events, thread ids and error are hostile Markdown and HTML.

The operator UI must show them as text: no link, image, HTML element or Streamlit directive
may come out of them (``tests/ui/test_security.py``, in AppTest and in a real browser).
"""

from __future__ import annotations

from engine import Engine, Go, On, Return, S, Section, Step, Wait, WaitForUserAction, Workflow

MARK = "EVIL"
"""Every hostile string starts with this, so the tests find where it is shown."""

PAYLOAD = (
    f"{MARK} [click](https://evil.example/link) ![p](https://evil.example/p.png) "
    '<img src="https://evil.example/i.png" onerror="window.pwned=1"> <b>bold</b> '
    ":red[red] $x^2$ ~~struck~~ &amp; `code` | cell | www.evil.example"
)
"""Markdown and HTML that would become links, images, elements and styles if rendered."""

WID = f"{MARK} wf [id](https://evil.example/wf)"
"""The id of the seeded workflow."""


def noop() -> None:
    pass


class Hostile(Workflow):
    """Its wait, event, goroutine and error carry ``name``."""

    name: str = PAYLOAD

    def definition(self) -> Section:
        n = self.name
        return S(
            Step(f"{n} step", noop),
            Go(f"{n} go", S(Step(f"{n} inner", noop)), id=f"{n} thread"),
            Wait(f"{n} wait", On(f"{n} event", WaitForUserAction(approve=noop, deny=print))),
            Return(error=f"{n} error"),
        )


WORKFLOWS = [Hostile]


def seed(engine: Engine) -> str:
    """Start the hostile workflow and run it until it waits for approval; return its id."""
    wid = engine.new_workflow(
        Hostile(), WID, actor=f"{MARK} <i>actor</i> [x](https://evil.example/a)"
    )
    engine.execute(wid)
    return wid
