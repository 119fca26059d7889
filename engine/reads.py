"""Which state fields a ``definition()`` reads, so that it is built again only when they change.

``definition()`` is a pure function of the state: its bool conditions (``If(self.approved,
...)``) are evaluated when it is built. Building it again after every step would be correct
but costs as much as the definition is long, so a run builds it again only when a field it
read has changed since the last build. Which fields it read is traced during the build: the
model is briefly an instance of a subclass whose ``__getattribute__`` notes the names asked
for (``Tracer``), then gets its class back. Nothing else about the model changes, so steps,
conditions and handlers bound during the build run on the real model.

A read the trace cannot follow makes the build depend on the whole state (``EVERYTHING``): a
pydantic method (``self.model_dump()``), ``self.__dict__``, ``==``, ``str(self)``, iterating
``self``, an attribute that is not a field, a method, a property or a class constant. Set
``Workflow.trace_definition_reads = False`` to build again after any change of the state.

During a traced build ``type(self)`` is the tracing subclass (same name, same attributes):
``isinstance(self, Expense)`` holds, ``type(self) is Expense`` does not, and a class
attribute assigned through ``type(self)`` lands on the subclass.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from pydantic import BaseModel

if TYPE_CHECKING:
    from engine.workflow import Workflow

EVERYTHING: Final = "*"
"""In a set of reads: the build read what the trace cannot follow; any change counts."""

_FIELD, _IGNORE = 1, 2
# What a build asks of the model without reading the state (besides the user's own names).
_HARMLESS = frozenset(
    {"__class__", "definition", "workflow_type", "type_name", "trace_definition_reads"}
)

_traces: dict[int, set[str]] = {}  # id(model) -> the names read so far, while it is traced
_tracers: dict[type, type | None] = {}
_lock = threading.Lock()


def traced(model: Workflow, build: Callable[[], Any]) -> tuple[Any, frozenset[str]]:
    """Run ``build`` (which calls ``model.definition()``) and return its result with the state
    fields it read (``EVERYTHING`` among them if it read what cannot be traced)."""
    cls = type(model)
    tracer = _tracer(cls) if getattr(cls, "trace_definition_reads", True) else None
    if tracer is None or id(model) in _traces:
        return build(), frozenset({EVERYTHING})
    reads: set[str] = set()
    _traces[id(model)] = reads
    try:
        object.__setattr__(model, "__class__", tracer)
    except TypeError:  # a layout Python cannot swap: depend on everything
        del _traces[id(model)]
        return build(), frozenset({EVERYTHING})
    try:
        result = build()
    finally:
        object.__setattr__(model, "__class__", cls)
        del _traces[id(model)]
    return result, frozenset(reads)


def changed(reads: frozenset[str], old: dict[str, Any] | None, new: dict[str, Any]) -> bool:
    """Whether a build that read ``reads`` from state ``old`` (as JSON) differs for ``new``."""
    if old is None:
        return True
    if EVERYTHING in reads:
        return old != new
    for name in reads:
        if name not in old or name not in new:  # dumped under another key (an alias)
            return old != new
        if old[name] != new[name]:
            return True
    return False


def _tracer(cls: type[Workflow]) -> type | None:
    """The tracing subclass of ``cls`` (made once per class), or None if it cannot be made."""
    try:
        return _tracers[cls]
    except KeyError:
        pass
    with _lock:
        if cls not in _tracers:
            try:
                _tracers[cls] = _make_tracer(cls)
            except Exception:  # an unusual class: it is simply built again on every change
                _tracers[cls] = None
    return _tracers[cls]


def _make_tracer(cls: type[Workflow]) -> type:
    kinds: dict[str, int] = dict.fromkeys(cls.model_fields, _FIELD)
    for name in _HARMLESS:
        kinds[name] = _IGNORE
    for klass in cls.__mro__:
        if klass is BaseModel or not issubclass(klass, BaseModel):
            continue
        if klass.__module__.startswith("pydantic"):
            continue
        for name, value in vars(klass).items():
            if name.startswith("__") or name in kinds:
                continue
            if _reads_through_self(value) or not _is_descriptor(value):
                kinds[name] = _IGNORE  # a method or property (its own reads are traced), a constant
    base_get = cls.__getattribute__

    def __getattribute__(self: Any, name: str) -> Any:
        reads = _traces.get(id(self))
        if reads is not None:
            kind = kinds.get(name)
            if kind is _FIELD:
                reads.add(name)
            elif kind is None:
                reads.add(EVERYTHING)
        return base_get(self, name)

    namespace: dict[str, Any] = {
        "__getattribute__": __getattribute__,
        "__module__": cls.__module__,
        "__qualname__": cls.__qualname__,
    }
    for special in _OPAQUE:  # read the whole state in C, past __getattribute__
        method = getattr(cls, special, None)
        if callable(method):
            namespace[special] = _everything(method)
    # type.__new__ (not pydantic's metaclass): no schema is built and no hook runs; the class
    # only exists to be swapped in for the length of a build.
    tracer = type.__new__(type(cls), cls.__name__, (cls,), namespace)
    return tracer


_OPAQUE = (
    "__eq__",
    "__iter__",
    "__repr__",
    "__str__",
    "__format__",
    "__copy__",
    "__deepcopy__",
    "__getstate__",
    "__reduce__",
    "__reduce_ex__",
    "__hash__",
    "__rich_repr__",
)


def _everything(method: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        reads = _traces.get(id(self))
        if reads is not None:
            reads.add(EVERYTHING)
        return method(self, *args, **kwargs)

    return wrapper


def _reads_through_self(value: Any) -> bool:
    return inspect.isfunction(value) or isinstance(value, (property, classmethod, staticmethod))


def _is_descriptor(value: Any) -> bool:
    return hasattr(type(value), "__get__")
