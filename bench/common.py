"""Shared helpers of the benchmarks: the row format and its table, timing, peak memory,
databases and worker processes.

Every bench script's ``main(argv)`` returns a list of ``Row``; ``bench/run.py`` runs them all
and prints one table, and each script run on its own prints its own rows the same way.
"""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import tempfile
import threading
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

PG_URL = os.environ.get("GORCH_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
"""The PostgreSQL server of the PostgreSQL rows (each run works in a schema of its own)."""

IN_CI = os.environ.get("CI") == "true"
"""In CI an unreachable PostgreSQL is an error, not a skipped row."""


TIMES = "\N{MULTIPLICATION SIGN}"

# -- rows -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A target of the issue: ``limit`` on the row's ratio, or on its own figure (``on="ours"``,
    in the row's unit). ``at_least``: the figure must reach the limit (throughput)."""

    limit: float
    on: str = "ratio"  # "ratio" or "ours"
    at_least: bool = False
    note: str = ""  # printed after the limit, e.g. "(Go: 17 µs)"

    def met(self, row: Row) -> bool | None:
        value = row.ratio if self.on == "ratio" else row.ours
        if value is None:
            return None
        return value >= self.limit if self.at_least else value <= self.limit

    def text(self, unit: str) -> str:
        limit = f"{self.limit:g}" + (TIMES if self.on == "ratio" else f" {unit}")
        return f"{'≥' if self.at_least else '≤'} {limit}" + (f" {self.note}" if self.note else "")


@dataclass
class Row:
    """One line of the table: our figure, the floor measured in the same run, their ratio.

    ``ours`` and ``floor`` are in ``unit``; ``ratio`` defaults to ours / floor. ``peak`` is in
    bytes: the tracemalloc peak of one representative run (``peak_kind="py"``), or the
    largest maximum RSS of the worker processes (``"rss"``). A row that could not be measured
    has ``skipped`` set to the reason.
    """

    key: str  # stable id: what `run.py` checks were all printed
    bench: str
    ours: float | None = None
    unit: str = "µs"
    floor: float | None = None
    floor_what: str = ""
    ratio: float | None = None
    target: Target | None = None
    peak: float | None = None
    peak_kind: str = "py"
    issue: int | None = None  # the row's number in the issue's list (None: an extra row)
    skipped: str | None = None

    def __post_init__(self) -> None:
        if self.ratio is None and self.ours is not None and self.floor:
            self.ratio = self.ours / self.floor


def skipped(rows: Mapping[str, tuple[int | None, str]], reason: str, prefix: str = "") -> list[Row]:
    """A skipped row for every key of ``rows`` (key -> (issue row, label)) under ``prefix``."""
    return [
        Row(key, label, issue=issue, skipped=reason)
        for key, (issue, label) in rows.items()
        if key.startswith(prefix)
    ]


def number(value: float) -> str:
    """Three significant figures or so, with thousands separators."""
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def memory(row: Row) -> str:
    if row.peak is None:
        return "-"
    kib = row.peak / 1024
    text = f"{number(kib)} KiB" if kib < 10 * 1024 else f"{number(kib / 1024)} MiB"
    return text + (" RSS" if row.peak_kind == "rss" else "")


def cells(row: Row) -> list[str]:
    issue = str(row.issue) if row.issue is not None else "-"
    target = row.target.text(row.unit) if row.target else "-"
    if row.skipped is not None:
        return [issue, row.bench, "skipped", "-", "-", target, "-", "-"]
    ours = f"{number(row.ours)} {row.unit}" if row.ours is not None else "-"
    floor = "-"
    if row.floor is not None:
        floor = f"{number(row.floor)} {row.unit}"
        floor += f": {row.floor_what}" if row.floor_what else ""
    ratio = f"{row.ratio:.2f}{TIMES}" if row.ratio is not None else "-"
    met = {True: "yes", False: "NO", None: "-"}[row.target.met(row) if row.target else None]
    return [issue, row.bench, ours, floor, ratio, target, met, memory(row)]


HEADER = ["#", "benchmark", "ours", "floor (what it is)", "ratio", "target", "met?", "peak memory"]


def print_table(rows: Sequence[Row], title: str | None = None) -> None:
    """Print ``rows`` as a Markdown table (aligned for the terminal), then why rows skipped."""
    if title:
        print(f"\n{title}\n")
    table = [HEADER] + [cells(r) for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(HEADER))]
    right = {2, 4}  # figures

    def line(values: list[str]) -> str:
        return (
            "| "
            + " | ".join(
                v.rjust(w) if i in right else v.ljust(w)
                for i, (v, w) in enumerate(zip(values, widths, strict=True))
            )
            + " |"
        )

    print(line(HEADER))
    print("|" + "|".join(("-" * (w + 1) + ":") if i in right else "-" * (w + 2)
                         for i, w in enumerate(widths)) + "|")  # fmt: skip
    for values in table[1:]:
        print(line(values))
    reasons: dict[str, list[str]] = {}
    for r in rows:
        if r.skipped is not None:
            reasons.setdefault(r.skipped, []).append(r.bench)
    if reasons:
        print("\nSkipped:")
        for reason, benches in reasons.items():
            print(f"- {'; '.join(benches)}: {reason}")


