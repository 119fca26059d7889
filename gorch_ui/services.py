"""Every query and action of the operator UI, as plain Python over the engine's public API.

The pages only render what these functions return and call them from buttons; tests call them
directly, without Streamlit. Actions take the acting ``Operator`` (``gorch_ui.access``) first
and refuse viewers here, on the server, not only by hiding buttons: every action reaches the
engine with the operator's name as ``actor`` and the reason given, so the history records
who, when and why.
"""

from __future__ import annotations

import difflib
import json
import os
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

import networkx as nx

from engine import (
    DEFAULT_APP,
    MAIN,
    POSITIONABLE_KINDS,
    BulkAction,
    BulkPreview,
    BulkReport,
    CallbackRejected,
    CompatibilityReport,
    Engine,
    GorchError,
    HistoryEntry,
    HistoryKind,
    InboxPage,
    Incident,
    InlineResumer,
    InvalidOperation,
    PendingDecision,
    PollingResumer,
    StateError,
    ThreadStatus,
    WaitInfo,
    Workflow,
    WorkflowInfo,
    WorkflowNotFound,
    WorkflowStatus,
    check_compatibility,
    db_url,
    load_app,
    open_store,
    state_data,
    storable_text,
    undeclared_fields,
    validate_state,
)
from engine import graph as gorch_graph
from gorch_ui.access import Operator, actor, roles_of
from gorch_ui.escape import md


class StaleAction(CallbackRejected):
    """The wait was resolved (or the workflow ended) since the page showed it."""


