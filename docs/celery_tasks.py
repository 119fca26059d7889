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
app.conf.broker_connection_retry_on_startup = True


def make_engine() -> Engine:
    """An engine on GORCH_DB_URL running GORCH_APP's workflows, handing its work to Celery."""
    workflows = load_app()
    return Engine(
        open_store(),
        workflows.workflows,
        managers=workflows.managers,
        resumer=CeleryResumer(app),
    )


register_tasks(app, make_engine, sweep_every=timedelta(minutes=1))
