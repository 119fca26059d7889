"""Streamlit helpers shared by the pages: the engine handle, the operator, action buttons and
their messages, forms."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import streamlit as st
from streamlit.errors import StreamlitAPIException
from streamlit.runtime.scriptrunner import get_script_run_ctx

from engine import DEFAULT_APP, Engine, GorchError, WorkflowStatus, db_url
from gorch_ui import auth, services
from gorch_ui.access import Operator, Role
from gorch_ui.escape import md
from gorch_ui.schema import FormField, collect, initial

REFRESH_SECONDS = float(os.environ.get("GORCH_UI_REFRESH", "3"))
"""How often the live parts (graph, threads, inbox) refresh themselves."""

STATUS_COLOURS = {
    WorkflowStatus.RUNNING: "blue",
    WorkflowStatus.WAITING: "orange",
    WorkflowStatus.FINISHED: "green",
    WorkflowStatus.FAILED: "red",
    WorkflowStatus.CANCELLED: "gray",
}


@st.cache_resource(show_spinner="Opening the database…")
def _open(url: str, app: str) -> Engine:
    return services.open_engine(url, app)


def engine() -> Engine:
    """The engine for ``GORCH_DB_URL`` and ``GORCH_APP``: the only thing the app caches."""
    return _open(db_url(), os.environ.get("GORCH_APP") or DEFAULT_APP)


def operator() -> Operator:
    """Who is using the app (set by the sign-in gate); nobody, as a viewer, before it ran."""
    op = st.session_state.get("gorch_operator")
    return op if isinstance(op, Operator) else Operator("", Role.VIEWER)


@dataclass(frozen=True)
class Field:
    """An action argument read from a widget when the button is clicked."""

    key: str

    def get(self) -> Any:
        return st.session_state.get(self.key)


@dataclass(frozen=True)
class FormValues:
    """An action argument: the data of a generated form, read when the button is clicked."""

    fields: tuple[FormField, ...]
    prefix: str

    def get(self) -> Any:
        raw = {f.name: st.session_state.get(self.prefix + f.name) for f in self.fields}
        return collect(list(self.fields), raw)


MESSAGE = "gorch_message"
"""Where ``st.session_state`` keeps the message of the last action (one at a time)."""


@dataclass
class Message:
    """The result or error of the last action, kept until dismissed or the next action.

    Drawn right after the control that caused it (``key``) whenever that control is drawn;
    where the control is gone (an approved wait's card), where ``show_flash`` stands instead.
    Only on the page it was made on (``page``).
    """

    kind: str  # "success", "error", "warning" or "info": the st function that draws it
    text: str
    key: str | None = None  # the control's key
    page: str = ""
    seq: int = 0
    placed: bool = False  # drawn beside its control in the run that last drew the page


def _page() -> str:
    ctx = get_script_run_ctx()
    return ctx.page_script_hash if ctx is not None else ""


def flash(kind: str, text: str, *, key: str | None = None) -> None:
    """Show ``text`` as ``kind`` beside the control ``key`` (or where ``show_flash`` stands)
    from now on, replacing the previous message, until dismissed or the next one."""
    old = st.session_state.get(MESSAGE)
    seq = old.seq + 1 if isinstance(old, Message) else 1
    st.session_state[MESSAGE] = Message(kind, text, key, _page(), seq)


def _message() -> Message | None:
    msg = st.session_state.get(MESSAGE)
    return msg if isinstance(msg, Message) and msg.page == _page() else None


def _dismiss() -> None:
    st.session_state.pop(MESSAGE, None)


def _draw(msg: Message, where: str, *, in_form: bool = False) -> None:
    with st.container(key=f"gorch_msg_{where}"):
        text, dismiss = st.columns([20, 1], vertical_alignment="center")
        with text:
            getattr(st, msg.kind)(md(msg.text))  # messages quote ids, names and reasons
        with dismiss:  # in a form only a submit button may be (it submits nothing else)
            (st.form_submit_button if in_form else st.button)(
                "✕", key=f"dismiss_{msg.seq}_{where}", help="Dismiss", on_click=_dismiss,
                type="tertiary",
            )  # fmt: skip


def show_flash() -> None:
    """The place for the message whose control is not on the page (or that has none)."""
    msg = _message()
    st.session_state.pop("_gorch_message_slot", None)
    if msg is None:
        return
    was_placed, msg.placed = msg.placed, False
    if was_placed and msg.key is not None:
        return  # drawn beside its control again below (or, if that is gone, here next run)
    slot = st.empty()
    with slot.container():
        _draw(msg, "top")
    st.session_state["_gorch_message_slot"] = slot


def show_message(key: str, *, in_form: bool = False) -> None:
    """Draw the message caused by the control ``key``, if it has one, right here (after the
    control); ``action`` calls it for its button. ``in_form``: here is inside an ``st.form``."""
    msg = _message()
    if msg is None or msg.key != key:
        return
    slot = st.session_state.pop("_gorch_message_slot", None)
    if slot is not None:  # drawn at the top in this run before its control was reached
        with contextlib.suppress(StreamlitAPIException):  # a slot of another run
            slot.empty()
    msg.placed = True
    _draw(msg, key, in_form=in_form)


def _run(label: str, fn: Callable[..., str], args: tuple[Any, ...], key: str | None = None) -> None:
    try:
        auth.check_session()
        values = [a.get() if isinstance(a, (Field, FormValues)) else a for a in args]
        message = fn(engine(), operator(), *values)
    except (GorchError, ValueError) as e:  # StaleAction too: nothing was changed
        flash("error", f"{label} failed: {e}", key=key)
    else:
        flash("success", message, key=key)


def action(
    label: str,
    key: str,
    fn: Callable[..., str],
    *args: Any,
    submit: bool = False,
    message_key: str | None = None,
    **kw: Any,
) -> None:
    """A button that calls ``fn(engine, operator, *args)`` (a service) when clicked.

    ``Field``/``FormValues`` arguments are read at click time. ``submit=True`` makes it a
    submit button of the enclosing ``st.form``, whose inputs then arrive with the click itself
    (nothing typed is lost to a refresh in between). Disabled for viewers; the service refuses
    them anyway. Its result or error is drawn right after it (``show_message``) and stays
    there, through refreshes, until dismissed or the next action; ``message_key`` draws it
    after another control instead (a confirmation's question closes once answered: its
    result goes beside the button that asked).
    """
    op = operator()
    kw.setdefault("help", None if op.can_act else "viewers cannot act")
    (st.form_submit_button if submit else st.button)(
        label,
        key=key,
        on_click=_run,
        args=(label, fn, args, message_key or key),
        disabled=kw.pop("disabled", False) or not op.can_act,
        **kw,
    )
    show_message(message_key or key, in_form=submit)


def form(fields: list[FormField], prefix: str) -> None:
    """One widget per field, keyed ``prefix + name``."""
    for f in fields:
        key, label = prefix + f.name, f.title + ("" if f.required else " (optional)")
        help_ = f.help or None
        if f.kind == "boolean":
            st.checkbox(label, value=initial(f), key=key, help=help_)
        elif f.kind == "integer":
            st.number_input(label, value=initial(f), step=1, key=key, help=help_)
        elif f.kind == "number":
            st.number_input(label, value=initial(f), key=key, help=help_)
        elif f.kind == "enum":
            index = f.options.index(f.default) if f.default in f.options else None
            st.selectbox(label, f.options, index=index, key=key, help=help_)
        elif f.kind == "json":
            st.text_input(label + " — JSON", value=initial(f), key=key, help=help_)
        else:
            st.text_input(label, value=initial(f), key=key, help=help_)


def status(value: WorkflowStatus | str) -> str:
    """The status as coloured Markdown."""
    s = WorkflowStatus(value)
    return f":{STATUS_COLOURS[s]}[● {s.value}]"


def _ask(flag: str) -> None:
    st.session_state[flag] = True


def _drop(flag: str) -> None:
    st.session_state.pop(flag, None)


@dataclass(frozen=True)
class _Confirmed:
    """The service behind a confirmed button: the question is closed once it is answered."""

    flag: str
    fn: Callable[..., str]

    def __call__(self, *args: Any) -> str:
        st.session_state.pop(self.flag, None)
        return self.fn(*args)


def confirm_action(
    label: str,
    key: str,
    fn: Callable[..., str],
    *args: Any,
    preview: str | Callable[[], str],
    confirm: str | None = None,
    disabled: bool = False,
    area: Any = None,
    **kw: Any,
) -> None:
    """A button that asks once before it acts: for what acts in bulk or for good.

    The first click shows ``preview`` (Markdown the caller escaped: what will happen, to
    how many, which) with a confirm button (``confirm``, by default ``label`` again), an
    ``action`` calling ``fn`` like ``action`` does, and a button to leave it. ``preview``
    may be a function, so it is computed only while the question is open, from what the
    page holds then. ``area``: a container to ask in (e.g. one under a row of narrow button
    columns) instead of where the button is.
    """
    flag = f"{key}__asking"
    op = operator()
    if disabled:
        st.session_state.pop(flag, None)
    if not st.session_state.get(flag):
        kw.setdefault("help", None if op.can_act else "viewers cannot act")
        st.button(
            label,
            key=key,
            on_click=_ask,
            args=(flag,),
            disabled=disabled or not op.can_act,
            **kw,
        )
        show_message(key)  # the result of the last confirmed click
        return
    with area if area is not None else st.container(), st.container(border=True):
        st.markdown(preview() if callable(preview) else preview)
        yes, no = st.columns(2)
        with yes:
            # its label starts the message if it fails ("Retry failed: ..."): a verb
            action(confirm or label, f"{key}_confirm", _Confirmed(flag, fn),
                   *args, message_key=key, type="primary")  # fmt: skip
        no.button("No, leave it", key=f"{key}_keep", on_click=_drop, args=(flag,))


STATUS_HEX = {
    WorkflowStatus.RUNNING: "#1c63d9",
    WorkflowStatus.WAITING: "#c26a00",
    WorkflowStatus.FINISHED: "#1e7d34",
    WorkflowStatus.FAILED: "#d2222d",
    WorkflowStatus.CANCELLED: "#6b6b6b",
}
"""The colour of each status in tables (the Markdown colours of ``STATUS_COLOURS``)."""


def status_table(rows: list[dict[str, Any]], column: str = "status") -> Any:
    """``rows`` for ``st.dataframe`` with the ``column`` of statuses coloured, each with a dot
    (the colour is not the only sign), and a non-empty ``error`` cell in red."""
    if not rows:
        return rows
    import pandas as pd  # Streamlit's own dependency; loaded with the first table

    frame = pd.DataFrame(rows)
    frame[column] = [f"● {v}" if v else "" for v in frame[column]]

    def colour(value: str) -> str:
        try:
            return (
                f"color: {STATUS_HEX[WorkflowStatus(value.removeprefix('● '))]}; font-weight: 600"
            )
        except ValueError:
            return ""

    styler = frame.style.map(colour, subset=[column])
    if "error" in frame:
        styler = styler.map(lambda v: "color: #d2222d" if v else "", subset=["error"])
    return styler