def plural(n: int, noun: str) -> str:
    """``1 workflow``, ``2 workflows``: a count with its noun agreeing."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def a_or_an(word: str) -> str:
    """``a Order``? ``an Order``: the article a word takes (by its first letter)."""
    return f"{'an' if word[:1].lower() in 'aeiou' else 'a'} {word}"


# -- opening the engine ---------------------------------------------------------------------


def open_engine(url: str | None = None, app: str | None = None, *, seed: bool = True) -> Engine:
    """The engine over ``url``/``GORCH_DB_URL`` running ``app``/``GORCH_APP``.

    An empty database of the bundled examples is seeded with them in every status. Work runs
    in this process (``GORCH_UI_EXECUTE=inline``, the default) or is left to ``gorch worker``
    (``GORCH_UI_EXECUTE=worker``).
    """
    loaded = load_app(app)
    inline = os.environ.get("GORCH_UI_EXECUTE", "inline") != "worker"
    engine = Engine(
        open_store(db_url(url)),
        loaded.workflows,
        managers=loaded.managers,
        resumer=InlineResumer() if inline else PollingResumer(),
    )
    if seed and loaded.module == DEFAULT_APP and not any(engine.store.count_workflows().values()):
        from engine.examples.demo import seed_demo

        seed_demo(engine)
    return engine


# -- workflows ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Counts:
    """How many workflows stand in each status, in total and per registered type."""

    total: dict[WorkflowStatus, int]
    by_type: dict[str, dict[WorkflowStatus, int]]


def counts(engine: Engine) -> Counts:
    """The counts, in one read of the store (a GROUP BY type, status)."""
    found = engine.store.count_by_type()
    total = dict.fromkeys(WorkflowStatus, 0)
    for n in found.values():
        for s, k in n.items():
            total[s] += k
    empty = dict.fromkeys(WorkflowStatus, 0)
    return Counts(total, {t: found.get(t, empty) for t in sorted(engine.workflows)})


@dataclass(frozen=True)
class Cursor:
    """Where a page of the workflows table starts, by keyset (never by ``OFFSET``).

    ``go``: ``first`` (the newest rows), ``after`` the row ``key`` (the next page),
    ``before`` it (the previous page) or ``last`` (the oldest rows). ``key`` is a row's
    ``(time, id)``, the time being the one the table is sorted by.
    """

    go: str = "first"
    key: tuple[datetime, str] | None = None


@dataclass(frozen=True)
class WorkflowPage:
    """One page of the workflows table."""

    rows: list[dict[str, Any]]
    page: int
    page_size: int
    has_next: bool
    total: int | None  # None when a search or a time range makes it unknown without scanning
    has_previous: bool = False
    first_key: tuple[datetime, str] | None = None  # the cursors of the pages around it
    last_key: tuple[datetime, str] | None = None

    @property
    def pages(self) -> int | None:
        return None if self.total is None else max(1, -(-self.total // self.page_size))


def list_workflows(
    engine: Engine,
    *,
    status: str | None = None,
    type: str | None = None,
    search: str | None = None,
    page: int = 0,
    page_size: int = 50,
    cursor: Cursor | None = None,
    created: tuple[datetime | None, datetime | None] = (None, None),
    updated: tuple[datetime | None, datetime | None] = (None, None),
    sort: str = "created_at",
    known: Counts | None = None,
) -> WorkflowPage:
    """Workflows newest first, filtered, one page at a time; the database does the paging.

    With a ``cursor`` the page is found by keyset, so the last page of a million rows costs
    what the first does; ``page`` is then only the number shown. Without one, ``page`` is
    an offset (the cost of a deep page grows with it). ``created``/``updated`` are
    ``[from, to)`` time ranges; ``sort`` is ``created_at`` or ``updated_at``. ``known``:
    the ``counts`` the page has read already, for the total (else they are read again).
    """
    try:
        st = WorkflowStatus(status) if status else None
    except ValueError:
        raise InvalidOperation(f"unknown status {status!r}") from None
    page = max(0, page)
    if not all(storable_text(x) for x in (search or "", type or "")):
        # No store holds NUL or a lone surrogate (engine._jsonsafe), so nothing matches; and
        # PostgreSQL would refuse the query itself.
        return WorkflowPage([], page, page_size, False, None if search else 0)
    go = cursor.go if cursor is not None else "offset"
    if go not in ("first", "after", "before", "last", "offset"):
        raise InvalidOperation(f"unknown cursor {go!r}")
    backwards = go in ("before", "last")
    # Engine.list loads each row's state, so a row whose state no longer loads shows why.
    infos = list(
        engine.list(
            status=st,
            type=type or None,
            search=search or None,
            limit=page_size + 1,  # one more tells whether there is a page beyond
            offset=page * page_size if go == "offset" else 0,
            created_after=created[0],
            created_before=created[1],
            updated_after=updated[0],
            updated_before=updated[1],
            sort=sort,
            ascending=backwards,
            after=cursor.key if cursor is not None and go in ("after", "before") else None,
        )
    )
    beyond = len(infos) > page_size
    infos = infos[:page_size]
    if backwards:
        infos.reverse()
        has_next, has_previous = go == "before", beyond
    else:
        has_next, has_previous = beyond, go == "after" or (go == "offset" and page > 0)
    total = None
    if not search and created == (None, None) and updated == (None, None):
        if known is None:
            by_status = engine.store.count_workflows(type=type or None)
        else:
            by_status = known.by_type.get(type, {}) if type else known.total
        total = by_status.get(st, 0) if st else sum(by_status.values())
    rows = [
        {
            "id": r.id,
            "type": r.type,
            "status": r.status.value,
            "waiting on": waiting_on(engine, r),
            "where": ", ".join(
                f"{t.id}@{t.position or 'start'}" for t in r.threads if t.status.unfinished
            ),
            "error": error_text(r),
            "created": r.created_at,
            "updated": r.updated_at,
        }
        for r in infos
    ]

    def key(r: WorkflowInfo[Any]) -> tuple[datetime, str]:
        return (r.updated_at if sort == "updated_at" else r.created_at), r.id

    return WorkflowPage(
        rows,
        page,
        page_size,
        has_next,
        total,
        has_previous,
        key(infos[0]) if infos else None,
        key(infos[-1]) if infos else None,
    )


def error_text(info: WorkflowInfo[Any]) -> str:
    """The workflow's error for a table cell: its own, its failed threads', or why its state
    does not load ("" if none)."""
    failed = [t for t in info.threads if t.status is ThreadStatus.FAILED]
    if len(failed) == 1 and failed[0].id == MAIN:  # the usual case: no need to name it
        return info.error or failed[0].error or ""
    return info.error or "; ".join(f"{t.id}: {t.error}" for t in failed) or state_problem(info)


def failures(info: WorkflowInfo[Any]) -> list[str]:
    """One line per failed thread (where and why), for the workflow page's header."""
    return [
        f"thread {t.id} failed at {t.position or 'its start'!r} after {t.attempts} "
        f"attempt{'' if t.attempts == 1 else 's'}: {t.error or 'no error recorded'}"
        for t in info.threads
        if t.status is ThreadStatus.FAILED
    ]


