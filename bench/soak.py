"""Soak: many workflows with timers and callbacks through two ``gorch worker`` processes.

Each workflow runs a step, waits for a short durable timer (half of them) or for an event
that a separate driver process delivers (the other half), then runs a final step and
returns. Two ``gorch worker`` processes run them on PostgreSQL until every one has finished.
Meanwhile the workers' resident memory (``VmRSS`` in ``/proc/<pid>/status``) is sampled.
Afterwards nothing may be left half-way: every workflow finished, no lease held, no wait
left, nothing due, each step executed exactly once and checkpointed exactly once.

The floor is one connection's raw ``UPDATE`` + commit rate on the same database, measured
in the same run; the ratio is the two workers' checkpoints per second against it.

Run: ``.venv/bin/python bench/soak.py`` (10,000 workflows), ``--quick`` (300) or
``--workflows N``. PostgreSQL is ``--db URL`` as given, else a fresh schema on
``GORCH_BENCH_PG_URL`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``),
dropped afterwards. Exit status: 0 if nothing was left behind, 1 if something was, 2 if
PostgreSQL is unreachable.

The module is also the workers' app (``--app soak``, with ``bench/`` on ``PYTHONPATH``).
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from engine import (
    Engine,
    Event,
    GorchError,
    On,
    PollingResumer,
    Return,
    S,
    Section,
    SQLModelStore,
    Step,
    Timeout,
    Wait,
    Workflow,
    WorkflowStatus,
)

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
QUICK = 300
FULL = 10_000

# -- the workflow (also imported by the worker processes) ---------------------------------


class Ping(BaseModel):
    """The driver's event: it names the workflow's number, which the handler checks."""

    n: int


class Soak(Workflow):
    """A step, then a timer or an event (whichever the workflow was started for), a step."""

    n: int
    by_timer: bool
    timer_s: float = 0.5
    started: int = 0
    ended: int = 0
    via: str = ""

    def definition(self) -> Section:
        # The other half's timer is far off: their event always wins.
        after = timedelta(seconds=self.timer_s) if self.by_timer else timedelta(hours=1)
        return S(
            Step("start", self.start),
            Wait("wait",
                On("ping", Event(model=Ping, handle=self.ping)),
                On("timer", Timeout(after=after, handle=self.timer))),
            Step("finish", self.finish),
            Return("ok"),
        )  # fmt: skip

    def start(self) -> None:
        EXECUTED.append((self.n, "start"))
        self.started += 1

    def ping(self, event: Ping) -> None:
        if event.n != self.n:
            raise ValueError(f"ping for workflow {event.n} delivered to workflow {self.n}")
        self.via = "event"

    def timer(self) -> None:
        self.via = "timer"

    def finish(self) -> None:
        EXECUTED.append((self.n, "finish"))
        self.ended += 1


WORKFLOWS = [Soak]

EXECUTED: list[tuple[int, str]] = []
"""Every step this process executed (checkpointed or not), written out at exit."""


def _dump_executions() -> None:
    out = os.environ["GORCH_SOAK_OUT"]
    Path(out, f"executed-{os.getpid()}.json").write_text(json.dumps(EXECUTED))


if os.environ.get("GORCH_SOAK_OUT"):  # a worker started by the soak: report at exit
    atexit.register(_dump_executions)


# -- the driver process ---------------------------------------------------------------------


def drive(url: str, expect: int, timeout: float) -> dict[str, Any]:
    """Deliver a ``ping`` to every open event wait until ``expect`` have been delivered."""
    engine = Engine(SQLModelStore(url, migrate=False), WORKFLOWS, resumer=PollingResumer())
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    delivered, refused = 0, Counter[str]()
    deadline = time.monotonic() + timeout
    while delivered < expect and not stop["now"] and time.monotonic() < deadline:
        # Odd numbers wait for the event; even ones for their timer (their event case is
        # left alone).
        waits = [
            (w, n)
            for w in engine.store.list_waits(type="event", limit=500)
            if (n := int(w.workflow_id.removeprefix("soak-"))) % 2
        ]
        if not waits:
            time.sleep(0.05)
            continue
        for w, n in waits:
            try:
                engine.on_callback(w.workflow_id, w.event, {"n": n},
                                   actor="driver", thread=w.thread_id, pc=w.pc)  # fmt: skip
                delivered += 1
            except GorchError as e:
                refused[getattr(e, "reason", type(e).__name__)] += 1
    return {"delivered": delivered, "refused": dict(refused)}


# -- measuring ------------------------------------------------------------------------------


def rss_mib(pid: int) -> float | None:
    """The process's resident set size in MiB, from ``/proc/<pid>/status`` (None: gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


