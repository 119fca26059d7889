"""Configuration shared by the CLI, the worker and the UI: which database, which workflows.

``GORCH_DB_URL`` picks the store (default ``sqlite:///gorch.db``; ``memory://`` for a
throwaway in-process store). ``GORCH_APP`` names an importable module: gorch uses its
``WORKFLOWS`` list if it has one, else every ``Workflow`` subclass defined in it, and its
``MANAGERS`` dict (handler type -> ``CallbackManager``) if it has one. The default app is the
bundled examples. ``GORCH_VERBOSE`` (set by ``gorch ui -v``) is the UI process's log level
(``configure_logging``).
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
from dataclasses import dataclass, field
from typing import Any

from engine._definition.handlers import CallbackManager
from engine._definition.workflow import Workflow
from engine.errors import GorchError
from engine.store.base import Store

DEFAULT_DB_URL = "sqlite:///gorch.db"
DEFAULT_APP = "engine.examples"
VERBOSE_ENV = "GORCH_VERBOSE"
LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


class ConfigError(GorchError):
    """The configured app or database cannot be used."""


@dataclass(frozen=True)
class App:
    """What a ``GORCH_APP`` module provides."""

    module: str
    workflows: list[type[Workflow]]
    managers: dict[str, CallbackManager] = field(default_factory=dict)


def db_url(url: str | None = None) -> str:
    """The database URL to use: ``url``, else ``$GORCH_DB_URL``, else ``sqlite:///gorch.db``.

    Args:
        url: an explicit URL (``memory://`` or any SQLAlchemy URL), or None.
    """
    return url or os.environ.get("GORCH_DB_URL") or DEFAULT_DB_URL


def load_app(module: str | None = None) -> App:
    """Import the app module and collect its workflows and callback managers.

    Args:
        module: the module's import name; else ``$GORCH_APP``; else ``engine.examples``.

    Raises:
        ConfigError: the module cannot be imported, defines no ``Workflow`` subclass, or lists
            something else in ``WORKFLOWS``.
    """
    name = module or os.environ.get("GORCH_APP") or DEFAULT_APP
    try:
        mod = importlib.import_module(name)
    except ImportError as e:
        raise ConfigError(f"cannot import the app module {name!r}: {e}") from e
    listed: Any = getattr(mod, "WORKFLOWS", None)
    if listed is None:
        listed = [
            obj
            for obj in vars(mod).values()
            if inspect.isclass(obj)
            and issubclass(obj, Workflow)
            and obj is not Workflow
            and obj.__module__ == mod.__name__
        ]
    workflows = list(listed)
    bad = [w for w in workflows if not (inspect.isclass(w) and issubclass(w, Workflow))]
    if bad:
        raise ConfigError(f"{name}.WORKFLOWS holds non-Workflow items: {bad!r:.200}")
    if not workflows:
        raise ConfigError(f"the app module {name!r} defines no Workflow subclass")
    managers = dict(getattr(mod, "MANAGERS", None) or {})
    return App(name, workflows, managers)


def open_store(url: str | None = None) -> Store:
    """Open the store for a URL: a ``MemoryStore`` for ``memory://``, else a ``SQLModelStore``.

    Args:
        url: as for ``db_url`` (None: ``$GORCH_DB_URL`` or the default SQLite file).
    """
    url = db_url(url)
    if url.startswith("memory:"):
        from engine.store.memory import MemoryStore

        return MemoryStore()
    from engine.store.sql import SQLModelStore

    return SQLModelStore(url)


def configure_logging(verbose: int) -> None:
    """Log to stderr at WARNING, INFO (``verbose`` 1) or DEBUG (2 or more).

    Args:
        verbose: how many ``-v`` were given.

    For programs (the ``gorch`` command, the UI's process), never for the library. Alembic's
    notes on every store opening ("Context impl SQLiteImpl.") show only at DEBUG.
    """
    logging.basicConfig(format=LOG_FORMAT)
    logging.getLogger().setLevel(logging.WARNING - 10 * min(max(verbose, 0), 2))
    logging.getLogger("alembic").setLevel(logging.WARNING if verbose < 2 else logging.NOTSET)
