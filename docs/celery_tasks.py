"""Run gorch workflows on Celery with a Redis broker (see docs/operations.md).

Workers, and the beat that sends the sweep every minute (or run ``celery beat`` once, apart):

    GORCH_DB_URL=postgresql+psycopg://gorch@db/gorch GORCH_APP=myapp.workflows \\
        celery -A celery_tasks worker --beat

Your web app starts workflows and delivers callbacks with the same ``make_engine()``.
"""

import os
from datetime import timedelta

from celery import Celery

from engine import Engine
from engine.config import load_app, open_store
from engine.resumers.celery import CeleryResumer, register_tasks

app = Celery("myapp", broker=os.environ.get("GORCH_BROKER_URL", "redis://127.0.0.1:6379/0"))
app.conf.update(
    broker_connection_retry_on_startup=True,
    broker_connection_max_retries=None,  # however long Redis is down, never give up and exit
)


def make_engine() -> Engine:
    """An engine on GORCH_DB_URL running GORCH_APP's workflows, handing its work to Celery."""
    workflows = load_app()
    return Engine(
        open_store(),
        workflows.workflows,
        managers=workflows.managers,
        resumer=CeleryResumer(app),
        # What a killed worker held is taken over once its lease expires; the tasks renew
        # the leases of what they run, so steps may take longer than this.
        lease=timedelta(minutes=1),
    )


register_tasks(app, make_engine, sweep_every=timedelta(minutes=1))