@dataclass
class Memory:
    """RSS samples of one process, each with the fraction of workflows finished then."""

    name: str
    pid: int
    samples: list[tuple[float, float]] = field(default_factory=list)  # (done fraction, MiB)

    def sample(self, done: float) -> None:
        mib = rss_mib(self.pid)
        if mib is not None:
            self.samples.append((done, mib))

    def at(self, done: float) -> float:
        """The first sample taken once ``done`` of the workflows had finished."""
        later = [m for d, m in self.samples if d >= done]
        return later[0] if later else float("nan")

    @property
    def start(self) -> float:
        return self.at(0.01)  # imports done, connections open, the first workflows through

    @property
    def end(self) -> float:
        return self.samples[-1][1] if self.samples else float("nan")

    @property
    def peak(self) -> float:
        return max((m for _, m in self.samples), default=float("nan"))


def raw_commits_per_s(url: str, n: int = 1000) -> float:
    """One connection's ``UPDATE`` + commit rate through the raw driver: the floor."""
    from sqlalchemy import create_engine

    engine = create_engine(url)
    try:
        conn = engine.raw_connection()
        try:
            cur = conn.cursor()
            cur.execute("CREATE TABLE soak_floor (id int PRIMARY KEY, v int)")
            cur.execute("INSERT INTO soak_floor VALUES (1, 0)")
            conn.commit()
            started = time.perf_counter()
            for i in range(n):
                cur.execute("UPDATE soak_floor SET v = %s WHERE id = 1", (i,))
                conn.commit()
            elapsed = time.perf_counter() - started
            cur.execute("DROP TABLE soak_floor")
            conn.commit()
        finally:
            conn.close()
    finally:
        engine.dispose()
    return n / elapsed


def leftovers(store: SQLModelStore, n: int) -> dict[str, int]:
    """What is left in an in-between state once the run is over (all zero when it is clean)."""
    from sqlalchemy import text

    queries = {
        "not finished": "SELECT count(*) FROM workflows WHERE status <> 'finished'",
        "leases held": "SELECT count(*) FROM workflows WHERE lease_owner IS NOT NULL",
        "still due": "SELECT count(*) FROM workflows WHERE next_run_at IS NOT NULL",
        "waits left": "SELECT count(*) FROM waits",
        "failed or blocked": "SELECT count(*) FROM history "
        "WHERE kind IN ('step_error', 'thread_failed', 'blocked', 'setup_error', "
        "'teardown_error')",
        "workflows without 2 steps": "SELECT count(*) FROM (SELECT w.id FROM workflows w "
        "LEFT JOIN history h ON h.workflow_id = w.id AND h.kind = 'step' "
        "GROUP BY w.id HAVING count(h.id) <> 2) AS x",
        "workflows without 1 callback": "SELECT count(*) FROM (SELECT w.id FROM workflows w "
        "LEFT JOIN history h ON h.workflow_id = w.id AND h.kind = 'callback' "
        "GROUP BY w.id HAVING count(h.id) <> 1) AS x",
    }
    with store.engine.connect() as conn:
        found = {k: int(conn.execute(text(q)).scalar_one()) for k, q in queries.items()}
        total = int(conn.execute(text("SELECT count(*) FROM workflows")).scalar_one())
        wrong_state = 0
        for state, result in conn.execute(text("SELECT state, result FROM workflows")):
            s = state if isinstance(state, dict) else json.loads(state)
            result = json.loads(result) if isinstance(result, str) and result[:1] == '"' else result
            expected_via = "timer" if s["by_timer"] else "event"
            if (s["started"], s["ended"], s["via"], result) != (1, 1, expected_via, "ok"):
                wrong_state += 1
    found["missing workflows"] = n - total
    found["wrong final state"] = wrong_state
    return found


