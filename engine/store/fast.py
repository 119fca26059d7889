"""The checkpoint's hot path: Core statements compiled once, run on the driver's cursor.

A checkpoint runs after every step, so its cost is the engine's durable per-step cost. Going
through SQLAlchemy's ``Connection.execute`` costs more than the database's own work for these
small statements (cache lookup, parameter processing, events: about 50 µs per statement on
SQLite). Here each statement is compiled by SQLAlchemy once per store, for its dialect; a call
only converts the values with the same bind processors SQLAlchemy would use, and hands the
SQL and the values to the DBAPI cursor. The SQL text is SQLAlchemy's own: every value is a
bound parameter, never spliced into the text.

The transaction stays SQLAlchemy's (``engine.begin()``): the ``BEGIN IMMEDIATE`` of SQLite,
the pool, commit and rollback, and error translation are unchanged. (psycopg's pipeline
mode was tried for PostgreSQL: for two statements it cost more than it saved.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, exists, func, insert, select, union_all
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import Insert, Update, UpdateBase

from engine.store.tables import history, workflows


class DriverStatement:
    """A Core statement compiled for ``dialect``, to run on a DBAPI cursor.

    Args:
        stmt: the statement; its bound parameters name the values a call must give.
        dialect: the dialect to compile for.
        column_keys: for INSERT and UPDATE, the columns the values set.
    """

    def __init__(
        self, stmt: ClauseElement, dialect: Dialect, column_keys: Sequence[str] | None = None
    ) -> None:
        compiled = stmt.compile(dialect=dialect, column_keys=list(column_keys or ()))
        assert isinstance(compiled, SQLCompiler)  # a DML or SELECT statement compiles so
        self.compiled = compiled
        self.sql: str = compiled.string
        order = compiled.positiontup
        self.positional = order is not None
        self.names: list[str] = list(order) if order is not None else list(compiled.binds)
        self.fixed: dict[str, Any] = {}  # literal values compiled into the statement (x + 1)
        self.processors: dict[str, Callable[[Any], Any]] = {}
        for name, bind in compiled.binds.items():
            if bind.value is not None and not bind.callable:
                self.fixed[name] = bind.value
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                self.processors[name] = processor

    def parameters(self, values: dict[str, Any]) -> Any:
        """The DBAPI parameters for ``values``: a tuple (positional styles) or a dict."""
        fixed, procs = self.fixed, self.processors
        converted = []
        for name in self.names:
            value = values[name] if name in values else fixed[name]
            processor = procs.get(name)
            converted.append(value if processor is None else processor(value))
        if self.positional:
            return tuple(converted)
        return dict(zip(self.names, converted, strict=True))


class DriverQuery(DriverStatement):
    """A ``DriverStatement`` that returns rows (a SELECT, or DML with RETURNING): each row
    comes back as a dict by column name, its values converted by the result processors
    SQLAlchemy would use (JSON decoded, SQLite's datetimes parsed)."""

    def __init__(
        self, stmt: ClauseElement, dialect: Dialect, column_keys: Sequence[str] | None = None
    ) -> None:
        super().__init__(stmt, dialect, column_keys)
        entries = self.compiled._result_columns
        self.columns: list[str] = [e.keyname for e in entries]
        self.converters: list[tuple[int, Callable[[Any], Any]]] = []
        for i, e in enumerate(entries):
            processor = e.type.dialect_impl(dialect).result_processor(dialect, None)
            if processor is not None:
                self.converters.append((i, processor))

    def rows(self, cursor: Any) -> list[dict[str, Any]]:
        """The cursor's rows, converted, by column name."""
        out = []
        columns, converters = self.columns, self.converters
        for raw in cursor.fetchall():
            values = list(raw)
            for i, processor in converters:
                values[i] = processor(values[i])
            out.append(dict(zip(columns, values, strict=True)))
        return out


def run_all(conn: Connection, statements: Sequence[tuple[str, Any]]) -> list[Any]:
    """Run each ``(sql, parameters)`` in order, inside ``conn``'s transaction.

    Returns one cursor per statement: read ``rowcount`` or fetch ``RETURNING`` rows from them.
    """
    driver: Any = conn.connection.driver_connection
    dialect = conn.dialect
    # SQLAlchemy's cursor events still fire, so tracing and test hooks see these statements.
    before, after = conn.dispatch.before_cursor_execute, conn.dispatch.after_cursor_execute
    hooked = bool(before) or bool(after)  # calling an empty hook list still costs
    cursors: list[Any] = []
    sql = ""
    try:
        for sql, params in statements:
            cur = driver.cursor()
            if hooked:
                before(conn, cur, sql, params, None, False)
            cur.execute(sql, params)
            if hooked:
                after(conn, cur, sql, params, None, False)
            cursors.append(cur)
        return cursors
    except dialect.loaded_dbapi.Error as e:
        # As SQLAlchemy would: its own exception type, and a dead connection leaves the pool.
        if dialect.is_disconnect(e, driver, None):
            conn.invalidate(e)
        raise DBAPIError.instance(sql, None, e, dialect.loaded_dbapi.Error) from e


class DriverTransaction:
    """A write transaction begun and ended on the driver (see ``driver_transaction``)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.done = False

    def rollback(self) -> None:
        """Take back what the transaction wrote; the block goes on, and commits nothing."""
        if not self.done:
            self.done = True
            self.conn.dialect.do_rollback(self.conn.connection)


@contextmanager
def driver_transaction(engine: Engine) -> Iterator[DriverTransaction]:
    """SQLite: one write transaction without SQLAlchemy's transaction machinery.

    Beginning and committing through ``engine.begin()`` costs about 20 µs more than the
    database does for a checkpoint (events, transaction objects, the pool's bookkeeping).
    Here the connection still comes from the pool, ``BEGIN IMMEDIATE`` goes to the driver
    (as the store's ``begin`` event sends it), the statements run through ``run_all`` (whose
    cursor events fire), and the commit goes through the dialect's ``do_commit``, as
    SQLAlchemy's own would. Use only ``run_all`` inside: ``conn.execute`` would begin a
    second transaction. Database errors are raised as SQLAlchemy's ``DBAPIError``.
    """
    with engine.connect() as conn:
        driver: Any = conn.connection.driver_connection
        dbapi = conn.dialect.loaded_dbapi
        try:
            driver.execute("BEGIN IMMEDIATE")
        except dbapi.Error as e:  # e.g. "database is locked" after the busy timeout
            raise DBAPIError.instance("BEGIN IMMEDIATE", None, e, dbapi.Error) from e
        tx = DriverTransaction(conn)
        try:
            yield tx
        except BaseException:
            with suppress(dbapi.Error):  # a broken connection: the pool discards it
                tx.rollback()
            raise
        if not tx.done:
            tx.done = True
            try:
                conn.dialect.do_commit(conn.connection)
            except dbapi.Error as e:
                with suppress(dbapi.Error):
                    driver.execute("ROLLBACK")
                raise DBAPIError.instance("COMMIT", None, e, dbapi.Error) from e


def insert_on_driver(
    engine: Engine,
    first: DriverStatement,
    row: dict[str, Any],
    entry: DriverStatement,
    entries: Sequence[dict[str, Any]],
) -> tuple[bool, list[int]]:
    """SQLite: ``first`` (an INSERT ... ON CONFLICT DO NOTHING of ``row``) and, if it wrote
    the row, the history ``entries`` (``entry`` each), in one ``driver_transaction``:
    (whether the row was written, the history ids)."""
    with driver_transaction(engine) as tx:
        (cur,) = run_all(tx.conn, [(first.sql, first.parameters(row))])
        if cur.rowcount != 1:  # the id exists: nothing was written
            tx.rollback()
            return False, []
        cursors = run_all(tx.conn, [(entry.sql, entry.parameters(e)) for e in entries])
        return True, [int(c.fetchone()[0]) for c in cursors]


class WithHistory:
    """PostgreSQL: a write of a workflow row and its history INSERT as one statement.

    The write is a checkpoint's UPDATE or ``create``'s INSERT ... ON CONFLICT DO NOTHING. A
    data-modifying ``WITH`` (SQLAlchemy Core CTEs) runs both in one round trip; the history
    rows are written only if the write touched the row (the lease and version held; the id
    was new). The result is one row: how many workflow rows were written (0 or 1) and the
    new history ids, in order. Run in autocommit, the statement is a whole transaction by
    itself.

    Args:
        write: the UPDATE or INSERT of ``workflows``, without its SET / VALUES.
        keys: the names of the values a call gives: those named after a column of
            ``workflows`` are the columns it sets (SQLAlchemy's own rule), the others the
            write's bound parameters (``queries``).
        rows: how many history rows go with it (at least one).
        dialect: PostgreSQL's, to compile for.
    """

    def __init__(self, write: UpdateBase, keys: Sequence[str], rows: int, dialect: Dialect) -> None:
        columns = workflows.c
        sets = {k: bindparam(k, type_=columns[k].type) for k in keys if k in columns}
        assert isinstance(write, (Insert, Update))  # what the store hands it
        u = write.values(sets).returning(workflows.c.id).cte("u")
        entry = [c for c in history.c if c.name != "id"]
        self.columns = [c.name for c in entry]
        tuples = [
            select(*(bindparam(f"h{i}_{c.name}", type_=c.type).label(c.name) for c in entry))
            for i in range(rows)
        ]
        v = (tuples[0] if rows == 1 else union_all(*tuples)).subquery("v")
        h = (
            insert(history)
            .from_select(self.columns, select(v).where(exists(select(u.c.id))))
            .returning(history.c.id)
            .cte("h")
        )
        stmt = select(
            select(func.count()).select_from(u).scalar_subquery(),
            select(func.array_agg(aggregate_order_by(h.c.id, h.c.id))).scalar_subquery(),
        )
        self.statement = DriverStatement(stmt, dialect)
        if self.statement.positional:
            raise ValueError("WithHistory needs a named parameter style (psycopg)")
        self.sql = self.statement.sql

    def run(
        self, conn: Connection, values: dict[str, Any], entries: Sequence[dict[str, Any]]
    ) -> tuple[int, list[int]]:
        """Run it on ``conn``: (workflow rows written, history ids)."""
        params = dict(values)
        for i, row in enumerate(entries):
            for name in self.columns:
                params[f"h{i}_{name}"] = row[name]
        (cur,) = run_all(conn, [(self.sql, self.statement.parameters(params))])
        updated, ids = cur.fetchone()
        return int(updated), [int(x) for x in ids or ()]


class Statements:
    """The store's driver statements, each compiled once: per statement and set of parameter
    names (``compiled``), and per statement and number of history rows (``with_history``)."""

    def __init__(self, dialect: Dialect, entry: DriverStatement) -> None:
        self.dialect, self.entry = dialect, entry
        self._compiled: dict[tuple[int, tuple[str, ...]], DriverStatement] = {}
        self._combined: dict[tuple[int, tuple[str, ...], int], WithHistory] = {}

    def compiled(self, stmt: ClauseElement, keys: tuple[str, ...]) -> DriverStatement:
        """``stmt`` (an INSERT or UPDATE) for values named ``keys``: those named after a column
        of its table are the columns it sets, as in SQLAlchemy's ``execute``; the others its
        bound parameters."""
        found = self._compiled.get((id(stmt), keys))
        if found is None:
            table = stmt.table if isinstance(stmt, (Insert, Update)) else None
            columns = [k for k in keys if table is not None and k in table.c]
            found = DriverStatement(stmt, self.dialect, columns)
            self._compiled[(id(stmt), keys)] = found
        return found

    def with_history(self, write: UpdateBase, keys: tuple[str, ...], rows: int) -> WithHistory:
        """PostgreSQL: ``write`` (a checkpoint's UPDATE or create's INSERT) for values named
        ``keys``, and ``rows`` history rows, in one statement."""
        key = (id(write), keys, rows)
        found = self._combined.get(key)
        if found is None:
            found = self._combined[key] = WithHistory(write, keys, rows, self.dialect)
        return found