def waiting_on(engine: Engine, info: WorkflowInfo[Any]) -> str:
    """What the workflow's waiting threads wait for: each wait and its events ("" if none)."""
    waiting = [t for t in info.threads if t.status is ThreadStatus.WAITING]
    if not waiting:
        return ""
    events: dict[tuple[str, str], list[str]] = {}
    for w in engine.store.list_waits(workflow_id=info.id):
        events.setdefault((w.thread_id, w.wait), []).append(w.event)
    parts = []
    for t in waiting:
        names = sorted(events.get((t.id, t.position), []))
        what = f"{t.position}: {', '.join(names)}" if names else f"{t.position} (condition)"
        parts.append(what if t.id == MAIN else f"{t.id} · {what}")
    return "; ".join(parts)


def state_problem(info: WorkflowInfo[Any]) -> str:
    """Why the workflow's state does not load, short enough for a table cell ("" if it does)."""
    if info.state_error is None:
        return ""
    # The id is in the row already: "state does not fit Expense: amount: ..."
    return "state " + info.state_error.removeprefix(f"stored state of workflow {info.id!r} ")


# -- one workflow ---------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkflowView:
    """Everything the workflow page shows."""

    info: WorkflowInfo[Any]
    waits: list[WaitInfo]
    history: list[HistoryEntry]
    dot: str | None  # DOT source of the live graph; None if the definition cannot be drawn
    graph_error: str | None
    targets: dict[str, list[str]]  # thread id -> statements ``goto`` may move it to
    stored_state: dict[str, Any] | None = None  # the raw JSON, when it does not load


def decide_link(workflow_id: str, wait: str) -> str:
    """The workflow page URL that opens the decision form of ``wait`` beside the graph."""
    return f"workflow?id={_quote(workflow_id)}&decide={wait}"


def inbox_link(workflow_id: str, wait: str = "{name}") -> str:
    """The inbox URL that opens the resolve form of ``wait`` (a ``to_dot`` link template)."""
    return f"inbox?workflow={_quote(workflow_id)}&wait={wait}"


def _quote(text: str) -> str:
    # A lone surrogate (possible in a name from code) cannot be encoded: sent as its escape.
    return quote(text, safe="", errors="backslashreplace")


def goto_link(workflow_id: str, statement: str) -> str:
    """The workflow page URL that offers to move a thread onto ``statement``."""
    return f"workflow?id={_quote(workflow_id)}&goto={_quote(statement)}"


def node_links(
    workflow_id: str, waiting: set[str], *, movable: bool
) -> Callable[[str, str], str | None]:
    """Where a click on a graph node leads: a pending wait to its decision form, any other
    statement a thread can stand on to the goto form (while the workflow runs); both open
    on the workflow page, beside the graph (``gorch_ui.graph_clicks``)."""

    def link(name: str, kind: str) -> str | None:
        if name in waiting:
            return decide_link(workflow_id, _quote(name))
        if movable and kind in POSITIONABLE_KINDS:
            return goto_link(workflow_id, name)
        return None

    return link


def workflow_view(engine: Engine, workflow_id: str) -> WorkflowView:
    """The workflow, its open waits, history, live graph and ``goto`` targets."""
    info = engine.get(workflow_id)
    waits = engine.pending_waits(workflow_id)
    history = engine.history(workflow_id)
    dot = error = None
    targets: dict[str, list[str]] = {}
    if info.state is None:  # the state does not load: no definition to draw, nothing to move
        stored = engine.store.load(workflow_id).state
        error = f"the stored state does not load: {info.state_error}"
        return WorkflowView(info, waits, history, None, error, {t.id: [] for t in info.threads},
                            stored)  # fmt: skip
    try:
        g = gorch_graph.definition_graph(info.state.definition())
        targets = goto_targets(g, info)
        dot = gorch_graph.to_dot(
            g,
            gorch_graph.Overlay(info, waits, history),
            title=f"{info.type} {info.id} — {info.status.value}",
            link=node_links(workflow_id, {w.wait for w in waits}, movable=not info.status.done),
        ).source
    except Exception as e:  # a definition that raises must not hide the rest of the page
        error = f"{type(e).__name__}: {e}"
    return WorkflowView(info, waits, history, dot, error, targets)


