"""gorch: durable workflows written as plain Python, in your own database.

The public API is flat: everything a user needs is importable from ``engine``. The modules
behind it are private (``engine._definition``, ``engine._session``, ...; see docs/design.md);
the public modules are ``engine.errors``, ``engine.clock``, ``engine.store``,
``engine.resumers``, ``engine.graph``, ``engine.notebook``, ``engine.config``, ``engine.cli``
and ``engine.examples``.

``import engine`` loads no SQL or graph library: ``SQLModelStore`` (SQLAlchemy, Alembic,
psycopg) is imported on first use of the name (PEP 562), and Graphviz and networkx load with
``engine.graph`` or on a notebook's first rich display.
"""

from typing import TYPE_CHECKING, Any

from engine import _display
from engine._compat import CompatibilityReport, Problem, Renamed, check_compatibility
from engine._definition.compiler import POSITIONABLE_KINDS, validate
from engine._definition.handlers import (
    CallbackManager,
    Event,
    Handler,
    HandlerType,
    Timeout,
    UserAction,
    WaitForUserAction,
)
from engine._definition.statements import (
    Break,
    Case,
    Continue,
    Default,
    For,
    Go,
    If,
    On,
    RetryPolicy,
    Return,
    S,
    Section,
    Statement,
    StatementKind,
    Step,
    Switch,
    Wait,
    WaitFor,
)
from engine._definition.workflow import Workflow
from engine._engine import Engine
from engine._incidents import BulkAction, BulkPreview, BulkReport, BulkTarget, Incident
from engine._interpreter import current_attempt, current_thread, current_wait
from engine._jsonsafe import storable_text
from engine._records import (
    MAIN,
    HistoryEntry,
    HistoryKind,
    InboxPage,
    InboxQuery,
    MoveReport,
    PendingDecision,
    Phase,
    PruneResult,
    ThreadInfo,
    ThreadStatus,
    WaitInfo,
    WaitStatus,
    WorkflowInfo,
    WorkflowSort,
    WorkflowStatus,
)
from engine._sandbox import ManagerCall, RecordedCall, Sandbox
from engine._state import state_data, undeclared_fields, validate_state
from engine._timeline import TimelinePoint, known_from
from engine._trial import TrialReport, TrialResult, trial_run
from engine.clock import Clock, ManualClock, SystemClock
from engine.config import (
    DEFAULT_APP,
    VERBOSE_ENV,
    configure_logging,
    db_url,
    load_app,
    open_store,
)
from engine.errors import (
    CallbackRejected,
    DefinitionError,
    DefinitionMismatch,
    GorchError,
    InvalidInput,
    InvalidOperation,
    InvalidOutput,
    InvalidResult,
    LeaseLost,
    MismatchKind,
    NotPermitted,
    RejectReason,
    RunawayLoop,
    SetupDataError,
    StateError,
    StepTimeout,
    StoreError,
    UnknownWorkflowType,
    WorkflowBusy,
    WorkflowExists,
    WorkflowNotDue,
    WorkflowNotFound,
)
from engine.resumers import InlineResumer, PollingResumer, Resumer
from engine.store.base import SignInLog, Store
from engine.store.memory import MemoryStore

if TYPE_CHECKING:
    from engine.store.sql import SQLModelStore

_display.attach()

__all__ = [
    "DEFAULT_APP",
    "MAIN",
    "POSITIONABLE_KINDS",
    "VERBOSE_ENV",
    "Break",
    "BulkAction",
    "BulkPreview",
    "BulkReport",
    "BulkTarget",
    "CallbackManager",
    "CallbackRejected",
    "Case",
    "Clock",
    "CompatibilityReport",
    "Continue",
    "Default",
    "DefinitionError",
    "DefinitionMismatch",
    "Engine",
    "Event",
    "For",
    "Go",
    "GorchError",
    "Handler",
    "HandlerType",
    "HistoryEntry",
    "HistoryKind",
    "If",
    "InboxPage",
    "InboxQuery",
    "Incident",
    "InlineResumer",
    "InvalidInput",
    "InvalidOperation",
    "InvalidOutput",
    "InvalidResult",
    "LeaseLost",
    "ManagerCall",
    "ManualClock",
    "MemoryStore",
    "MismatchKind",
    "MoveReport",
    "NotPermitted",
    "On",
    "PendingDecision",
    "Phase",
    "PollingResumer",
    "Problem",
    "PruneResult",
    "RecordedCall",
    "RejectReason",
    "Renamed",
    "Resumer",
    "RetryPolicy",
    "Return",
    "RunawayLoop",
    "S",
    "SQLModelStore",
    "Sandbox",
    "Section",
    "SetupDataError",
    "SignInLog",
    "StateError",
    "Statement",
    "StatementKind",
    "Step",
    "StepTimeout",
    "Store",
    "StoreError",
    "Switch",
    "SystemClock",
    "ThreadInfo",
    "ThreadStatus",
    "TimelinePoint",
    "Timeout",
    "TrialReport",
    "TrialResult",
    "UnknownWorkflowType",
    "UserAction",
    "Wait",
    "WaitFor",
    "WaitForUserAction",
    "WaitInfo",
    "WaitStatus",
    "Workflow",
    "WorkflowBusy",
    "WorkflowExists",
    "WorkflowInfo",
    "WorkflowNotDue",
    "WorkflowNotFound",
    "WorkflowSort",
    "WorkflowStatus",
    "check_compatibility",
    "configure_logging",
    "current_attempt",
    "current_thread",
    "current_wait",
    "db_url",
    "known_from",
    "load_app",
    "open_store",
    "state_data",
    "storable_text",
    "trial_run",
    "undeclared_fields",
    "validate",
    "validate_state",
]


def __getattr__(name: str) -> Any:
    """Import the heavy public names on first use: ``SQLModelStore`` loads SQLAlchemy."""
    if name == "SQLModelStore":
        from engine.store.sql import SQLModelStore

        globals()[name] = SQLModelStore  # later look-ups skip this function
        return SQLModelStore
    raise AttributeError(f"module 'engine' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public names, the lazy ones included (they are not in the namespace until used)."""
    return sorted({*globals(), *__all__})