def executions(out: Path, n: int) -> tuple[Counter[str], int, int]:
    """Step executions reported by the workers: per step, repeated ones, missing ones."""
    runs: Counter[tuple[int, str]] = Counter()
    for path in out.glob("executed-*.json"):
        runs.update((k, s) for k, s in json.loads(path.read_text()))
    per_step = Counter(s for _, s in runs.elements())
    repeated = sum(c - 1 for c in runs.values() if c > 1)
    missing = sum(1 for k in range(n) for s in ("start", "finish") if runs[k, s] == 0)
    return per_step, repeated, missing


# -- the run --------------------------------------------------------------------------------


@contextmanager
def database(url: str | None) -> Iterator[str]:
    """``url``, or a fresh schema on the bench PostgreSQL server (dropped afterwards)."""
    if url is not None:
        yield url
        return
    sys.path.insert(0, str(BENCH))
    from common import PG_URL, pg_schema, pg_unreachable

    why = pg_unreachable(PG_URL)
    if why is not None:
        print(f"soak: skipped: {why}", file=sys.stderr)
        raise SystemExit(2)
    with pg_schema(PG_URL) as schema_url:
        yield schema_url


def start_worker(url: str, out: Path, i: int, poll: float, batch: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(BENCH), "GORCH_SOAK_OUT": str(out)}
    return subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "worker", "--db", url, "--app", "soak",
         "--poll", str(poll), "--batch", str(batch), "--lease", "30"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=(out / f"worker-{i}.log").open("wb"),
    )  # fmt: skip


