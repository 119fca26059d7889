"""Every benchmark of gorch in one command, printed as one table.

    .venv/bin/python bench/run.py [--quick] [--only NAME ...]

Each row gives our figure, a floor measured in the same run on the same machine (and what
that floor is), their ratio, the issue's target for it and whether it is met, and the peak
memory of one representative run. ``--quick`` is the smoke run CI makes (small sizes, few
runs, well under two minutes): its figures are noisy and nothing asserts them. The script
exits non-zero only if a bench crashed or a row is missing from the table.

PostgreSQL rows need ``GORCH_BENCH_PG_URL`` (default
``postgresql+psycopg://postgres@127.0.0.1:5432/test``): without it they are skipped with the
reason, except with ``CI=true``, where an unreachable PostgreSQL is an error. The Celery rows
run in the full run only (or with ``--only celery``) and need Redis at
``GORCH_BENCH_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``).
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import shlex
import sqlite3
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import IN_CI, PG_URL, Row, pg_version, print_table, skipped


@dataclass(frozen=True)
class Bench:
    name: str
    module: str
    what: str
    argv: tuple[str, ...] = ()
    full_only: bool = False  # run by --quick only when named with --only

    @property
    def prefix(self) -> str:
        return self.name + "."


BENCHES = [
    Bench("memory", "bench_memory", "rows 1-2: in-memory per step, the Go loop benchmark"),
    Bench("durable", "bench_durable", "row 3: durable per step, SQLite and PostgreSQL",
          ("--part", "steps")),
    Bench("workers", "bench_durable", "row 4: 1 vs 2 workers on PostgreSQL", ("--part", "workers")),
    Bench("growth", "bench_growth", "row 5: per step, 1,000 statements vs 20"),
    Bench("callback", "bench_callback", "row 6: on_callback to the next step, inline"),
    Bench("celery", "bench_celery", "row 6: the same through Celery (full run only)",
          full_only=True),
    Bench("ui", "bench_ui", "row 7: the UI's pages and queries over 100,000 workflows"),
    Bench("inbox", "bench_inbox", "extra: the inbox at 10,000 open waits (issue 16)"),
    Bench("graph", "bench_graph", "extra: drawing a 331-statement definition"),
    Bench("prune", "bench_prune", "extra: pruning 100,000 ended workflows vs raw DELETEs"),
    Bench("timeline", "bench_timeline", "extra: Engine.timeline of a 1,000-line history"),
    Bench("list", "bench_list", "issue 17: the workflows list at 1,000,000 workflows"),
]  # fmt: skip
NAMES = [b.name for b in BENCHES]


def _git(*args: str) -> str:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).parent, check=True)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip()


def _proc_field(path: str, field: str) -> str | None:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(field):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def machine() -> list[str]:
    """Where and when: the lines printed above the table."""
    cpu = _proc_field("/proc/cpuinfo", "model name") or platform.processor() or "unknown CPU"
    mem = _proc_field("/proc/meminfo", "MemTotal")
    ram = f", {int(mem.split()[0]) / 1024**2:.0f} GiB RAM" if mem else ""
    commit = _git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = " (with uncommitted changes)" if _git("status", "--porcelain") else ""
    cmd = shlex.join([".venv/bin/python", "bench/run.py", *sys.argv[1:]])
    return [
        f"date:       {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"command:    {cmd}",
        f"commit:     {commit}{dirty}",
        f"machine:    {os.cpu_count()} CPUs ({cpu}){ram}; {platform.system()} {platform.release()}",
        f"Python:     {platform.python_version()} ({platform.python_implementation()})",
        f"SQLite:     {sqlite3.sqlite_version} (WAL, synchronous=NORMAL)",
        f"PostgreSQL: {pg_version()} at {PG_URL.split('@')[-1]}",
    ]


def run_bench(bench: Bench, quick: bool, named: bool) -> tuple[list[Row], str | None]:
    """The bench's rows, and what went wrong (a crash, a row missing or unknown) if anything."""
    try:
        module = importlib.import_module(bench.module)
    except Exception as e:
        traceback.print_exc()
        return [], f"{bench.name}: cannot import {bench.module}: {type(e).__name__}: {e}"
    expected = {k: v for k, v in module.ROWS.items() if k.startswith(bench.prefix)}
    if bench.full_only and quick and not named:
        return skipped(expected, "full run only (or --only " + bench.name + ")"), None
    argv = [*bench.argv, *(["--quick"] if quick else [])]
    print(f"[{bench.name}] {bench.what} ...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    try:
        rows: list[Row] = module.main(argv)
    except Exception as e:
        traceback.print_exc()
        reason = f"CRASHED: {type(e).__name__}: {e}"
        return skipped(expected, reason), f"{bench.name}: {reason}"
    finally:
        print(f"[{bench.name}] {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    keys = [r.key for r in rows]
    missing = [k for k in expected if k not in keys]
    unknown = [k for k in keys if k not in expected or keys.count(k) > 1]
    if missing or unknown:
        return rows, f"{bench.name}: rows missing {missing}, unknown or repeated {unknown}"
    return rows, None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="the smoke run: small and fast")
    parser.add_argument("--only", nargs="+", choices=NAMES, metavar="NAME",
                        help="run only these: " + ", ".join(NAMES))  # fmt: skip
    args = parser.parse_args(argv)
    started = time.perf_counter()
    header = machine()
    rows: list[Row] = []
    problems: list[str] = []
    for bench in BENCHES:
        if args.only and bench.name not in args.only:
            continue
        got, problem = run_bench(bench, args.quick, bool(args.only) and bench.name in args.only)
        rows += got
        if problem:
            problems.append(problem)

    title = "gorch benchmarks" + (" (--quick: a smoke run, figures are not comparable)"
                                  if args.quick else "")  # fmt: skip
    print(f"\n{title}\n")
    print("\n".join(header))
    print(f"CI:         {'yes' if IN_CI else 'no'}; took {time.perf_counter() - started:.0f} s\n")
    print_table(rows)
    if problems:
        print("\nFAILED:")
        for p in problems:
            print(f"- {p}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