def goto_targets(g: nx.DiGraph[str], info: WorkflowInfo[Any]) -> dict[str, list[str]]:
    """Per thread, the named statements of its own body that it can be moved to."""
    by_thread: dict[str | None, list[str]] = {}
    for _, data in g.nodes(data=True):
        if data["name"] is not None and data["kind"] in POSITIONABLE_KINDS:
            by_thread.setdefault(data["thread"], []).append(data["name"])
    return {t.id: by_thread.get(None if t.id == MAIN else t.name, []) for t in info.threads}


def thread_rows(info: WorkflowInfo[Any]) -> list[dict[str, Any]]:
    """The threads, as table rows."""
    return [
        {
            "thread": t.id,
            "goroutine": t.name,
            "status": t.status.value,
            "at": t.position,
            "phase": t.phase.value,
            "attempts": t.attempts,
            "retry at": t.retry_at,
            "error": t.error or "",
        }
        for t in info.threads
    ]


def history_rows(history: Sequence[HistoryEntry]) -> list[dict[str, Any]]:
    """The history, newest first, as table rows."""
    return [
        {
            "at": h.at,
            "what": str(h.kind),  # a HistoryKind from the memory store: its plain value
            "who": h.actor or "",
            "thread": h.thread or "",
            "statement": h.statement or "",
            "why": why(h),
            "detail": json.dumps(
                {k: v for k, v in h.detail.items() if k not in ("reason", "traceback")},
                default=str,
            ),
        }
        for h in reversed(history)
    ]


def why(h: HistoryEntry) -> str:
    """The reason of a history line: an operator's, or the comment given with a decision."""
    reason = h.detail.get("reason")
    if not reason and isinstance(given := h.detail.get("input"), dict):
        reason = given.get("reason")
    return str(reason or "")


def step(engine: Engine, op: Operator, workflow_id: str, reason: str | None = None) -> str:
    info = engine.step(workflow_id, actor=actor(op), reason=reason or None)
    return f"stepped: {info.status.value}"


def execute(engine: Engine, op: Operator, workflow_id: str, reason: str | None = None) -> str:
    info = engine.execute(workflow_id, actor=actor(op), reason=reason or None)
    return f"executed: {info.status.value}"


class FailedAgain(InvalidOperation):
    """A retry was made (and recorded) but the workflow failed again."""


def retry(engine: Engine, op: Operator, workflow_id: str, reason: str | None = None) -> str:
    """Retry the failed threads. A retry that ends in failure again is reported as a failure
    (``FailedAgain``, with why), not as a success: the retry itself stays recorded."""
    info = engine.retry(workflow_id, actor(op), reason or None)
    if info.status is WorkflowStatus.FAILED:
        raise FailedAgain(
            f"workflow {workflow_id} failed again: " + "; ".join(failures(info)),
            workflow_id=workflow_id,
        )
    return f"retried: {info.status.value}"


def retry_preview(info: WorkflowInfo[Any]) -> str:
    """What ``retry`` will do, as escaped Markdown for the confirmation."""
    lines = failures(info)
    n = len(lines)
    return (
        f"**Retry {n} failed thread{'' if n == 1 else 's'} of {md(info.id)}?** Each gets fresh "
        "attempts at the statement where it failed.\n\n" + "\n".join(f"- {md(x)}" for x in lines)
    )


def cancel_preview(view: WorkflowView) -> str:
    """What ``cancel`` will do, as escaped Markdown for the confirmation."""
    info = view.info
    live = [t for t in info.threads if t.status.live]
    n, w = len(live), len(view.waits)
    where = ", ".join(f"{t.id}@{t.position or 'start'}" for t in live)
    return (
        f"**Cancel {md(info.type)} {md(info.id)} for good?** It is {info.status.value}; "
        f"{n} live thread{'' if n == 1 else 's'} "
        + (f"({md(where)}) " if live else "")
        + f"will stop and {w} open wait{'' if w == 1 else 's'} will be torn down. "
        "This cannot be undone."
    )


def tracebacks(history: Sequence[HistoryEntry]) -> list[tuple[str, str]]:
    """The tracebacks kept in the history (failed and retried steps, failing conditions),
    newest first, each with a title saying when and where."""
    return [
        (
            f"{h.at:%Y-%m-%d %H:%M:%S} · {h.kind} · thread {h.thread or MAIN} at "
            f"{h.statement or 'its start'!r}: {h.detail.get('error') or ''}",
            str(h.detail["traceback"]),
        )
        for h in reversed(history)
        if h.detail.get("traceback")
    ]


