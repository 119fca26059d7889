"""Step timeouts: check a declared timeout, and run a step on a helper thread bounded by it."""

from __future__ import annotations

import math
import os
import sys
import sysconfig
import threading
import traceback
from collections.abc import Callable
from contextvars import copy_context
from datetime import timedelta
from typing import Any

from engine.errors import (
    DefinitionError,
    StepTimeout,
)


def timeout_seconds(value: Any, where: str) -> float | None:
    """A step timeout (a ``timedelta`` or seconds) in seconds; None for none.

    Raises:
        DefinitionError: not a positive, finite duration.
    """
    if value is None:
        return None
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise DefinitionError(
            f"{where} must be a timedelta or a number of seconds, not {type(value).__name__}"
        )
    if not (seconds > 0 and math.isfinite(seconds)):
        raise DefinitionError(f"{where} must be positive and finite (None for no timeout)")
    return seconds


def call_with_timeout(call: Callable[[], Any], seconds: float, *, step: str, thread: str) -> Any:
    """Run ``call()`` on a helper thread and return its result or raise its exception.

    Raises:
        StepTimeout: it did not return within ``seconds``. The helper thread is a daemon that
            keeps running in the background: Python has no way to stop it.
    """
    ctx = copy_context()  # current_thread() and current_attempt() work inside the step
    box: list[tuple[bool, Any]] = []

    def target() -> None:
        try:
            box.append((True, ctx.run(call)))
        except BaseException as e:
            box.append((False, e))

    helper = threading.Thread(target=target, name=f"gorch-step-{step}"[:60], daemon=True)
    helper.start()
    helper.join(seconds)
    if helper.is_alive():
        where = _where(helper)
        raise StepTimeout(
            f"step {step!r} did not return within {seconds:g} s"
            + (f" (it was at {where})" if where else "")
            + "; it was abandoned and may still be running in the background, since Python "
            "cannot stop a thread",
            timeout=seconds,
            where=where,
            thread=thread,
            statement=step,
        )
    ok, value = box[0]
    if ok:
        return value
    raise value


def _where(helper: threading.Thread) -> str | None:
    """Where ``helper`` is now: its innermost frame outside Python's standard library and gorch."""
    frame = sys._current_frames().get(helper.ident or -1)
    if frame is None:
        return None
    stack = traceback.extract_stack(frame)
    skip = (sysconfig.get_paths()["stdlib"], os.path.dirname(__file__))
    last = next((f for f in reversed(stack) if not f.filename.startswith(skip)), stack[-1])
    return f"{last.filename}:{last.lineno} in {last.name}()"
