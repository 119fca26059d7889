"""The workflow page's timeline slider and "try it" sandbox panel (Streamlit).

What they do lives in ``gorch_ui.sandbox`` (plain Python); this draws it. Sandboxes are kept
in ``st.session_state``: per browser session, gone when it ends. Any user may use them,
viewers included: nothing in a sandbox reaches the real store.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import streamlit as st

from engine import Engine, GorchError
from gorch_ui import sandbox, services, ui
from gorch_ui.escape import code, md
from gorch_ui.ui import Field

TRIALS = "gorch_sandbox"
"""``st.session_state`` key of this browser session's sandboxes, by workflow id."""

NOTE = "gorch_sandbox_note"
"""``st.session_state`` key of the message the last sandbox action left for the panel."""

WIDGETS = ("timeline_at", "sandbox_wait", "sandbox_reason", "sandbox_thread",
           "sandbox_statement", "sandbox_minutes")  # fmt: skip
"""Widget keys shared by every workflow's page: reset when another workflow is shown."""


def _scope(workflow_id: str) -> None:
    """Forget the widgets' values of the workflow shown before (a slider position past this
    one's history, a wait or thread it does not have)."""
    if st.session_state.get("gorch_sandbox_for") != workflow_id:
        for key in WIDGETS:
            st.session_state.pop(key, None)
        st.session_state["gorch_sandbox_for"] = workflow_id


def _trials() -> dict[str, sandbox.Trial]:
    trials: dict[str, sandbox.Trial] = st.session_state.setdefault(TRIALS, {})
    return trials


def _user() -> str | None:
    return ui.operator().name or None


def _note(kind: str, text: str) -> None:
    st.session_state[NOTE] = (kind, text)


def _do(fn: Callable[..., str], *args: Any, **kw: Any) -> None:
    """Run a sandbox action from a button, reading ``Field`` arguments at click time."""
    try:
        values = [a.get() if isinstance(a, Field) else a for a in args]
        _note("success", fn(*values, **kw))
    except (GorchError, ValueError) as e:
        _note("error", f"Not done in the sandbox: {e}")


def _fork(engine: Engine, workflow_id: str) -> None:
    trials = _trials()
    try:
        trial = sandbox.start(
            engine, workflow_id, skip_steps=bool(st.session_state.get("sandbox_skip", True))
        )
    except GorchError as e:
        _note("error", f"Cannot fork: {e}")
        return
    trials.pop(workflow_id, None)
    trials[workflow_id] = trial
    while len(trials) > sandbox.MAX_TRIALS:  # the oldest sandbox of this session goes
        trials.pop(next(iter(trials)))
    _note("info", f"Forked {workflow_id!r} into a sandbox.")


def _discard(workflow_id: str) -> None:
    _trials().pop(workflow_id, None)
    _note("info", "Sandbox discarded. Nothing of it was real.")


def timeline(engine: Engine, workflow_id: str) -> None:
    """A slider over the workflow's history that redraws the graph as it stood then."""
    _scope(workflow_id)
    with st.expander("Timeline: replay the history", icon=":material/history:"):
        try:
            count = len(engine.history(workflow_id))  # replayed only when the slider moves
            at = count - 1
            if st.session_state.get("timeline_at", 0) > at:  # a shorter history than before
                st.session_state.pop("timeline_at")
            if count > 1:
                at = st.slider(
                    "After history line",
                    min_value=0,
                    max_value=count - 1,
                    value=count - 1,
                    key="timeline_at",
                    help="0 is the workflow's creation; the graph shows where every thread "
                    "stood right after that line.",
                )
            if at >= count - 1:  # now: that is the live graph above, not drawn twice
                st.caption(
                    f"Line {count - 1} is the last: the workflow as it stands now, drawn above. "
                    "Move the slider back to see where its threads stood before."
                )
                return
            shown = sandbox.timeline(engine, workflow_id, at)
        except GorchError as e:
            st.warning(md(f"The timeline cannot be shown: {e}"))
            return
        st.caption(md(shown.caption))
        if shown.dot:
            st.graphviz_chart(shown.dot, width="content")
        st.caption(
            "Positions come from the history; the definition and state drawn are today's "
            "(the history holds no past states)."
        )


def try_it(engine: Engine, workflow_id: str) -> None:
    """The "try it" panel: fork the workflow, act on the copy, compare, discard."""
    _scope(workflow_id)
    trial = _trials().get(workflow_id)
    with st.expander("Try it in a sandbox", icon=":material/science:", expanded=trial is not None):
        st.warning(
            "**Nothing here is real.** The sandbox is a copy of this workflow in this browser "
            "session's memory: what you do to it is never written to the database, and nothing "
            "is set up or torn down (no message sent, no timer armed). Only the steps' own code "
            "can reach the outside world: it runs only in a sandbox forked with steps not "
            "skipped, and every step that ran is named below. Viewers may use it too.",
            icon=":material/science:",
        )
        note = st.session_state.pop(NOTE, None)
        if note is not None:
            getattr(st, note[0])(md(note[1]))
        if trial is None:
            st.checkbox(
                "Skip the steps' code (record them as skipped): steps may call real systems",
                value=True,
                key="sandbox_skip",
            )
            st.button(
                "Fork into a sandbox",
                key="sandbox_fork",
                on_click=_fork,
                args=(engine, workflow_id),
                type="primary",
            )
            return
        _panel(engine, workflow_id, trial)