def cancel(engine: Engine, op: Operator, workflow_id: str, reason: str | None = None) -> str:
    engine.cancel(workflow_id, actor(op), reason or None)
    return "cancelled"


def goto(
    engine: Engine,
    op: Operator,
    workflow_id: str,
    thread: str,
    statement: str,
    reason: str | None = None,
) -> str:
    """Move a thread; the engine validates the statement against the current definition."""
    info = engine.goto(workflow_id, thread, statement, actor(op), reason or None)
    return f"moved {thread} to {statement!r}: {info.status.value}"


def run_due(engine: Engine, op: Operator) -> str:
    actor(op)
    return f"{engine.run_due(100)} due item(s) handled"


# -- editing the state ----------------------------------------------------------------------


@dataclass(frozen=True)
class StateDiff:
    """A proposed state, validated by the model, and how it differs from the stored one."""

    new: dict[str, Any]
    changed: dict[str, tuple[Any, Any]]
    text: str  # a unified diff of the two JSON documents


def state_json(info: WorkflowInfo[Any]) -> str:
    return json.dumps(state_data(info.state), indent=2, sort_keys=True)


def editable_state(view: WorkflowView) -> str:
    """What the state editor starts from: the state, or the stored JSON if it does not load
    (for the operator to fix into something the model takes)."""
    if view.info.state is None:
        return json.dumps(view.stored_state, indent=2, sort_keys=True)
    return state_json(view.info)


def preview_state(engine: Engine, workflow_id: str, text: str) -> StateDiff:
    """Validate ``text`` (JSON) through the workflow's model; raise ``StateError`` if it fails."""
    info = engine.get(workflow_id)
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise StateError(f"not valid JSON: {e}", workflow_id=workflow_id) from None
    if not isinstance(raw, dict):
        raise StateError("the state must be a JSON object", workflow_id=workflow_id)
    cls = engine.workflow_class(info.type, workflow_id)
    unknown = undeclared_fields(cls, raw)
    if unknown:  # the engine refuses them too: the model would drop their values silently
        names = ", ".join(map(repr, unknown))
        raise StateError(
            f"has {names}, which {cls.__name__} does not declare: remove or rename it "
            "(keys are field names, not aliases)",
            workflow_id=workflow_id,
        )
    try:
        new = state_data(validate_state(cls, raw))  # by field name, as stored
    except ValueError as e:
        raise StateError(f"does not fit {cls.__name__}: {e}", workflow_id=workflow_id) from None
    # a repair: the diff is against the JSON as stored
    old = engine.store.load(workflow_id).state if info.state is None else state_data(info.state)
    changed = {k: (old.get(k), new.get(k)) for k in sorted(set(old) | set(new))}
    changed = {k: v for k, v in changed.items() if v[0] != v[1]}
    diff = difflib.unified_diff(
        json.dumps(old, indent=2, sort_keys=True).splitlines(),
        json.dumps(new, indent=2, sort_keys=True).splitlines(),
        "stored",
        "edited",
        lineterm="",
    )
    return StateDiff(new, changed, "\n".join(diff))


def update_state(
    engine: Engine, op: Operator, workflow_id: str, text: str, reason: str | None = None
) -> str:
    """Save an edited state (validated again by the engine, under the workflow's lease)."""
    who = actor(op)
    diff = preview_state(engine, workflow_id, text)
    if not diff.changed:
        return "nothing changed"
    engine.update_state(workflow_id, diff.new, who, reason or None)
    return f"state saved: {', '.join(diff.changed)} changed"


# -- the inbox ------------------------------------------------------------------------------


def inbox(
    engine: Engine,
    *,
    type: str | None = None,
    workflow_id: str | None = None,
    wait: str | None = None,
    limit: int = 200,
) -> list[WaitInfo]:
    """Open waits across workflows, newest first; optionally of one workflow's statement."""
    if not all(storable_text(x) for x in (workflow_id or "", type or "")):
        return []  # nothing stored holds NUL or a lone surrogate: see list_workflows
    found = engine.store.list_waits(workflow_id=workflow_id, type=type or None, limit=limit)
    return [w for w in found if wait is None or w.wait == wait]


WAITING_LONGER = {
    "any time": None,
    "5 minutes": timedelta(minutes=5),
    "1 hour": timedelta(hours=1),
    "1 day": timedelta(days=1),
    "1 week": timedelta(weeks=1),
}
"""The inbox's "waiting longer than" choices."""


