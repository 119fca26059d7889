"""Shared helpers of the benchmarks: timing, peak memory, databases, the result table."""

from __future__ import annotations

import gc
import os
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

PG_URL = os.environ.get("GORCH_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


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
    """Peak bytes allocated by Python during one call of ``fn``."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@contextmanager
def pg_schema(base: str = PG_URL) -> Iterator[str | None]:
    """A URL on a fresh PostgreSQL schema (dropped afterwards), or None if unreachable."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    schema = f"gorch_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except SQLAlchemyError as e:
        print(f"(PostgreSQL rows skipped: {str(e).splitlines()[0]})")
        admin.dispose()
        yield None
        return
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def print_table(title: str, rows: list[dict[str, Any]]) -> None:
    """Print rows of ``bench``, ``ours``, ``floor``, ``unit``, ``ratio``, ``peak_kib``."""
    print(f"\n{title}")
    print(f"{'benchmark':52} {'ours':>12} {'floor':>12} {'ratio':>7} {'peak mem':>9}")
    for r in rows:
        unit = r.get("unit", "µs")
        floor = f"{r['floor']:9.1f}{unit}" if r.get("floor") is not None else f"{'-':>11}"
        ratio = f"{r['ratio']:6.2f}x" if r.get("ratio") is not None else f"{'-':>7}"
        peak = f"{r['peak_kib']:6.0f}KiB" if r.get("peak_kib") is not None else ""
        print(f"{r['bench']:52} {r['ours']:9.1f}{unit} {floor} {ratio} {peak}")
