"""Callback-to-next-step latency through Celery (Redis broker) against ``gorch worker``.

A workflow waits for a callback, then runs one step that stamps the time. The latency is
that stamp minus the moment just before ``on_callback``: the callback's own write, the
hand-off (a Celery message, or the worker's next poll) and the session that runs the step.
The floor is ``gorch worker`` on the same SQLite database kind, on the same machine, in the
same run: at its default poll (0.5 s) and at ``--poll 0.05``.

Run: ``.venv/bin/python bench/bench_celery.py [--quick]`` (needs the ``celery`` extra and
Redis at ``GORCH_BENCH_REDIS_URL``, default ``redis://127.0.0.1:6379/0``).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
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
from common import print_table

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
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{cmd[2:5]} did not start")
        time.sleep(0.05)
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def through_worker(tmp: str, samples: int, poll: float) -> list[float]:
    url = f"sqlite:///{tmp}/worker-{poll}.db"
    store = SQLModelStore(url)
    engine = Engine(store, WORKFLOWS, resumer=PollingResumer())
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    cmd = [sys.executable, "-m", "engine.cli", "worker", "--db", url, "--app", "bench_celery",
           "--poll", str(poll)]  # fmt: skip
    probe = engine.new_workflow(Ping())
    proc = with_process(cmd, env, lambda: engine.get(probe).status is WorkflowStatus.WAITING)
    try:
        return latencies(engine, samples)
    finally:
        stop(proc)
        store.close()


def through_celery(tmp: str, samples: int) -> list[float]:
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
        return latencies(engine, samples)
    finally:
        stop(proc)
        store.close()
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(f"*{queue}*"))
        if keys:
            client.delete(*keys)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="few samples: a smoke test")
    args = parser.parse_args(argv)
    samples = 10 if args.quick else 60
    try:
        import redis

        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except Exception as e:  # no celery extra, or no Redis: nothing to measure
        print(f"(Celery rows skipped: {type(e).__name__}: {e})")
        return []
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        celery = statistics.median(through_celery(tmp, samples))
        for poll in (0.5, 0.05):
            worker = statistics.median(through_worker(tmp, samples, poll))
            rows.append(
                {
                    "bench": f"callback→next step, Celery vs gorch worker --poll {poll}",
                    "ours": celery * 1e3,
                    "floor": worker * 1e3,
                    "ratio": celery / worker,
                    "unit": "ms",
                }
            )
    print_table("Celery resumer (median latency, SQLite store)", rows)
    return rows


if __name__ == "__main__":
    main()