def inbox_page(
    engine: Engine,
    reader: Operator,
    *,
    workflow_type: str | None = None,
    event: str | None = None,
    mine: bool = False,
    waiting_longer_than: timedelta | None = None,
    workflow_id: str | None = None,
    wait: str | None = None,
    after: tuple[datetime, str, str, int] | None = None,
    page_size: int = 25,
) -> InboxPage:
    """One page of decisions, oldest first, with the count of all that match: one card per
    ``Wait`` (its events together); ``mine`` keeps those ``reader`` may decide. A read, not
    an action: a viewer sees the inbox too."""
    texts = (workflow_id or "", wait or "", event or "", workflow_type or "", reader.name)
    if not all(storable_text(x) for x in texts):
        return InboxPage([], 0, False)  # nothing stored holds NUL or a lone surrogate
    return engine.inbox(
        workflow_type=workflow_type or None,
        event=event or None,
        workflow_id=workflow_id or None,
        wait=wait or None,
        actor=(reader.name.strip() or None) if mine else None,
        roles=roles_of(reader.name) if mine else (),
        waiting_longer_than=waiting_longer_than,
        after=after,
        limit=page_size,
    )


def inbox_events(engine: Engine) -> list[str]:
    """Events that open waits wait for, for the inbox's filter (from a bounded sample)."""
    return sorted({w.event for w in engine.store.list_waits(limit=1000)})


def who_decides(card: PendingDecision) -> str:
    """Who may decide a card, as text: "anyone", "bob, role:approver", "; not ann"."""
    if card.assignees is None:
        return "no one: it ends by itself (a timer) or by a system"
    text = ", ".join(card.assignees) or "anyone"
    return text + (f"; not {', '.join(card.excluded)}" if card.excluded else "")


def wait_types(engine: Engine) -> list[str]:
    return sorted({w.type for w in engine.store.list_waits(limit=1000)})


def resolve(engine: Engine, op: Operator, wait: WaitInfo, input: Any) -> str:
    """Deliver ``wait``'s event with ``input``, quoting the pc the page showed.

    Raises:
        StaleAction: someone resolved it first or the workflow ended; nothing changed.
        InvalidInput: ``input`` failed the handler's validation; nothing changed.
    """
    who = actor(op)
    try:
        engine.on_callback(
            wait.workflow_id, wait.event, input, actor=who, thread=wait.thread_id, pc=wait.pc,
            roles=roles_of(who),
        )  # fmt: skip
    except CallbackRejected as e:
        if e.taken:
            raise StaleAction(
                _stale_message(engine, wait),
                reason=e.reason,
                workflow_id=wait.workflow_id,
                event=wait.event,
            ) from e
        raise
    status = engine.get(wait.workflow_id).status.value
    return f"{wait.event} delivered to {wait.workflow_id} (now {status})"


def approve(engine: Engine, op: Operator, wait: WaitInfo, reason: str = "") -> str:
    comment = {"reason": reason.strip()} if reason and reason.strip() else {}
    return resolve(engine, op, wait, {"approved": True, **comment})


def deny(engine: Engine, op: Operator, wait: WaitInfo, reason: str) -> str:
    actor(op)
    if not reason.strip():
        raise InvalidOperation("give a reason to deny", workflow_id=wait.workflow_id)
    return resolve(engine, op, wait, {"approved": False, "reason": reason})


def _stale_message(engine: Engine, wait: WaitInfo) -> str:
    """Who got there first, from the history."""
    where = f"{wait.wait!r} of {wait.workflow_id}"
    try:
        info = engine.get(wait.workflow_id)
        history = engine.history(wait.workflow_id)
    except GorchError:
        return f"{where} no longer exists"
    for h in reversed(history):
        if h.at < wait.created_at:
            break
        if (
            h.kind == HistoryKind.CALLBACK
            and h.thread == wait.thread_id
            and h.statement == wait.wait
        ):
            return (
                f"{where} was already resolved: {h.detail.get('event')} by "
                f"{h.actor or 'unknown'} at {h.at:%Y-%m-%d %H:%M:%S}. Nothing was changed."
            )
        if h.kind in (HistoryKind.CANCELLED, HistoryKind.GOTO) and h.thread in (
            None,
            wait.thread_id,
        ):
            return (
                f"{where} is no longer pending: {h.kind} by {h.actor or 'unknown'} at "
                f"{h.at:%Y-%m-%d %H:%M:%S}. Nothing was changed."
            )
    return f"{where} is no longer pending (workflow {info.status.value}). Nothing was changed."


