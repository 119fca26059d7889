"""Which state fields a ``definition()`` reads, so that it is built again only when they change.

``definition()`` is a pure function of the state: its bool conditions (``If(self.approved,
...)``) are evaluated when it is built. Building it again after every step would be correct
but costs as much as the definition is long, so a run builds it again only when a field it
read has changed since the last build. Which fields it read is traced during the build: the
model is briefly an instance of a subclass (made once per class) whose fields are data
descriptors that note each read, then gets its class back. Methods and properties are the
class's own, so they cost nothing extra and their reads of fields count; nothing else about
the model changes, so steps, conditions and handlers bound during the build run on the real
model.

A read the trace cannot follow makes the build depend on the whole state (``EVERYTHING``):
pydantic's methods (``self.model_dump()``, ``==``, ``str(self)``, iterating ``self``, private
attributes and extras through ``__getattr__``), ``self.__dict__`` or ``vars(self)``, and any
write to the model. Set ``Workflow.trace_definition_reads = False`` to build again after any
change of the state.

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
    from engine._definition.workflow import Workflow

EVERYTHING: Final = "*"
"""In a set of reads: the build read what the trace cannot follow; any change counts."""


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
    namespace: dict[str, Any] = {name: _Field(name) for name in cls.model_fields}
    for name in _SLOTS:  # pydantic's own slots: the instance dict and its companions
        namespace[name] = _Slot(BaseModel.__dict__[name])
    for name, value in vars(BaseModel).items():
        # pydantic's methods read the whole state in C (model_dump, ==, str(), iteration,
        # private attributes through __getattr__), past the fields' descriptors.
        if inspect.isfunction(value) and (not name.startswith("__") or name in _OPAQUE):
            method = getattr(cls, name)  # the user's override, if any
            if callable(method):
                namespace[name] = _everything(method)
    namespace.update(__module__=cls.__module__, __qualname__=cls.__qualname__)
    # type.__new__ (not pydantic's metaclass): no schema is built and no hook runs; the class
    # only exists to be swapped in for the length of a build.
    return type.__new__(type(cls), cls.__name__, (cls,), namespace)


_DICT = BaseModel.__dict__["__dict__"]  # the instance dict's own descriptor
_SLOTS = ("__dict__", "__pydantic_fields_set__", "__pydantic_extra__", "__pydantic_private__")


def _note_everything(obj: Any) -> None:
    reads = _traces.get(id(obj))
    if reads is not None:
        reads.add(EVERYTHING)


class _Field:
    """A field of the traced class: reading it notes the field (a data descriptor, so it
    comes before the instance dict, where pydantic keeps the value)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: Any = None) -> Any:
        if obj is None:
            raise AttributeError(self.name)
        reads = _traces.get(id(obj))
        if reads is not None:
            reads.add(self.name)
        try:
            return _DICT.__get__(obj)[self.name]
        except KeyError:
            raise AttributeError(self.name) from None

    def __set__(self, obj: Any, value: Any) -> None:
        _note_everything(obj)  # definition() wrote to the state: assume the worst
        _DICT.__get__(obj)[self.name] = value


class _Slot:
    """One of pydantic's slots on the traced class: reading it reads the whole state."""

    __slots__ = ("base",)

    def __init__(self, base: Any) -> None:
        self.base = base

    def __get__(self, obj: Any, owner: Any = None) -> Any:
        if obj is None:
            return self.base
        _note_everything(obj)
        return self.base.__get__(obj, owner)

    def __set__(self, obj: Any, value: Any) -> None:
        _note_everything(obj)
        self.base.__set__(obj, value)


_OPAQUE = (
    "__getattr__",
    "__setattr__",
    "__delattr__",
    "__repr_args__",
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