def _counted(names: list[str]) -> str:
    """Step names in the order first seen, each once, with how often (``tick`` x 3)."""
    counts = Counter(names)
    return ", ".join(code(n) + (f" x {counts[n]}" if counts[n] > 1 else "") for n in counts)


def _panel(engine: Engine, workflow_id: str, trial: sandbox.Trial) -> None:
    v = sandbox.view(trial)
    sb = trial.sandbox
    st.markdown(
        f"Forked at history line {sb.forked_at - 1} on {sb.forked_when:%Y-%m-%d %H:%M:%S}; "
        f"the sandbox's clock reads {md(v.now)}."
    )
    head = st.columns([1, 3])
    head[0].markdown(f"Sandbox: **{ui.status(v.info.status)}**")
    if v.info.error:
        head[1].error(md(f"error: {v.info.error}"))
    elif v.info.result is not None:
        head[1].success(md(f"result: {v.info.result}"))
    st.caption(
        "Steps are recorded as skipped in this sandbox: their code is not called."
        if trial.skip_steps
        else "Steps run their real code in this sandbox."
    )
    if v.ran:
        st.error(
            "**Steps that ran real code in the sandbox:** " + _counted(v.ran),
            icon=":material/warning:",
        )
    else:
        st.success("No step ran real code in the sandbox.", icon=":material/check:")
    if v.skipped:
        st.caption("Steps recorded as skipped: " + _counted(v.skipped))
    left, right = st.columns(2)
    with left:
        st.markdown("**Real (as stored now)**")
        real = services.workflow_view(engine, workflow_id)
        if real.dot:
            st.graphviz_chart(real.dot, width="stretch")
    with right:
        st.markdown("**Sandbox**")
        if v.dot:
            st.graphviz_chart(v.dot, width="stretch")
        elif v.graph_error:
            st.warning(md(v.graph_error))

    user = _user()
    keys = [sandbox.wait_key(w) for w in v.waits]
    if keys:
        c = st.columns([3, 3, 1, 1])
        chosen = c[0].selectbox("Open wait", keys, key="sandbox_wait")
        c[1].text_input("Reason / input (JSON for Send)", key="sandbox_reason")
        wait = next((w for w in v.waits if sandbox.wait_key(w) == chosen), None)
        if wait is not None and sandbox.user_action(wait):
            with c[2]:
                st.write("")
                st.button("Approve", key="sandbox_approve", on_click=_do,
                          args=(sandbox.approve, trial, Field("sandbox_wait"),
                                Field("sandbox_reason")), kwargs={"user": user})  # fmt: skip
            with c[3]:
                st.write("")
                st.button("Deny", key="sandbox_deny", on_click=_do,
                          args=(sandbox.deny, trial, Field("sandbox_wait"),
                                Field("sandbox_reason")), kwargs={"user": user})  # fmt: skip
        else:
            with c[2]:
                st.write("")
                st.button("Send", key="sandbox_send", on_click=_do,
                          args=(sandbox.send, trial, Field("sandbox_wait"),
                                Field("sandbox_reason")), kwargs={"user": user})  # fmt: skip
    if v.targets:
        g = st.columns([2, 3, 1])
        thread = g[0].selectbox("Thread", list(v.targets), key="sandbox_thread")
        g[1].selectbox("Move it to", v.targets.get(thread or "", []), key="sandbox_statement")
        with g[2]:
            st.write("")
            st.button("Go to", key="sandbox_goto", on_click=_do,
                      args=(sandbox.goto, trial, Field("sandbox_thread"),
                            Field("sandbox_statement")), kwargs={"user": user})  # fmt: skip
    t = st.columns([2, 1, 3])
    t[0].number_input("Minutes", min_value=1, value=10, step=1, key="sandbox_minutes")
    with t[1]:
        st.write("")
        st.button("Advance clock", key="sandbox_advance", on_click=_do,
                  args=(sandbox.advance, trial, Field("sandbox_minutes")))  # fmt: skip
    with t[2]:
        st.write("")
        st.button("Discard sandbox", key="sandbox_discard", on_click=_discard,
                  args=(workflow_id,))  # fmt: skip
    if trial.log:
        st.markdown("**Tried here**, in order:")
        st.markdown("\n".join(f"{i}. {md(line)}" for i, line in enumerate(trial.log, 1)))
    if v.would:
        st.markdown("**Not done for real** (the managers only recorded it):")
        st.markdown("\n".join(f"- {md(w)}" for w in v.would))
    st.markdown("**Sandbox history** (after the fork, newest first)")
    st.dataframe(v.history, hide_index=True)
