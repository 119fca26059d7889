"""Workflows: counts by status that filter, and a filtered, searchable table paged by keyset."""

from datetime import UTC, date, datetime, time, timedelta

import streamlit as st

from engine import WorkflowStatus
from gorch_ui import services, ui

engine = ui.engine()
st.title("Workflows")
ui.show_flash()


def _only(status: WorkflowStatus) -> None:
    """A count was clicked: show only that status (a second click shows every status)."""
    st.session_state["wf_status"] = "" if st.session_state.get("wf_status") == status else status


counts = services.counts(engine)
chosen = st.session_state.get("wf_status", "")
for col, s in zip(st.columns(len(WorkflowStatus)), WorkflowStatus, strict=True):
    col.button(
        f"{ui.status(s)}  \n**{counts.total[s]}**",
        key=f"wf_count_{s.value}",
        on_click=_only,
        args=(s,),
        type="primary" if chosen == s else "secondary",
        use_container_width=True,
        help=f"Show only {s.value} workflows (click again for all)",
    )
with st.expander("By type"):
    st.dataframe(
        [{"type": t, **{s.value: n[s] for s in WorkflowStatus}} for t, n in counts.by_type.items()],
        hide_index=True,
    )

c1, c2, c3, c4 = st.columns([2, 2, 3, 1])
status = c1.selectbox(
    "Status", ["", *WorkflowStatus], format_func=lambda s: s or "any", key="wf_status"
)
type_ = c2.selectbox(
    "Type", ["", *sorted(engine.workflows)], format_func=lambda s: s or "any", key="wf_type"
)
search = c3.text_input("Search by id", key="wf_search", placeholder="part of an id")
size = c4.selectbox("Per page", [25, 50, 100, 200], index=1, key="wf_size")

t1, t2, t3 = st.columns([2, 2, 1])
created_days = t1.date_input(
    "Created between (UTC)", value=(), key="wf_created", format="YYYY-MM-DD"
)
updated_days = t2.date_input(
    "Updated between (UTC)", value=(), key="wf_updated", format="YYYY-MM-DD"
)
sort = t3.selectbox(
    "Sort by",
    ["created_at", "updated_at"],
    format_func=lambda s: "newest created" if s == "created_at" else "latest updated",
    key="wf_sort",
)


def _days(picked: object) -> tuple[datetime | None, datetime | None]:
    """A picked day range as ``[from, to)`` in UTC: from the first day's start to the end of
    the last (one day picked: that day)."""
    days = [d for d in (picked if isinstance(picked, (tuple, list)) else [picked]) if d]
    if not days or not isinstance(days[0], date):
        return None, None
    start = datetime.combine(days[0], time.min, tzinfo=UTC)
    return start, datetime.combine(days[-1], time.min, tzinfo=UTC) + timedelta(days=1)


created, updated = _days(created_days), _days(updated_days)
filters = (status, type_, search, size, created, updated, sort)
if st.session_state.get("wf_filters") != filters:  # new filters start at the first page
    st.session_state["wf_filters"], st.session_state["wf_page"] = filters, 0
    st.session_state["wf_cursor"] = services.Cursor()
page = services.list_workflows(
    engine,
    status=status or None,
    type=type_ or None,
    search=search or None,
    page=st.session_state.get("wf_page", 0),
    page_size=size,
    cursor=st.session_state.get("wf_cursor", services.Cursor()),
    created=created,
    updated=updated,
    sort=sort,
    known=counts,
)

event = st.dataframe(
    ui.status_table(page.rows),
    hide_index=True,
    on_select="rerun",
    selection_mode="single-row",
    key="wf_table",
    column_order=("id", "type", "status", "error", "waiting on", "where", "created", "updated"),
    column_config={
        "id": st.column_config.TextColumn(width="medium"),
        "status": st.column_config.TextColumn(width="small"),
        "waiting on": st.column_config.TextColumn(width="medium"),
        "where": st.column_config.TextColumn(width="medium"),
        "error": st.column_config.TextColumn(width="large"),
        "created": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss"),
        "updated": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss"),
    },
)
if event.selection.rows:
    st.switch_page(
        "views/workflow.py", query_params={"id": page.rows[event.selection.rows[0]]["id"]}
    )


def _turn(go: str, number: int) -> None:
    """Go to another page by keyset: the cursor is a row of the page shown."""
    key = {"after": page.last_key, "before": page.first_key}.get(go)
    st.session_state["wf_cursor"] = services.Cursor(go, key)
    st.session_state["wf_page"] = max(0, number)


n = page.page
last = (page.pages or 1) - 1
p1, p2, p3, p4, p5 = st.columns([1, 1, 1, 1, 4])
p1.button(
    "First", key="wf_first", on_click=_turn, args=("first", 0), disabled=not page.has_previous
)
p2.button("Previous", key="wf_prev", on_click=_turn, args=("before", n - 1),
          disabled=not page.has_previous)  # fmt: skip
p3.button("Next", key="wf_next", on_click=_turn, args=("after", n + 1), disabled=not page.has_next)
p4.button("Last", key="wf_last", on_click=_turn, args=("last", last), disabled=not page.has_next)
where = f"Page {n + 1}" if page.total is not None or n else ""
if page.total:
    where += f" of {page.pages} · {services.plural(page.total, 'workflow')}"
p5.caption(" · ".join(x for x in (where, "select a row to open it" if page.rows else "") if x)
           or "No workflow matches these filters.")  # fmt: skip

with st.sidebar:
    st.divider()
    wid = st.text_input("Open workflow by id", key="wf_open")
    if st.button("Open", key="wf_open_button", disabled=not wid):
        st.switch_page("views/workflow.py", query_params={"id": wid.strip()})
    ui.action(
        "Run due work now",
        "wf_run_due",
        services.run_due,
        help="Fire due timers and retries here (a `gorch worker` does this continuously).",
    )
