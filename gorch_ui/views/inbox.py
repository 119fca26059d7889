"""Inbox: every open wait to decide, oldest first, one card per wait, counted and paged."""

import streamlit as st

from gorch_ui import decide, services, ui
from gorch_ui.escape import code, md

PAGE_SIZE = 25

engine = ui.engine()
st.title("Inbox")

wanted_workflow = st.query_params.get("workflow")
wanted_wait = st.query_params.get("wait")
if wanted_workflow:
    # Query parameters come from a link anyone may have written: shown, never as Markdown.
    st.info(f"Showing **{md(wanted_wait or 'every wait')}** of workflow {code(wanted_workflow)}.")
    if st.button("Show the whole inbox", key="inbox_all"):
        st.query_params.clear()
        st.rerun()

f = st.columns([2, 2, 2, 2])
workflow_type = f[0].selectbox(
    "Workflow type", ["", *sorted(engine.workflows)], key="inbox_workflow_type",
    format_func=lambda t: t or "any",
)  # fmt: skip
event = f[1].text_input("Event", key="inbox_event", placeholder="any")
older = f[2].selectbox("Waiting longer than", list(services.WAITING_LONGER), key="inbox_older")
op = ui.operator()
f[3].write("")
mine = f[3].checkbox(
    "Assigned to me",
    key="inbox_mine",
    disabled=not op.name.strip(),
    help="Only the waits you may decide: assigned to you, to one of your roles or to anyone, "
    "and not excluded (the requester of an expense cannot approve it).",
)

# Pages go by keyset: the stack holds each shown page's ``after`` (None: the first page).
filters = (workflow_type, event.strip(), older, mine, wanted_workflow, wanted_wait)
if st.session_state.get("inbox_filters") != filters:
    st.session_state["inbox_filters"] = filters
    st.session_state["inbox_pages"] = [None]


def _next(after: object) -> None:
    st.session_state["inbox_pages"].append(after)


def _previous() -> None:
    if len(st.session_state["inbox_pages"]) > 1:
        st.session_state["inbox_pages"].pop()


def _first() -> None:
    st.session_state["inbox_pages"] = [None]


@st.fragment(run_every=ui.REFRESH_SECONDS)
def waits() -> None:
    ui.show_flash()  # the buttons below rerun only this fragment
    stack = st.session_state["inbox_pages"]
    page = services.inbox_page(
        engine,
        ui.operator(),
        workflow_type=workflow_type or None,
        event=event.strip() or None,
        mine=mine,
        waiting_longer_than=services.WAITING_LONGER[older],
        workflow_id=wanted_workflow or None,
        wait=wanted_wait or None,
        after=stack[-1],
        page_size=PAGE_SIZE,
    )
    first = (len(stack) - 1) * PAGE_SIZE + 1
    shown = f"{first:,} to {first + len(page.items) - 1:,}" if page.items else "none"
    st.markdown(
        f"**{page.total:,}** wait{'s' if page.total != 1 else ''} to decide · showing {shown}, "
        "oldest first",
        help="One card per wait: an approval and its timeout are one card.",
    )
    if not page.total:
        st.success(
            "Nothing is waiting."
            if not wanted_workflow
            else md(
                f"No pending wait {wanted_wait or ''} in workflow {wanted_workflow}: "
                "it may have been resolved already."
            )
        )
    elif not page.items:
        st.info("Nothing more on this page: the waits on it were decided meanwhile.")
    for card in page.items:
        decide.card(card)
    if page.total > PAGE_SIZE or len(stack) > 1:
        nav = st.columns([1, 1, 1, 3])
        nav[0].button("First page", key="inbox_first", on_click=_first, disabled=len(stack) == 1)
        nav[1].button("Previous", key="inbox_prev", on_click=_previous, disabled=len(stack) == 1)
        nav[2].button(
            "Next",
            key="inbox_next",
            on_click=_next,
            args=(page.next_after,),
            disabled=page.next_after is None,
        )


waits()