# -- starting -------------------------------------------------------------------------------


def model_schema(engine: Engine, type_name: str) -> dict[str, Any]:
    """The JSON schema of a registered workflow type's state."""
    return engine.workflow_class(type_name).model_json_schema(by_alias=False)  # as stored


def start(
    engine: Engine,
    op: Operator,
    type_name: str,
    values: Mapping[str, Any],
    workflow_id: str | None = None,
) -> str:
    """Validate ``values`` through the type's model and start the workflow; return its id."""
    who = actor(op)
    cls = engine.workflow_class(type_name)
    internal = sorted(set(values) - set(cls.input_fields()))
    if internal:  # the form never offers them: state the workflow sets itself
        raise StateError(f"{type_name} does not take {', '.join(internal)} as input")
    wid = (workflow_id or "").strip() or None
    if wid is not None and _exists(engine, wid):
        raise InvalidOperation(f"a workflow with id {wid!r} exists already", workflow_id=wid)
    try:
        state = validate_state(cls, dict(values))
    except ValueError as e:
        raise StateError(f"invalid {type_name}: {e}") from None
    return engine.new_workflow(state, wid, actor=who)


def _exists(engine: Engine, workflow_id: str) -> bool:
    try:
        engine.store.load(workflow_id)
    except WorkflowNotFound:
        return False
    return True


# -- definitions ----------------------------------------------------------------------------

LIVE_STATUSES = tuple(s for s in WorkflowStatus if s.unfinished)
"""Workflows still standing somewhere (running, waiting, failed): counted per statement."""


@dataclass(frozen=True)
class DefinitionView:
    """A registered type's graph and where its live workflows stand on it."""

    type: str
    dot: str | None
    error: str | None
    threads_at: dict[str, int]  # statement -> live threads standing on it
    counted: int  # live workflows looked at
    live: int  # live workflows in all
    statements: list[str]  # the named statements threads can stand on


def sample_state(cls: type[Workflow]) -> Workflow:
    """An instance to draw the definition from: the defaults, else an unvalidated shell."""
    try:
        return cls()
    except ValueError:
        return cls.model_construct()


def definition_view(engine: Engine, type_name: str, *, scan: int = 10_000) -> DefinitionView:
    """The type's graph (from its default state) with, over at most ``scan`` live workflows,
    how many threads stand on each statement."""
    by_status = engine.store.count_workflows(type=type_name)
    live = sum(by_status[s] for s in LIVE_STATUSES)
    at: Counter[str] = Counter()
    counted = 0
    for status in LIVE_STATUSES:
        offset = 0
        while counted < scan:
            batch = engine.store.list_workflows(
                status=status, type=type_name, limit=min(500, scan - counted), offset=offset
            )
            at.update(
                t.position for r in batch for t in r.threads if t.position and t.status.unfinished
            )
            counted += len(batch)
            offset += len(batch)
            if len(batch) < 500:
                break
    dot = error = None
    names: list[str] = []
    try:
        g = gorch_graph.definition_graph(
            sample_state(engine.workflow_class(type_name)).definition()
        )
        for _, data in g.nodes(data=True):
            if data["name"] is not None and data["kind"] in POSITIONABLE_KINDS:
                names.append(data["name"])
            n = at.get(data["name"], 0) if data["name"] is not None else 0
            if n:
                data["label"] += (
                    f'<BR/><FONT POINT-SIZE="10" COLOR="#1f77b4"><B>{n} here</B></FONT>'
                )
        dot = gorch_graph.to_dot(g, title=type_name).source
    except Exception as e:  # a definition that raises must not hide the other types
        error = f"{type(e).__name__}: {e}"
    return DefinitionView(type_name, dot, error, dict(at), counted, live, names)


def compatibility(engine: Engine, type_name: str) -> CompatibilityReport:
    """Which unfinished workflows of the type the code now would break (reads every one)."""
    return check_compatibility(engine.workflow_class(type_name), engine.store)


