"""``SQLModelStore``: the ``Store`` protocol in SQLite or PostgreSQL, through SQLAlchemy 2.

``SQLModelStore`` holds what both dialects share; ``SQLModelStore(url)`` makes the class of
the URL's dialect, ``SQLiteStore`` or ``PostgresStore``, which override the few methods where
the dialects differ (one hot checkpoint path each). Other dialects are refused. The three
live in one module because the base chooses the subclass (across modules they would import
each other).

Every public method is one short transaction; none is held open between calls, so no step
body ever runs inside one. Exclusivity comes from the lease columns: ``acquire`` is a single
conditional ``UPDATE ... RETURNING``, and ``checkpoint`` a compare-and-set on
``(version, lease_owner)`` followed by the waits and history writes, in one transaction.

The hot path: on PostgreSQL a write that is one statement (``acquire``, ``release``,
``create`` and a checkpoint that changes no wait, each with its history rows in the same
statement) runs in autocommit, one round trip; on SQLite such a checkpoint runs its
transaction on the driver (``engine.store.fast``).

SQLite (the default, ``sqlite:///gorch.db``) runs in WAL mode with ``synchronous=NORMAL``:
a commit survives a killed process, not necessarily a power loss; ``sqlite_synchronous="FULL"``
survives both (see ``engine.store.database`` for why). Write transactions begin with
``BEGIN IMMEDIATE``, so concurrent writers queue for the lock instead of failing halfway.

PostgreSQL is reached through psycopg 3 (``postgresql+psycopg://``; a plain
``postgresql://`` URL is rewritten to it). Its row locks serialise racing ``acquire`` calls,
and ``due_workflows`` reads with ``FOR UPDATE SKIP LOCKED``, so a poller passes over
workflows another worker is taking right now.

Leases on PostgreSQL go by the database's clock (``lease_clock="database"``, its default):
whether a lease has expired, and when one taken, renewed or extended by a checkpoint ends
(``now()`` plus the caller's lease length), are decided in the same statements as before, so
workers on machines whose clocks disagree never share a workflow, and none holds a dead lease
for longer than its length. SQLite is one machine: the caller's clock is the database's.
Timers and ``next_run_at`` stay on the caller's clock (``ManualClock`` in tests).

Database failures surface as ``StoreError`` (the SQLAlchemy error as ``__cause__``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import (
    Connection,
    Engine,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    tuple_,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.pool import QueuePool
from sqlalchemy.sql import Select
from sqlalchemy.sql.elements import ColumnElement

import engine.store.queries as q
import engine.store.retention as retention
from engine._records import (
    ROLE_PREFIX,
    HistoryEntry,
    InboxPage,
    InboxQuery,
    PruneResult,
    WaitInfo,
    WorkflowRecord,
    WorkflowSort,
    WorkflowStatus,
    group_decisions,
)
from engine.errors import LeaseLost, StoreError, WorkflowBusy, WorkflowNotDue, WorkflowNotFound
from engine.store.base import check_listing, check_prune
from engine.store.database import (
    MIGRATIONS,
    WRITE,
    alembic_config,
    create_store_engine,
    database_url,
    upgrade,
)
from engine.store.fast import (
    DriverQuery,
    DriverStatement,
    Statements,
    driver_transaction,
    insert_on_driver,
    run_all,
)
from engine.store.rows import (
    SELDOM_CHANGED,
    history_values,
    name_token,
    record_of,
    set_seqs,
    store_error,
    wait_of,
    wait_values,
    workflow_values,
)
from engine.store.tables import (
    UTCDateTime,
    revoked_sessions,
    sign_in_failures,
    waits,
    workflows,
)

_FAST_ROWS = 64  # at most this many history rows go with a checkpoint's driver statements


class SQLModelStore:
    """Workflows, waits and history in a SQL database (SQLite file by default, or PostgreSQL).

    ``SQLModelStore(url)`` makes the store of the URL's dialect: a ``SQLiteStore`` or a
    ``PostgresStore`` (both ``SQLModelStore``). This class holds what they share; each
    overrides the few methods where the dialects differ.

    Args:
        url: a SQLAlchemy URL: ``sqlite:///path.db``, ``postgresql+psycopg://user@host/db``.
        engine_kwargs: extra arguments for ``sqlalchemy.create_engine`` (pool size, ...).
        migrate: bring the schema up to date on construction (``upgrade``).
        sqlite_synchronous: SQLite's ``PRAGMA synchronous``; ``"NORMAL"`` (the default)
            survives process crashes, ``"FULL"`` also power loss, at an fsync per commit.
        sqlite_busy_timeout: seconds a SQLite writer waits for the write lock.
        lease_clock: whose clock decides leases: ``"database"`` (PostgreSQL only, its
            default) or ``"caller"`` (the times the engine passes, from its ``Clock``; the
            default elsewhere). ``"caller"`` on PostgreSQL is for tests that expire leases
            by moving a ``ManualClock``, or for processes whose clocks are known to agree.

    Raises:
        StoreError: the database could not be reached or migrated, its dialect is neither
            SQLite nor PostgreSQL, or ``lease_clock`` is not one this database can keep.
    """

    dialect: str  # the SQLAlchemy dialect name each subclass serves
    prune_rules: retention.PruneRules  # how prune locks and passes ids on this dialect
    default_lease_clock: Literal["database", "caller"] = "caller"

    def __new__(cls, url: str | URL = "sqlite:///gorch.db", **_options: Any) -> SQLModelStore:
        """The store class of ``url``'s dialect (a subclass is made as asked)."""
        if cls is SQLModelStore:
            try:
                backend = database_url(url).get_backend_name()
            except SQLAlchemyError as e:
                raise StoreError(f"invalid database URL or engine options: {e}") from e
            found = _DIALECTS.get(backend)
            if found is None:
                raise StoreError(
                    f"SQLModelStore supports SQLite and PostgreSQL, not {backend!r} ({url!r})"
                )
            cls = found
        return object.__new__(cls)

    def __init__(
        self,
        url: str | URL = "sqlite:///gorch.db",
        *,
        engine_kwargs: dict[str, Any] | None = None,
        migrate: bool = True,
        sqlite_synchronous: str = "NORMAL",
        sqlite_busy_timeout: float = 10.0,
        lease_clock: Literal["database", "caller"] | None = None,
    ) -> None:
        try:
            self.engine: Engine = create_store_engine(
                url,
                engine_kwargs=engine_kwargs,
                sqlite_synchronous=sqlite_synchronous,
                sqlite_busy_timeout=sqlite_busy_timeout,
            )
        except SQLAlchemyError as e:
            raise StoreError(f"invalid database URL or engine options: {e}") from e
        self._writer = self.engine.execution_options(**{WRITE: True})
        self._reader: Engine = self._read_engine(url, engine_kwargs)
        self._held = threading.local()  # a session's connection (``held``, PostgreSQL)
        if lease_clock is None:
            lease_clock = self.default_lease_clock
        if lease_clock not in ("database", "caller") or (
            lease_clock == "database" and self.default_lease_clock != "database"
        ):
            raise StoreError(
                f"lease_clock must be 'caller' or, on PostgreSQL, 'database', not {lease_clock!r}"
            )
        self.lease_clock: Literal["database", "caller"] = lease_clock
        self._db_clock = lease_clock == "database"  # the DB_* statements (``queries``)
        dialect = self.engine.dialect
        ins = self._insert(workflows)
        self._create = ins.on_conflict_do_nothing().returning(q.W.id)
        self._create_alone = ins.on_conflict_do_nothing()
        ins = self._insert(waits)
        self._upsert_waits = ins.on_conflict_do_update(
            index_elements=[q.C.id],
            set_={c.name: ins.excluded[c.name] for c in waits.c if c.name != "id"},
        )
        # The checkpoint's statements run on the driver's cursor (``engine.store.fast``).
        self._fast_entry = DriverStatement(
            q.INSERT_ENTRY, dialect, list(history_values(q.PROBE_ENTRY))
        )
        self._statements = Statements(dialect, self._fast_entry)
        self._queries: dict[int, DriverQuery] = {}  # ``_query``
        # A checkpoint that changes waits replaces the workflow's rows on the driver too.
        self._drop_all_waits = DriverStatement(q.DROP_ALL_WAITS, dialect)
        self._insert_wait = DriverStatement(q.INSERT_WAIT, dialect, list(wait_values(q.PROBE_WAIT)))
        if migrate:
            upgrade(self.engine)

    def __repr__(self) -> str:
        return f"SQLModelStore({self.engine.url.render_as_string(hide_password=True)!r})"

    def close(self) -> None:
        """Close the pooled connections (the store can still be used; it reconnects)."""
        self.engine.dispose()
        self._reader.dispose()

    # -- what each dialect decides ------------------------------------------------------------

    def _read_engine(self, url: str | URL, engine_kwargs: dict[str, Any] | None) -> Engine:
        """The engine reads (and one-statement writes, ``_alone``) go through."""
        return self.engine

    def _insert(self, table: Any) -> sqlite.Insert | postgresql.Insert:
        """This dialect's INSERT (with ``ON CONFLICT``)."""
        raise NotImplementedError

    def _contains(self, column: Any, needle: str) -> ColumnElement[bool]:
        """Case-sensitive substring, as ``MemoryStore``'s."""
        raise NotImplementedError

    def _create_small(
        self, row: dict[str, Any], entries: list[dict[str, Any]]
    ) -> tuple[bool, list[int]]:
        """``create``'s row and its (1 to ``_FAST_ROWS``) history rows on the driver:
        (whether the row was new, the history ids)."""
        raise NotImplementedError

    def _checkpoint_alone(
        self,
        record: WorkflowRecord,
        params: dict[str, Any],
        history: Sequence[HistoryEntry],
        waits: Sequence[WaitInfo] | None = None,
    ) -> list[int]:
        """A checkpoint with at most ``_FAST_ROWS`` history rows, on the driver: the hot
        path (``waits``: replace the workflow's waits with these, in the same transaction).
        Returns the history ids; raises as ``_lost`` if the compare-and-set fails."""
        raise NotImplementedError

    def _wait_statements(self, workflow_id: str, new: Sequence[WaitInfo]) -> list[tuple[str, Any]]:
        """The driver statements that make ``new`` the workflow's waits: delete its rows, then
        insert each (a replace; the checkpoint's compare-and-set ran first, under the lease)."""
        drop, ins = self._drop_all_waits, self._insert_wait
        return [(drop.sql, drop.parameters({"k_id": workflow_id}))] + [
            (ins.sql, ins.parameters(wait_values(x, position=i))) for i, x in enumerate(new)
        ]

    def _update_with_history(
        self, conn: Connection, params: dict[str, Any], entries: list[dict[str, Any]]
    ) -> tuple[int, list[int]]:
        """The checkpoint's UPDATE and (at most ``_FAST_ROWS``) history INSERTs on ``conn``,
        on the driver's cursor: (rows updated, history ids)."""
        update_stmt = self._statements.compiled(_checkpoint(params), tuple(params))
        cursors = run_all(
            conn,
            [(update_stmt.sql, update_stmt.parameters(params))]
            + [(self._fast_entry.sql, self._fast_entry.parameters(e)) for e in entries],
        )
        return cursors[0].rowcount, [int(cur.fetchone()[0]) for cur in cursors[1:]]

    def _due_workflows(self, stmt: Select[Any]) -> list[str]:
        """Run ``due_workflows``' query."""
        with self._read("due_workflows") as conn:
            return list(conn.execute(stmt).scalars())

    def _write_returning(
        self, what: str, workflow_id: str | None, query: DriverQuery, params: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """A write that is one statement returning rows (``acquire``), on the driver."""
        with self._alone(what, workflow_id) as conn:
            (cur,) = run_all(conn, [(query.sql, query.parameters(params))])
            return query.rows(cur)

    def _query(self, stmt: Any) -> DriverQuery:
        """``stmt`` (one of ``queries``, with rows to return) compiled once for the driver."""
        found = self._queries.get(id(stmt))
        if found is None:
            found = self._queries[id(stmt)] = DriverQuery(stmt, self.engine.dialect)
        return found

    # -- transactions -----------------------------------------------------------------------

    @contextmanager
    def _write(self, what: str, workflow_id: str | None = None) -> Iterator[Connection]:
        """One short write transaction; database errors become ``StoreError``."""
        try:
            with self._writer.begin() as conn:
                yield conn
        except SQLAlchemyError as e:
            raise store_error(what, workflow_id, e) from e

    @contextmanager
    def _alone(self, what: str, workflow_id: str | None = None) -> Iterator[Connection]:
        """A write that is one statement: on PostgreSQL it runs in autocommit, atomic by
        itself, in one round trip (no COMMIT after it); elsewhere in a write transaction."""
        with self._write(what, workflow_id) as conn:
            yield conn

    @contextmanager
    def _read(self, what: str, workflow_id: str | None = None) -> Iterator[Connection]:
        """One short read; database errors become ``StoreError``."""
        try:
            conn = getattr(self._held, "conn", None)
            if conn is not None and not conn.invalidated:  # a session's (see ``held``)
                yield conn
                return
            with self._reader.connect() as conn:
                yield conn
        except SQLAlchemyError as e:
            raise store_error(what, workflow_id, e) from e

    @contextmanager
    def held(self) -> Iterator[None]:
        """Within the block, this thread's autocommit statements share one pooled connection
        (PostgreSQL: see ``PostgresStore.held``). Elsewhere a no-op."""
        yield

    # -- Store protocol -----------------------------------------------------------------------

    def create(self, record: WorkflowRecord, history: Sequence[HistoryEntry]) -> bool:
        row = {"id": record.id, "version": record.version, "lease_owner": record.lease_owner}
        row.update(lease_until=record.lease_until, **workflow_values(record))
        if 0 < len(history) <= _FAST_ROWS:  # the common case: on the driver (``fast``)
            try:
                written, seqs = self._create_small(row, [history_values(e) for e in history])
            except SQLAlchemyError as e:
                raise store_error("create", record.id, e) from e
            if not written:
                return False
        else:  # no history, or a batch too large for one statement
            try:
                with self._write("create", record.id) as conn:
                    if conn.execute(self._create, row).first() is None:
                        return False
                    seqs = self._insert_history(conn, history)
            except StoreError as e:
                if isinstance(e.__cause__, IntegrityError) and self._exists(record.id):
                    return False
                raise
        set_seqs(history, seqs)
        return True

    def load(self, workflow_id: str) -> WorkflowRecord:
        with self._read("load", workflow_id) as conn:
            row = conn.execute(q.SELECT, {"k_id": workflow_id}).first()
        if row is None:
            raise WorkflowNotFound(workflow_id)
        return record_of(row)

    def load_waits(self, workflow_id: str) -> list[WaitInfo]:
        query = self._query(q.LOAD_WAITS)
        with self._read("load_waits", workflow_id) as conn:  # on the driver: a session's read
            (cur,) = run_all(conn, [(query.sql, query.parameters({"k_id": workflow_id}))])
            rows = query.rows(cur)
            if not rows:
                self._must_exist(conn, workflow_id)
        return [wait_of(r) for r in rows]

    def acquire(
        self, workflow_id: str, owner: str, *, now: datetime, until: datetime, due: bool = False
    ) -> WorkflowRecord:
        params = {"k_id": workflow_id, "k_owner": owner, "k_now": now, "k_until": until}
        if self._db_clock:  # expired by the database's clock; as long from its now
            params["k_lease"] = until - now
            stmt = q.DB_ACQUIRE_DUE_RETURNING if due else q.DB_ACQUIRE_RETURNING
        else:
            stmt = q.ACQUIRE_DUE_RETURNING if due else q.ACQUIRE_RETURNING
        rows = self._write_returning("acquire", workflow_id, self._query(stmt), params)
        if rows:
            return record_of(rows[0])
        if not due:
            with self._read("acquire", workflow_id) as conn:
                holder = conn.execute(q.HOLDER, params).first()
        if due:  # a poller's race lost, most likely: no second query to say which
            raise WorkflowNotDue(
                f"workflow {workflow_id!r} is not due, or leased by another process",
                workflow_id=workflow_id,
            )
        if holder is None:
            raise WorkflowNotFound(workflow_id)
        until_text = holder.lease_until.isoformat() if holder.lease_until else "?"
        raise WorkflowBusy(
            f"workflow {workflow_id!r} is leased by {holder.lease_owner!r} until {until_text}",
            workflow_id=workflow_id,
            owner=holder.lease_owner,
        )

    def renew(
        self, workflow_id: str, owner: str, *, until: datetime, now: datetime | None = None
    ) -> None:
        params = {"k_id": workflow_id, "k_owner": owner, "k_until": until}
        stmt = q.RENEW
        if self._db_clock and now is not None:  # as long, from the database's now
            params["k_lease"], stmt = until - now, q.DB_RENEW
        with self._write("renew", workflow_id) as conn:
            if conn.execute(stmt, params).rowcount == 1:
                return
            holder = conn.execute(q.HOLDER, params).first()
        if holder is None:
            raise WorkflowNotFound(workflow_id)
        raise LeaseLost(
            f"lease of workflow {workflow_id!r} was lost",
            workflow_id=workflow_id,
            owner=holder.lease_owner,
        )

    def release(self, workflow_id: str, owner: str) -> None:
        with self._alone("release", workflow_id) as conn:
            conn.execute(q.RELEASE, {"k_id": workflow_id, "k_owner": owner})

    def checkpoint(
        self,
        record: WorkflowRecord,
        *,
        owner: str,
        waits: Sequence[WaitInfo] | None,
        history: Sequence[HistoryEntry],
        release: bool = False,
    ) -> None:
        params = workflow_values(record)
        # The type and creation time never change: leaving them out of the SET spares the
        # indexes that hold them a rewrite on every checkpoint.
        del params["type"], params["created_at"]
        # Unchanged seldom-changing columns are left out: fewer values to send, and SQLite
        # rewrites the index entries of every assigned column, even to the same value.
        written = {k: params[k] for k in SELDOM_CHANGED}
        if record.written is not None:
            for k in SELDOM_CHANGED:
                if k in record.written and _same(record.written[k], params[k]):
                    del params[k]
        if release:  # the session's last checkpoint gives the lease up in the same write
            params["lease_owner"] = params["lease_until"] = None
        elif record.lease_until is not None and self._db_clock:  # from the database's now
            params["k_lease"] = record.lease_until - record.updated_at  # (``DB_CHECKPOINT``)
        elif record.lease_until is not None:  # the checkpoint extends the writer's lease
            params["lease_until"] = record.lease_until
        params.update(k_id=record.id, k_version=record.version, k_owner=owner)
        # The common checkpoint (a step: one or a few history lines, waits changed or not) is
        # the dialect's hot path, its statements on the driver's cursor; a large batch
        # (thousands of goroutines starting at once) goes through SQLAlchemy's executemany,
        # which also keeps under PostgreSQL's parameter limit.
        if len(history) <= _FAST_ROWS:
            seqs = self._checkpoint_alone(record, params, history, waits)
        else:
            with self._write("checkpoint", record.id) as conn:
                if len(history) <= _FAST_ROWS:
                    entries = [history_values(e) for e in history]
                    updated, seqs = self._update_with_history(conn, params, entries)
                else:
                    updated = conn.execute(_checkpoint(params), params).rowcount
                    seqs = self._insert_history(conn, history)
                if updated != 1:
                    self._lost(conn, record, params)
                if waits is not None:
                    self._replace_waits(conn, record.id, waits)
        record.version += 1
        record.written = written
        set_seqs(history, seqs)

    def _lost(self, conn: Connection, record: WorkflowRecord, params: dict[str, Any]) -> None:
        """Raise why a checkpoint's compare-and-set matched no row."""
        stored = conn.execute(q.HOLDER, params).first()
        if stored is None:
            raise WorkflowNotFound(record.id)
        raise LeaseLost(
            f"workflow {record.id!r} was taken over by {stored.lease_owner!r} "
            f"(version {stored.version}, expected {record.version})",
            workflow_id=record.id,
            owner=stored.lease_owner,
        )

    def update_wait(self, wait: WaitInfo, *, owner: str) -> None:
        params = wait_values(wait)
        for key in ("id", "workflow_id", "position"):
            del params[key]
        params.update(k_id=wait.id, k_workflow=wait.workflow_id, k_owner=owner)
        stmt = q.UPDATE_OPEN_WAIT if wait.status.open else q.UPDATE_WAIT
        with self._write("update_wait", wait.workflow_id) as conn:
            if conn.execute(stmt, params).rowcount != 1:
                self._must_hold(conn, wait.workflow_id, owner)

    def delete_wait(self, wait_id: str, *, workflow_id: str, owner: str) -> None:
        params = {"k_id": wait_id, "k_workflow": workflow_id, "k_owner": owner}
        with self._write("delete_wait", workflow_id) as conn:
            if conn.execute(q.DELETE_WAIT, params).rowcount != 1:
                self._must_hold(conn, workflow_id, owner)

    def append_history(self, entries: Sequence[HistoryEntry], *, owner: str) -> None:
        if not entries:
            return
        seqs: list[int] = []
        with self._write("append_history", entries[0].workflow_id) as conn:
            for e in entries:
                params = history_values(e)
                params["k_owner"] = owner
                row = conn.execute(q.INSERT_LEASED_ENTRY, params).first()
                if row is None:  # it raises; the rows written so far roll back with it
                    self._must_hold(conn, e.workflow_id, owner)
                    raise StoreError("no history row written", workflow_id=e.workflow_id)
                seqs.append(int(row[0]))
        set_seqs(entries, seqs)

    def _must_hold(self, conn: Connection, workflow_id: str, owner: str) -> None:
        """Raise unless ``owner`` holds the workflow's lease: ``WorkflowNotFound`` or
        ``LeaseLost``. Asked when a lease-guarded write matched no row (a gone or closed wait,
        or a lost lease), or before a write that cannot carry the check itself."""
        holder = conn.execute(q.LEASE_OWNER, {"k_workflow": workflow_id}).first()
        if holder is None:
            raise WorkflowNotFound(workflow_id)
        if holder.lease_owner != owner:
            raise LeaseLost(
                f"lease of workflow {workflow_id!r} was lost to {holder.lease_owner!r}; "
                "nothing was written",
                workflow_id=workflow_id,
                owner=holder.lease_owner,
            )

    def list_workflows(
        self,
        *,
        status: WorkflowStatus | None = None,
        type: str | None = None,
        search: str | None = None,
        limit: int = 100,
        offset: int = 0,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        updated_after: datetime | None = None,
        updated_before: datetime | None = None,
        sort: WorkflowSort = WorkflowSort.CREATED,
        ascending: bool = False,
        after: tuple[datetime, str] | None = None,
    ) -> list[WorkflowRecord]:
        check_listing((created_after, created_before, updated_after, updated_before), after)
        w = workflows.c
        stmt = select(workflows)
        if status is not None:
            stmt = stmt.where(w.status == WorkflowStatus(status).value)
        if type is not None:
            stmt = stmt.where(w.type == type)
        if search:
            stmt = stmt.where(self._contains(w.id, search))
        for column, low, high in (
            (w.created_at, created_after, created_before),
            (w.updated_at, updated_after, updated_before),
        ):
            if low is not None:
                stmt = stmt.where(column >= low)
            if high is not None:
                stmt = stmt.where(column < high)
        time = w[WorkflowSort(sort).value]
        if after is not None:
            # A row value: one index range on (time, id), however deep the page.
            key = tuple_(time, w.id)
            cursor = tuple_(literal(after[0], UTCDateTime()), literal(after[1], w.id.type))
            stmt = stmt.where(key > cursor if ascending else key < cursor)
        order = (time.asc(), w.id.asc()) if ascending else (time.desc(), w.id.desc())
        stmt = stmt.order_by(*order).limit(limit)
        if offset:
            stmt = stmt.offset(offset)
        with self._read("list_workflows") as conn:
            rows = conn.execute(stmt).all()
        return [record_of(r) for r in rows]

    def count_workflows(self, *, type: str | None = None) -> dict[WorkflowStatus, int]:
        w = workflows.c
        stmt = select(w.status, func.count()).group_by(w.status)
        if type is not None:
            stmt = stmt.where(w.type == type)
        with self._read("count_workflows") as conn:
            rows = conn.execute(stmt).all()
        counts = dict.fromkeys(WorkflowStatus, 0)
        for status, n in rows:
            counts[WorkflowStatus(status)] = int(n)
        return counts

    def count_by_type(self) -> dict[str, dict[WorkflowStatus, int]]:
        w = workflows.c
        stmt = select(w.type, w.status, func.count()).group_by(w.type, w.status)
        with self._read("count_by_type") as conn:
            rows = conn.execute(stmt).all()
        counts: dict[str, dict[WorkflowStatus, int]] = {}
        for type_, status, n in rows:
            by_status = counts.setdefault(type_, dict.fromkeys(WorkflowStatus, 0))
            by_status[WorkflowStatus(status)] = int(n)
        return counts

    def list_waits(
        self, *, workflow_id: str | None = None, type: str | None = None, limit: int | None = None
    ) -> list[WaitInfo]:
        c = waits.c
        stmt = select(waits).where(c.status.in_(q.OPEN))
        if workflow_id is not None:
            stmt = stmt.where(c.workflow_id == workflow_id)
        if type is not None:
            stmt = stmt.where(c.type == type)
        stmt = stmt.order_by(c.created_at.desc(), c.id.desc()).limit(limit)
        with self._read("list_waits", workflow_id) as conn:
            rows = conn.execute(stmt).all()
        return [wait_of(r) for r in rows]

    def inbox(self, query: InboxQuery) -> InboxPage:
        c, w = waits.c, workflows.c
        where: list[ColumnElement[bool]] = [c.status.in_(q.OPEN)]
        for column, value in (
            (c.type, query.type),
            (c.event, query.event),
            (c.workflow_id, query.workflow_id),
            (c.wait, query.wait),
            (w.type, query.workflow_type),
        ):
            if value is not None:
                where.append(column == value)
        if query.created_before is not None:
            where.append(c.created_at < query.created_before)
        if query.actor is not None:  # as ``engine._records.refusal`` decides, in SQL
            me = name_token(query.actor)
            mine = [c.deciders == "*", c.deciders.contains(me, autoescape=True)]
            mine += [
                c.deciders.contains(name_token(ROLE_PREFIX + r), autoescape=True)
                for r in query.roles
            ]
            not_excluded = or_(c.excluded.is_(None), ~c.excluded.contains(me, autoescape=True))
            where += [c.deciders.is_not(None), or_(*mine), not_excluded]
        key = (c.created_at, c.workflow_id, c.thread_id, c.pc)
        joined = query.workflow_type is not None  # the workflows table only when filtered
        cards = select(*key).select_from(
            waits.join(workflows, w.id == c.workflow_id) if joined else waits
        )
        cards = cards.where(*where).group_by(*key)
        count = select(func.count()).select_from(cards.subquery())
        page = cards.order_by(*key).limit(query.limit + 1)
        if query.after is not None:
            after = [literal(v, type_=k.type) for v, k in zip(query.after, key, strict=True)]
            page = page.where(tuple_(*key) > tuple_(*after))
        with self._read("inbox", query.workflow_id) as conn:
            total = int(conn.execute(count).scalar_one())
            keys = [tuple(r) for r in conn.execute(page).all()]
            more, keys = len(keys) > query.limit, keys[: query.limit]
            wanted = {(k[1], k[2], k[3]) for k in keys}
            events = (
                select(waits, w.type.label("workflow_type"))
                .join(workflows, w.id == c.workflow_id)
                .where(c.status.in_(q.OPEN), c.workflow_id.in_({k[1] for k in keys}))
                .order_by(c.workflow_id, c.position, c.id)
            )
            rows = conn.execute(events).all() if keys else []
        types = {r.workflow_id: r.workflow_type for r in rows}
        found = [wait_of(r) for r in rows if (r.workflow_id, r.thread_id, r.pc) in wanted]
        return InboxPage(group_decisions(found, types), total, more)

    def history(self, workflow_id: str) -> list[HistoryEntry]:
        with self._read("history", workflow_id) as conn:
            self._must_exist(conn, workflow_id)
            rows = conn.execute(q.HISTORY, {"k_id": workflow_id}).all()
        return [
            HistoryEntry(
                r.workflow_id,
                r.at,
                r.kind,
                r.thread,
                r.statement,
                r.actor,
                r.pc,
                dict(r.detail),
                r.id,
            )
            for r in rows
        ]

    def due_workflows(self, now: datetime, limit: int | None = None) -> list[str]:
        w = workflows.c
        expired = q.DB_NOW if self._db_clock else now  # a lease past it is free
        stmt = (
            select(w.id)
            .where(
                w.status == WorkflowStatus.RUNNING.value,
                w.next_run_at <= now,
                or_(w.lease_owner.is_(None), w.lease_until <= expired),
            )
            .order_by(w.next_run_at, w.id)
            .limit(limit)
        )
        return self._due_workflows(stmt)

    def claim_due(
        self, now: datetime, owner: str, *, until: datetime, limit: int
    ) -> list[WorkflowRecord]:
        params = {"k_owner": owner, "k_now": now, "k_until": until, "k_limit": limit}
        stmt = q.CLAIM_DUE
        if self._db_clock:  # expired by the database's clock; as long from its now
            params["k_lease"], stmt = until - now, q.DB_CLAIM_DUE
        rows = self._write_returning("claim_due", None, self._query(stmt), params)
        claimed = [record_of(r) for r in rows]
        claimed.sort(key=lambda r: (r.next_run_at, r.id))  # RETURNING keeps no order
        return claimed

    def due_waits(self, now: datetime, limit: int | None = None) -> list[WaitInfo]:
        c = waits.c
        stmt = (
            select(waits)
            .where(or_((c.status.in_(q.OPEN)) & (c.due_at <= now), c.retry_at <= now))
            .order_by(func.coalesce(c.due_at, c.retry_at), c.id)
            .limit(limit)
        )
        with self._read("due_waits") as conn:
            rows = conn.execute(stmt).all()
        return [wait_of(r) for r in rows]

    def prune(
        self,
        *,
        finished_before: datetime,
        now: datetime,
        statuses: Sequence[WorkflowStatus],
        types: Sequence[str] | None = None,
        batch: int = 1000,
        dry_run: bool = False,
    ) -> PruneResult:
        check_prune(finished_before, statuses, batch)
        return retention.prune(self._write, self._read, self.prune_rules,
                               finished_before=finished_before,
                               now=q.DB_NOW if self._db_clock else now,  # whose clock: acquire's
                               statuses=statuses,
                               types=types, batch=batch, dry_run=dry_run)  # fmt: skip

    # -- helpers ------------------------------------------------------------------------------

    # -- SignInLog ----------------------------------------------------------------------------

    def add_sign_in_failure(self, name: str, *, at: datetime, forget_before: datetime) -> None:
        f = sign_in_failures.c
        with self._write("add_sign_in_failure") as conn:
            conn.execute(delete(sign_in_failures).where(f.name == name, f.at < forget_before))
            conn.execute(insert(sign_in_failures).values(name=name, at=at))

    def sign_in_failures(self, name: str, *, since: datetime) -> list[datetime]:
        f = sign_in_failures.c
        stmt = select(f.at).where(f.name == name, f.at >= since).order_by(f.at, f.id)
        with self._read("sign_in_failures") as conn:
            return list(conn.execute(stmt).scalars())

    def clear_sign_in_failures(self, name: str) -> None:
        with self._alone("clear_sign_in_failures") as conn:
            conn.execute(delete(sign_in_failures).where(sign_in_failures.c.name == name))

    def revoke_session(self, session_id: str, *, expires_at: datetime, now: datetime) -> None:
        r = revoked_sessions.c
        ins = self._insert(revoked_sessions).values(id=session_id, expires_at=expires_at)
        with self._write("revoke_session") as conn:
            conn.execute(delete(revoked_sessions).where(r.expires_at < now))
            conn.execute(ins.on_conflict_do_nothing(index_elements=[r.id]))

    def session_revoked(self, session_id: str) -> bool:
        stmt = select(revoked_sessions.c.id).where(revoked_sessions.c.id == session_id)
        with self._read("session_revoked") as conn:
            return conn.execute(stmt).first() is not None

    def _exists(self, workflow_id: str) -> bool:
        with self._read("create", workflow_id) as conn:
            return conn.execute(q.EXISTS, {"k_id": workflow_id}).first() is not None

    def _must_exist(self, conn: Connection, workflow_id: str) -> None:
        if conn.execute(q.EXISTS, {"k_id": workflow_id}).first() is None:
            raise WorkflowNotFound(workflow_id)

    def _replace_waits(self, conn: Connection, workflow_id: str, new: Sequence[WaitInfo]) -> None:
        keep = [x.id for x in new]
        conn.execute(q.DROP_WAITS, {"k_id": workflow_id, "k_keep": keep})
        if not new:
            return
        rows = [wait_values(x, position=i) for i, x in enumerate(new)]
        conn.execute(self._upsert_waits, rows)

    def _insert_history(self, conn: Connection, entries: Sequence[HistoryEntry]) -> list[int]:
        if not entries:
            return []
        rows = [history_values(e) for e in entries]
        if len(rows) == 1:  # the common case, and the cheapest
            return [int(conn.execute(q.INSERT_ENTRY, rows[0]).scalar_one())]
        return [int(x) for x in conn.execute(q.INSERT_HISTORY, rows).scalars()]


class SQLiteStore(SQLModelStore):
    """``SQLModelStore`` on SQLite: one file, the caller's clock, transactions on the driver.

    Every write is a ``BEGIN IMMEDIATE`` transaction; the hot ones (``create`` with a few
    history rows, a checkpoint that changes no wait) begin and commit on the driver itself
    (``engine.store.fast.driver_transaction``).
    """

    dialect = "sqlite"
    prune_rules = retention.SQLITE

    def _insert(self, table: Any) -> sqlite.Insert:
        return sqlite.insert(table)

    def _contains(self, column: Any, needle: str) -> ColumnElement[bool]:
        # instr, not LIKE: SQLite's LIKE ignores ASCII case.
        return func.instr(column, needle) > 0

    def _write_returning(
        self, what: str, workflow_id: str | None, query: DriverQuery, params: dict[str, Any]
    ) -> list[dict[str, Any]]:
        try:
            with driver_transaction(self._writer) as tx:
                (cur,) = run_all(tx.conn, [(query.sql, query.parameters(params))])
                return query.rows(cur)
        except SQLAlchemyError as e:
            raise store_error(what, workflow_id, e) from e

    def _create_small(
        self, row: dict[str, Any], entries: list[dict[str, Any]]
    ) -> tuple[bool, list[int]]:
        first = self._statements.compiled(self._create_alone, tuple(row))
        return insert_on_driver(self._writer, first, row, self._fast_entry, entries)

    def _checkpoint_alone(
        self,
        record: WorkflowRecord,
        params: dict[str, Any],
        history: Sequence[HistoryEntry],
        waits: Sequence[WaitInfo] | None = None,
    ) -> list[int]:
        entries = [history_values(e) for e in history]
        try:
            with driver_transaction(self._writer) as tx:
                updated, seqs = self._update_with_history(tx.conn, params, entries)
                if updated != 1:
                    tx.rollback()
                elif waits is not None:
                    run_all(tx.conn, self._wait_statements(record.id, waits))
        except SQLAlchemyError as e:
            raise store_error("checkpoint", record.id, e) from e
        if updated != 1:
            with self._read("checkpoint", record.id) as conn:
                self._lost(conn, record, params)
        return seqs


class PostgresStore(SQLModelStore):
    """``SQLModelStore`` on PostgreSQL (psycopg 3): the database's clock, one-statement writes.

    Reads, and writes that are one statement (``acquire``, ``release``, ``create`` and a
    checkpoint that changes no wait, each with its history rows in the same statement,
    ``engine.store.fast.WithHistory``), go through a second pool in autocommit: one round
    trip each, no BEGIN or COMMIT. ``due_workflows`` skips rows locked by other workers.
    """

    dialect = "postgresql"
    prune_rules = retention.POSTGRESQL
    default_lease_clock = "database"

    def _read_engine(self, url: str | URL, engine_kwargs: dict[str, Any] | None) -> Engine:
        # One round trip instead of BEGIN, SELECT, ROLLBACK. Nothing is lost: at READ
        # COMMITTED every statement takes its own snapshot anyway. (So a store holds up to
        # twice the pool's connections.)
        return create_store_engine(
            url, engine_kwargs={**(engine_kwargs or {}), "isolation_level": "AUTOCOMMIT"}
        )

    @contextmanager
    def _alone(self, what: str, workflow_id: str | None = None) -> Iterator[Connection]:
        with self._read(what, workflow_id) as conn:  # autocommit: the statement commits
            yield conn

    @contextmanager
    def held(self) -> Iterator[None]:
        """Within the block, this thread's autocommit statements (PostgreSQL: reads, acquire,
        release, create, most checkpoints) share one pooled connection, so a checkpoint costs
        no pool checkout. No transaction stays open while a step runs. Only a connection the
        pool can spare is held (no overflow one); a broken one is let go.
        """
        pool = self._reader.pool
        if (
            getattr(self._held, "conn", None) is not None  # held already (a nested session)
            or (isinstance(pool, QueuePool) and pool.checkedout() >= pool.size())  # none spare
        ):
            yield
            return
        try:
            conn = self._reader.connect()
        except SQLAlchemyError as e:
            raise store_error("connect", None, e) from e
        self._held.conn = conn
        try:
            yield
        finally:
            self._held.conn = None
            conn.close()

    def _insert(self, table: Any) -> postgresql.Insert:
        return postgresql.insert(table)

    def _contains(self, column: Any, needle: str) -> ColumnElement[bool]:
        return func.strpos(column, needle) > 0

    def _create_small(
        self, row: dict[str, Any], entries: list[dict[str, Any]]
    ) -> tuple[bool, list[int]]:
        # The row and its history in one statement, in autocommit: one round trip.
        both = self._statements.with_history(self._create_alone, tuple(row), len(entries))
        with self._alone("create", row["id"]) as conn:
            written, seqs = both.run(conn, row, entries)
        return written == 1, seqs

    def _checkpoint_alone(
        self,
        record: WorkflowRecord,
        params: dict[str, Any],
        history: Sequence[HistoryEntry],
        waits: Sequence[WaitInfo] | None = None,
    ) -> list[int]:
        if waits is not None:  # several statements: one transaction
            with self._write("checkpoint", record.id) as conn:
                updated, seqs = self._update_with_history(
                    conn, params, [history_values(e) for e in history]
                )
                if updated != 1:
                    self._lost(conn, record, params)
                run_all(conn, self._wait_statements(record.id, waits))
            return seqs
        # The workflow row and its history in one statement, in autocommit: atomic by
        # itself, one round trip for the whole checkpoint.
        with self._alone("checkpoint", record.id) as conn:
            updated, seqs = self._update_with_history(
                conn, params, [history_values(e) for e in history]
            )
            if updated != 1:
                self._lost(conn, record, params)
        return seqs

    def _update_with_history(
        self, conn: Connection, params: dict[str, Any], entries: list[dict[str, Any]]
    ) -> tuple[int, list[int]]:
        if not entries:
            return super()._update_with_history(conn, params, entries)
        both = self._statements.with_history(_checkpoint(params), tuple(params), len(entries))
        return both.run(conn, params, entries)

    def _due_workflows(self, stmt: Select[Any]) -> list[str]:
        # Skip rows another worker is acquiring or checkpointing this instant.
        with self._write("due_workflows") as conn:
            return list(conn.execute(stmt.with_for_update(skip_locked=True)).scalars())


_DIALECTS: dict[str, type[SQLModelStore]] = {"sqlite": SQLiteStore, "postgresql": PostgresStore}


def _checkpoint(params: dict[str, Any]) -> Any:
    """The checkpoint's UPDATE for ``params``: with ``k_lease``, the one that extends the
    lease from the database's now."""
    return q.DB_CHECKPOINT if "k_lease" in params else q.CHECKPOINT


def _same(a: Any, b: Any) -> bool:
    """Equal scalars of one type (so 1 and True differ); JSON containers always count as new."""
    return type(a) is type(b) and not isinstance(a, (list, dict)) and a == b


__all__ = [
    "MIGRATIONS",
    "PostgresStore",
    "SQLModelStore",
    "SQLiteStore",
    "alembic_config",
    "create_store_engine",
    "database_url",
    "upgrade",
]
