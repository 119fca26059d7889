"""Celery fixtures: real worker processes on a real Redis, each test on a queue of its own.

The tests use the machine's Redis at 127.0.0.1:6379 (``GORCH_TEST_REDIS_URL``), and a
private ``redis-server`` on a free port for the test that restarts the broker. Without Celery,
the Redis client or a Redis server they skip, except with ``CI=true``, where they fail.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.engine.store.conftest import db_url, pg_server, pg_url  # noqa: F401

REDIS_URL = os.environ.get("GORCH_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
ROOT = Path(__file__).resolve().parents[3]
APPS = ROOT / "tests" / "apps"


def unavailable(why: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{why} (CI=true: the Celery tests must run)")
    pytest.skip(why)


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The machine's Redis, once Celery and the Redis client import and it answers."""
    try:
        import celery  # noqa: F401
        import redis
    except ImportError as e:
        unavailable(f"Celery or the Redis client is not installed ({e}): pip install '.[celery]'")
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except redis.RedisError as e:
        unavailable(f"Redis is unreachable at {REDIS_URL}: {e}")
    return REDIS_URL


@dataclass
class Broker:
    """A redis-server of the test's own, which it may stop and start again."""

    port: int
    dir: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.dir)],
            stdout=(self.dir / "redis.log").open("ab"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        import redis

        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def kill(self) -> None:
        """Stop it as a crash would: SIGKILL; it keeps nothing on disk."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def private_broker(redis_url: str, tmp_path: Path) -> Iterator[Broker]:
    """A redis-server on a free port, in a temporary folder; killed after the test."""
    if shutil.which("redis-server") is None:
        unavailable("redis-server is not installed (Debian package redis-server)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "redis").mkdir()
    broker = Broker(port, tmp_path / "redis")
    broker.start()
    try:
        yield broker
    finally:
        broker.kill()


@dataclass
class CeleryWorker:
    """A ``celery worker -B`` process on the test's queue, and how to send it tasks."""

    proc: subprocess.Popen[bytes]
    queue: str
    broker: str
    log: Path

    def sender(self) -> Any:
        """A Celery app that sends to this worker's queue (for ``CeleryResumer``)."""
        from celery import Celery

        app = Celery("gorch_test_sender", broker=self.broker)
        app.conf.update(task_default_queue=self.queue, broker_connection_retry_on_startup=True)
        return app


@pytest.fixture
def celery_worker(redis_url: str, tmp_path: Path) -> Iterator[Callable[..., CeleryWorker]]:
    """``celery_worker(db_url, sweep_s=..., broker=...)`` starts a worker for the test.

    The worker runs 4 processes (so duplicate messages race) and an embedded beat that sends
    the sweep every ``sweep_s`` seconds. It is stopped, its queue deleted, after the test.
    ``queue=`` puts it on another worker's queue, ``concurrency=`` sizes its pool and
    ``env=`` adds to its environment.
    """
    started: list[CeleryWorker] = []

    def start(
        db: str,
        *,
        sweep_s: float = 3600.0,
        broker: str = redis_url,
        queue: str | None = None,
        concurrency: int = 4,
        env: dict[str, str] | None = None,
    ) -> CeleryWorker:
        n = len(started)
        queue = queue or f"gorch-test-{uuid.uuid4().hex[:12]}"
        environ = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(APPS), str(ROOT)]),
            "GORCH_DB_URL": db,
            "GORCH_BROKER_URL": broker,
            "GORCH_QUEUE": queue,
            "GORCH_SWEEP_S": str(sweep_s),
            "GORCH_SIDE_DB": str(tmp_path / "side.db"),
            **(env or {}),
        }
        log = tmp_path / f"celery{n}.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "celery_app", "worker", "--pool=prefork",
             f"--concurrency={concurrency}", "--beat", "--schedule", str(tmp_path / f"beat{n}"),
             "--without-mingle", "--without-gossip", "--without-heartbeat",
             "--hostname", f"{queue}-{n}@%h", "--loglevel=INFO"],
            env=environ, stdout=subprocess.DEVNULL, stderr=log.open("ab"), start_new_session=True,
        )  # fmt: skip
        worker = CeleryWorker(proc, queue, broker, log)
        started.append(worker)
        deadline = time.monotonic() + 60
        while " ready." not in log.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the Celery worker did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.05)
        return worker

    yield start
    for w in started:
        stop(w.proc)
        _delete_queue(w)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a worker and its embedded beat (its process group): warm, then cold."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _delete_queue(worker: CeleryWorker) -> None:
    import redis

    try:
        client = redis.Redis.from_url(worker.broker, socket_connect_timeout=3)
        keys = list(client.scan_iter(f"*{worker.queue}*"))
        if keys:
            client.delete(*keys)
    except redis.RedisError:
        pass  # a private broker already gone
