"""Callback-to-next-step latency (row 6) through Celery (Redis broker) against ``gorch worker``.

A workflow waits for a callback, then runs one step that stamps the time. The latency is
that stamp minus the moment just before ``on_callback``: the callback's own write, the
hand-off (a Celery message, or the worker's next poll) and the session that runs the step.
The floor is ``gorch worker`` on the same SQLite database kind, on the same machine, in the
same run: at its default poll (0.5 s) and at ``--poll 0.05``.

Run: ``.venv/bin/python bench/bench_celery.py [--quick]`` (needs the ``celery`` extra and
Redis at ``GORCH_BENCH_REDIS_URL``, default ``redis://127.0.0.1:6379/0``; without them the
rows are skipped). ``bench/run.py`` runs it in its full run only (or with ``--only celery``).
The peak memory is the largest maximum RSS of the Celery worker (with its pool) and the
``gorch worker`` process.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from common import Row, print_table, skipped, stop_process

from engine import (
    Engine,
    On,
    PollingResumer,
    S,
    Section,
    SQLModelStore,
    Step,
    Wait,
    WaitForUserAction,
    Workflow,
    WorkflowStatus,
)

REDIS_URL = os.environ.get("GORCH_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")

ROWS = {
    "celery.poll0.5": (6, "callback → next step through Celery, vs --poll 0.5"),
    "celery.poll0.05": (6, "callback → next step through Celery, vs --poll 0.05"),
}


class Ping(Workflow):
    """Waits for ``go``, then stamps the wall-clock time in a step."""

    stamp: float = 0.0

    def definition(self) -> Section:
        return S(
            Wait("wait", On("go", WaitForUserAction(approve=lambda: None, deny=print))),
            Step("stamp", self.stamp_now),
        )

    def stamp_now(self) -> None:
        self.stamp = time.time()


WORKFLOWS = [Ping]


def celery_app() -> Any:
    """The Celery app of the bench (also what ``celery -A bench_celery`` loads)."""
    from celery import Celery

    from engine.resumers.celery import CeleryResumer, register_tasks

    app = Celery("gorch_bench", broker=REDIS_URL)
    app.conf.update(
        task_default_queue=os.environ.get("GORCH_QUEUE", "gorch-bench"),
        broker_connection_retry_on_startup=True,
    )
    register_tasks(
        app,
        lambda: Engine(
            SQLModelStore(os.environ["GORCH_DB_URL"]), WORKFLOWS, resumer=CeleryResumer(app)
        ),
    )
    return app


if os.environ.get("GORCH_BENCH_CELERY_WORKER"):
    app = celery_app()


def latencies(engine: Engine, samples: int) -> list[float]:
    """Seconds from just before each callback to the step after it."""
    out = []
    for _ in range(samples + 1):  # the first one warms up
        wid = engine.new_workflow(Ping())
        while engine.get(wid).status is not WorkflowStatus.WAITING:
            time.sleep(0.001)
        time.sleep(random.uniform(0, 0.5))  # callbacks come at any moment of a worker's poll
        t0 = time.time()
        engine.on_callback(wid, "go", {"approved": True})
        while not engine.get(wid).status.done:
            time.sleep(0.001)
        out.append(engine.get(wid).state.stamp - t0)
    return out[1:]


def with_process(cmd: list[str], env: dict[str, str], ready: Callable[[], bool]) -> Any:
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 60
    while not ready():
        if proc.poll() is not None:
            raise RuntimeError(f"{cmd[2:5]} exited with {proc.returncode} before it was ready")
        if time.monotonic() > deadline:
            stop_process(proc, group=True)
            raise RuntimeError(f"{cmd[2:5]} was not ready within 60 s")
        time.sleep(0.05)
    return proc


def through_worker(tmp: str, samples: int, poll: float) -> tuple[list[float], int | None]:
    url = f"sqlite:///{tmp}/worker-{poll}.db"
    store = SQLModelStore(url)
    engine = Engine(store, WORKFLOWS, resumer=PollingResumer())
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    cmd = [sys.executable, "-m", "engine.cli", "worker", "--db", url, "--app", "bench_celery",
           "--poll", str(poll)]  # fmt: skip
    probe = engine.new_workflow(Ping())
    proc = with_process(cmd, env, lambda: engine.get(probe).status is WorkflowStatus.WAITING)
    try:
        lat = latencies(engine, samples)
    finally:
        rss = stop_process(proc, group=True)
        store.close()
    return lat, rss


def through_celery(tmp: str, samples: int) -> tuple[list[float], int | None]:
    from engine.resumers.celery import CeleryResumer

    url = f"sqlite:///{tmp}/celery.db"
    queue = f"gorch-bench-{uuid.uuid4().hex[:10]}"
    os.environ["GORCH_QUEUE"] = queue
    app = celery_app()
    store = SQLModelStore(url)
    engine = Engine(store, WORKFLOWS, resumer=CeleryResumer(app))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent), "GORCH_DB_URL": url,
           "GORCH_BENCH_CELERY_WORKER": "1"}  # fmt: skip
    cmd = [sys.executable, "-m", "celery", "-A", "bench_celery", "worker", "--concurrency=2",
           "--without-mingle", "--without-gossip", "--without-heartbeat", "--loglevel=WARNING",
           "--hostname", f"{queue}@%h"]  # fmt: skip
    probe = engine.new_workflow(Ping())
    proc = with_process(cmd, env, lambda: engine.get(probe).status is WorkflowStatus.WAITING)
    try:
        lat = latencies(engine, samples)
    finally:
        rss = stop_process(proc, group=True)
        store.close()
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(f"*{queue}*"))
        if keys:
            client.delete(*keys)
    return lat, rss


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="few samples: a smoke test")
    args = parser.parse_args(argv)
    samples = 10 if args.quick else 60
    try:
        import celery  # noqa: F401
        import redis

        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except Exception as e:  # no celery extra, or no Redis: nothing to measure
        return skipped(ROWS, f"no Celery or Redis at {REDIS_URL}: {type(e).__name__}: {e}")
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        lat, celery_rss = through_celery(tmp, samples)
        ours = statistics.median(lat)
        for poll in (0.5, 0.05):
            lat, worker_rss = through_worker(tmp, samples, poll)
            floor = statistics.median(lat)
            key = f"celery.poll{poll}"
            rows.append(Row(key, ROWS[key][1], ours * 1e3, unit="ms", floor=floor * 1e3,
                            floor_what=f"gorch worker --poll {poll}",
                            peak=max((p for p in (celery_rss, worker_rss) if p), default=None),
                            peak_kind="rss",
                            issue=6))  # fmt: skip
    return rows


if __name__ == "__main__":
    print_table(main(), "Celery resumer (median latency, SQLite store)")