def stop(proc: subprocess.Popen[bytes], timeout: float = 60) -> int:
    """SIGTERM, then SIGKILL after ``timeout``; the exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def run(args: argparse.Namespace) -> int:
    n = QUICK if args.quick and args.workflows is None else (args.workflows or FULL)
    events = n // 2
    with ExitStack() as stack:
        url = stack.enter_context(database(args.db))
        if args.out is not None:
            out = Path(args.out)
            out.mkdir(parents=True, exist_ok=True)
        else:
            out = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gorch-soak-")))
        store = SQLModelStore(url)
        stack.callback(store.close)
        engine = Engine(store, WORKFLOWS, resumer=PollingResumer())
        floor = raw_commits_per_s(url)

        started = time.perf_counter()
        for k in range(n):
            engine.new_workflow(Soak(n=k, by_timer=k % 2 == 0, timer_s=args.timer), f"soak-{k}")
        created = time.perf_counter() - started
        print(f"soak: {n} workflows created in {created:.1f} s", file=sys.stderr)

        started = time.perf_counter()
        workers = [start_worker(url, out, i, args.poll, args.batch) for i in (1, 2)]
        driver = subprocess.Popen(
            [sys.executable, __file__, "--drive", str(events), "--db", url,
             "--timeout", str(args.timeout)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=(out / "driver.log").open("wb"),
        )  # fmt: skip
        memory = [Memory(f"worker {i}", w.pid) for i, w in enumerate(workers, 1)]
        memory.append(Memory("driver", driver.pid))
        done, last_report = 0, 0.0
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            done = store.count_workflows()[WorkflowStatus.FINISHED]
            for m in memory:
                m.sample(done / n)
            if done == n or any(w.poll() is not None for w in workers):
                break
            if done / n - last_report >= 0.1:
                last_report = done / n
                rss = ", ".join(f"{m.samples[-1][1]:.0f}" for m in memory if m.samples)
                print(f"soak: {done}/{n} finished after {time.perf_counter() - started:.0f} s "
                      f"(RSS MiB: {rss})", file=sys.stderr)  # fmt: skip
            time.sleep(args.sample)
        elapsed = time.perf_counter() - started
        codes = [stop(w) for w in workers]
        if driver.poll() is None:  # it stops by itself once every event is delivered
            driver.send_signal(signal.SIGTERM)
        driven = json.loads(driver.communicate(timeout=60)[0] or b"{}")

        left = leftovers(store, n)
        per_step, repeated, missing = executions(out, n)
        with store.engine.connect() as conn:
            from sqlalchemy import text

            checkpoints = int(
                conn.execute(text("SELECT sum(version) FROM workflows")).scalar() or 0
            )
            by_actor = "SELECT actor, count(*) FROM history WHERE kind = 'callback' GROUP BY actor"
            actors = {str(a): int(c) for a, c in conn.execute(text(by_actor))}
        logs = "".join(p.read_text(errors="replace") for p in sorted(out.glob("worker-*.log")))
        warnings = sum(" WARNING " in line for line in logs.splitlines())
        errors = sum((" ERROR " in x or "Traceback" in x) for x in logs.splitlines())

    problems = {k: v for k, v in left.items() if v}
    if done != n:
        problems["finished before the timeout"] = n - done
    if codes != [0, 0]:
        problems["worker exit codes"] = sum(1 for c in codes if c != 0)
    if repeated or missing:
        problems["step executions repeated or missing"] = repeated + missing
    if actors != {"timer": n - events, "driver": events}:
        problems["callbacks by the wrong actor"] = 1
    if errors:
        problems["errors in worker logs"] = errors
    total_left = sum(left.values())

    rate = checkpoints / elapsed
    rows: list[tuple[str, str]] = [
        ("workflows", f"{n:,} ({n - events:,} by timer, {events:,} by driven event)"),
        ("created in", f"{created:.1f} s ({n / created:,.0f}/s, one process)"),
        ("run: workers started → all finished", f"{elapsed:.1f} s"),
        ("workflows finished", f"{done}/{n}"),
        ("throughput", f"{done / elapsed:,.1f} workflows/s, {2 * done / elapsed:,.1f} steps/s"),
        ("checkpoints", f"{checkpoints:,} ({rate:,.0f}/s)"),
        ("floor: raw UPDATE + commit, one connection", f"{floor:,.0f}/s"),
        ("ratio: checkpoints/s of 2 workers / floor", f"{rate / floor:.2f}\N{MULTIPLICATION SIGN}"),
    ]
    for m in memory:
        rss = " / ".join(_mib(x) for x in (m.start, m.at(0.5), m.end, m.peak)) + " MiB"
        rows.append((f"{m.name} RSS start / 50% / end / peak", rss))
    rows += [
        ("events delivered by the driver", f"{driven.get('delivered', 0):,}"),
        ("driver's refused deliveries", str(driven.get("refused") or "none")),
        ("callbacks in history", ", ".join(f"{a} {c:,}" for a, c in sorted(actors.items()))),
        ("step executions", ", ".join(f"{s} {c:,}" for s, c in sorted(per_step.items()))),
        ("step executions repeated / missing", f"{repeated} / {missing}"),
        ("worker exit codes", " ".join(map(str, codes))),
        ("worker log", f"{warnings} warnings, {errors} errors"),
        ("leftovers", f"{total_left}"),
    ]
    rows += [(f"  {what}", str(count)) for what, count in left.items()]
    width = max(len(name) for name, _ in rows)
    print("\n| figure" + " " * (width - 6) + " | value |")
    print("|" + "-" * (width + 2) + "|-------|")
    for name, value in rows:
        print(f"| {name.ljust(width)} | {value} |")
    if problems:
        print(f"\nsoak: FAILED: {problems}")
        if errors:
            print(logs[-3000:])
        return 1
    print("\nsoak: OK")
    return 0


def _mib(x: float) -> str:
    return "-" if x != x else f"{x:.1f}"  # NaN: no sample (the driver had already exited)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK} workflows")
    parser.add_argument("--workflows", type=int, default=None, help=f"default {FULL:,}")
    parser.add_argument("--db", default=None, help="PostgreSQL URL (default: a fresh schema)")
    parser.add_argument("--timer", type=float, default=0.5, help="timer seconds (timer half)")
    parser.add_argument("--poll", type=float, default=0.05, help="workers' --poll")
    parser.add_argument("--batch", type=int, default=50, help="workers' --batch")
    parser.add_argument("--sample", type=float, default=0.5, help="seconds between samples")
    parser.add_argument("--timeout", type=float, default=None, help="give up after (s)")
    parser.add_argument("--out", default=None, help="keep the logs here (default: discard)")
    parser.add_argument("--drive", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.drive is not None:  # the driver process
        print(json.dumps(drive(args.db, args.drive, args.timeout or 3600.0)))
        return 0
    if args.timeout is None:
        args.timeout = 180.0 if args.quick else 3600.0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