def move(
    engine: Engine,
    op: Operator,
    type_name: str,
    from_statement: str,
    to_statement: str,
    reason: str | None = None,
) -> str:
    """Move every thread of the type standing on one statement to another (one operation)."""
    report = engine.move(type_name, from_statement, to_statement, actor(op), reason or None)
    failed = f"; {len(report.failed)} failed: {report.failed}" if report.failed else ""
    # Moved threads run on from there at once (inline) and may stand on the same statement
    # again (a wait after the step they were sent back to): say where they stand now.
    now: Counter[str] = Counter()
    for wid, tid in report.moved:
        try:
            t = engine.get(wid).thread(tid)
        except GorchError:
            continue
        now[f"{t.position or 'start'} ({t.status.value})" if t is not None else "gone"] += 1
    where = ", ".join(f"{k}: {n}" for k, n in now.most_common())
    ran = f"; they ran on and now stand on: {where}" if where else ""
    return (
        f"moved {plural(len(report.moved), 'thread')} to {to_statement!r} "
        f"(operation {report.operation}){ran}{failed}"
    )


def move_candidates(
    engine: Engine, type_name: str, from_statement: str, *, scan: int = 10_000
) -> list[tuple[str, str]]:
    """The (workflow, thread) pairs ``move`` would act on now: the unfinished threads of the
    type standing on ``from_statement``, over the newest ``scan`` unfinished workflows."""
    found: list[tuple[str, str]] = []
    for status in LIVE_STATUSES:
        after = None
        seen = 0
        while seen < scan:
            batch = engine.list(status=status, type=type_name, limit=500, after=after)
            found.extend(
                (r.id, t.id)
                for r in batch
                for t in r.threads
                if t.position == from_statement and t.status.unfinished
            )
            seen += len(batch)
            if len(batch) < 500:
                break
            after = (batch[-1].created_at, batch[-1].id)
    return found


def move_preview(engine: Engine, type_name: str, from_statement: str, to_statement: str) -> str:
    """What ``move`` will do, as escaped Markdown for the confirmation: how many, which."""
    pairs = move_candidates(engine, type_name, from_statement)
    if not pairs:
        return f"No thread of {md(type_name)} stands on {md(repr(from_statement))} now."
    n, shown = len(pairs), pairs[:50]
    listed = "\n".join(f"- {md(w)} · thread {md(t)}" for w, t in shown)
    more = f"\n- … and {n - len(shown)} more" if n > len(shown) else ""
    return (
        f"**Move {n} thread{'' if n == 1 else 's'} of "
        f"{len({w for w, _ in pairs})} workflow{'' if len({w for w, _ in pairs}) == 1 else 's'} "
        f"from {md(repr(from_statement))} to {md(repr(to_statement))}?** Each move is recorded "
        f"under one operation id; the threads run on from there.\n\n{listed}{more}"
    )


# -- incidents ------------------------------------------------------------------------------


def incidents(engine: Engine, type: str | None = None) -> list[Incident]:
    """Failures grouped by cause, the largest group first (``Engine.incidents``)."""
    return engine.incidents(type=type or None)


def incident_rows(found: Sequence[Incident]) -> list[dict[str, Any]]:
    """The incidents as table rows."""
    return [
        {
            "workflows": i.workflows,
            "threads": i.threads,
            "type": i.type,
            "statement": i.statement,
            "cause": i.cause,
            "first seen": i.first_seen,
            "last seen": i.last_seen,
            "key": i.key,
        }
        for i in found
    ]


def bulk_preview(engine: Engine, incident: Incident, action: str) -> BulkPreview:
    """Every workflow a retry or cancel of ``incident`` would touch, with their versions."""
    return engine.preview_bulk(action, incident.workflow_ids, incident=incident.key)


def preview_rows(preview: BulkPreview) -> list[dict[str, Any]]:
    """The preview's workflows as table rows: those it acts on, then those it leaves."""
    rows = [
        {"workflow": t.workflow_id, "type": t.type, "status": t.status.value,
         "version": t.version, "acts": preview.action.value, "error": t.error}
        for t in preview.targets
    ]  # fmt: skip
    rows += [
        {"workflow": w, "type": "", "status": "", "version": None, "acts": f"no: {why}",
         "error": ""}
        for w, why in preview.refused
    ]  # fmt: skip
    return rows


def run_bulk(
    engine: Engine,
    op: Operator,
    preview: BulkPreview,
    reason: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> BulkReport:
    """Carry out a previewed retry or cancel as one operation; refuses viewers."""
    who = actor(op)
    if preview.action is BulkAction.RETRY:
        return engine.retry_many(preview, who, reason or None, progress=progress)
    return engine.cancel_many(preview, who, reason or None, progress=progress)