# -- timing and memory ----------------------------------------------------------------------


def best_of(fn: Callable[[], Any], runs: int, batches: int = 3) -> float:
    """Seconds per call of ``fn``: the best of ``batches`` batches of ``runs`` calls."""
    fn()  # warm up
    best = float("inf")
    for _ in range(batches):
        gc.collect()
        t0 = time.perf_counter()
        for _ in range(runs):
            fn()
        best = min(best, (time.perf_counter() - t0) / runs)
    return best


def peak_memory(fn: Callable[[], Any]) -> int:
    """Peak bytes allocated by Python (every thread) during one call of ``fn``."""
    gc.collect()
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def rss_peak(pid: int) -> int | None:
    """The largest peak RSS (``VmHWM``) of process ``pid`` and its descendants, in bytes; None
    where there is no ``/proc`` (not Linux) or the process is gone.

    (``wait4``'s ``ru_maxrss`` cannot be used: on Linux a child inherits the high-water mark of
    the parent it was forked from, which here is the whole benchmark process.)
    """
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    peak, todo = None, [pid]
    while todo:
        p = todo.pop()
        todo += parents.get(p, [])
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                kib = int(line.split()[1])
                peak = max(peak or 0, kib * 1024)
    return peak


def stop_process(
    proc: subprocess.Popen[Any], *, group: bool = False, timeout: float = 30
) -> int | None:
    """Stop ``proc`` (SIGTERM, SIGKILL after ``timeout``) and reap it; return its peak RSS (and
    its children's, a Celery worker's pool say) in bytes, read just before. ``group``: signal
    its whole process group."""

    def send(sig: int) -> None:
        try:
            if group:
                os.killpg(proc.pid, sig)
            else:
                proc.send_signal(sig)
        except ProcessLookupError:
            pass

    peak = rss_peak(proc.pid) if proc.poll() is None else None
    send(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        proc.wait()
    return peak


def run_process(cmd: Sequence[str], input: bytes) -> tuple[bytes, int | None]:
    """Run ``cmd`` on ``input``; return its output and its peak RSS in bytes (sampled every
    millisecond from ``/proc`` while it runs, so a short last burst may be missed)."""
    with tempfile.TemporaryFile() as stdin:
        stdin.write(input)
        stdin.seek(0)
        proc = subprocess.Popen(cmd, stdin=stdin, stdout=subprocess.PIPE)
        out: list[bytes] = []
        assert proc.stdout is not None
        reader = threading.Thread(target=lambda: out.append(proc.stdout.read()))  # type: ignore[union-attr]
        reader.start()
        peak = None
        while proc.poll() is None:
            status = Path(f"/proc/{proc.pid}/status")
            try:
                for line in status.read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peak = max(peak or 0, int(line.split()[1]) * 1024)
            except OSError:
                pass
            time.sleep(0.001)
        reader.join()
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, cmd)
    return out[0] if out else b"", peak


# -- databases ------------------------------------------------------------------------------


@cache
def pg_unreachable(base: str = PG_URL) -> str | None:
    """Why PostgreSQL at ``base`` cannot be used (None: it can). An error in CI."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import SQLAlchemyError

    admin = create_engine(base, connect_args={"connect_timeout": 3})
    try:
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
        return None
    except SQLAlchemyError as e:
        reason = f"PostgreSQL unreachable at {admin.url!r}: {str(e).splitlines()[0]}"
        if IN_CI:
            raise RuntimeError(f"{reason} (CI=true: PostgreSQL must be up)") from e
        return reason
    finally:
        admin.dispose()


def pg_version(base: str = PG_URL) -> str:
    """The PostgreSQL server's version, or why there is none."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import SQLAlchemyError

    admin = create_engine(base, connect_args={"connect_timeout": 3})
    try:
        with admin.connect() as conn:
            return str(conn.execute(text("SHOW server_version")).scalar())
    except SQLAlchemyError as e:
        return f"unreachable ({str(e).splitlines()[0]})"
    finally:
        admin.dispose()


@contextmanager
def pg_schema(base: str = PG_URL) -> Iterator[str]:
    """A URL on a fresh PostgreSQL schema, dropped afterwards (check ``pg_unreachable`` first)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    schema = f"gorch_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
