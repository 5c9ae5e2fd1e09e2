"""``instrument()``: measure the functions of a module, package or class without editing them."""

from __future__ import annotations

import fnmatch
import functools
import inspect
import sys
import threading
import types
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from multimeter import _process
from multimeter._log import safe_log
from multimeter._measured import decorate, is_measured
from multimeter._tags import normalize_tags

_Patch = tuple[Any, str, Any]  # (owner, attribute name, original object)

#: Names whose reading shows a function looking at the frames of its callers.
_FRAME_NAMES = frozenset(
    {"_getframe", "_getframemodulename", "currentframe", "f_back", "getouterframes", "getframeinfo"}
)


def inspects_its_caller(function: Any) -> str | None:
    """Why ``function`` looks at its caller's frame, or None where its code shows no sign.

    Measured, such a function would see multimeter's wrapper, whose frame carries the
    function's own module (globals, file, line): ``namedtuple()`` and
    ``attr.make_class()`` would make classes of their own module, a deprecation
    warning would blame the library itself. The signs, in the function's own code
    object (not in functions nested in it): it reads ``_getframe``,
    ``_getframemodulename``, ``currentframe``, ``f_back``, ``getouterframes``,
    ``getframeinfo``, or ``stack`` together with ``inspect``; or it passes a
    ``stacklevel=`` keyword (``warnings.warn()``, ``logging``), whose name the
    compiler keeps in a tuple of keyword names among the constants. A helper that
    reads frames on behalf of its caller's caller goes unseen.
    """
    code = getattr(function, "__code__", None)
    if not isinstance(code, types.CodeType):
        return None
    names = set(code.co_names)
    found = sorted(names & _FRAME_NAMES)
    if {"inspect", "stack"} <= names:
        found.append("inspect.stack")
    if found:
        return f"reads its caller's frame ({', '.join(found)})"
    for constant in code.co_consts:
        if (
            isinstance(constant, tuple)
            and "stacklevel" in constant
            and all(isinstance(item, str) for item in constant)
        ):
            return "passes stacklevel= to point at its caller"
    return None


def _function_in(attribute: Any) -> Any:
    """The function a class attribute holds: itself, or the one in a staticmethod or
    classmethod; None for anything else."""
    if isinstance(attribute, (staticmethod, classmethod)):
        attribute = attribute.__func__
    return attribute if inspect.isfunction(attribute) else None


def _patterns(value: str | Iterable[str] | None, argument: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)
    patterns = tuple(value) if isinstance(value, Iterable) else (value,)
    if not all(isinstance(p, str) for p in patterns):
        raise ValueError(f"{argument} must be a glob pattern or a list of them, got {value!r}")
    return patterns


@dataclass(frozen=True)
class _Scope:
    """The modules an instrumentation covers: one module, or a package and its submodules."""

    name: str
    recursive: bool

    def covers(self, module_name: str) -> bool:
        return module_name == self.name or (
            self.recursive and module_name.startswith(self.name + ".")
        )

    def qualify(self, module_name: str, qualname: str) -> str:
        """``more.chunked`` for ``more_itertools.more.chunked``; ``load`` in the root."""
        if module_name == self.name or not self.covers(module_name):
            return qualname
        return f"{module_name[len(self.name) + 1 :]}.{qualname}"


class Instrumentation:
    """What :func:`instrument` did; :meth:`uninstrument` undoes it.

    ``repr()`` counts what was patched:
    ``<Instrumentation of 'more_itertools': 163 functions patched under 330 names>``
    (a function re-exported under several names is one function), and the functions
    skipped, if any (``...; 2 functions skipped>``).
    """

    def __init__(
        self,
        target: str,
        scope: _Scope,
        include: tuple[str, ...] | None,
        exclude: tuple[str, ...] | None,
        tags: Mapping[str, Any] | None,
    ) -> None:
        self._target = target
        self._scope = scope
        self._include = include
        self._exclude = exclude
        self._tags = tags
        self._patches: dict[tuple[int, str], _Patch] = {}  # by (id(owner), name), in order
        self._measured: dict[int, tuple[Any, Any]] = {}  # id(function): (function, measured)
        self._originals: dict[int, Any] = {}  # id(measured): function
        self._skipped: dict[int, tuple[Any, str, str]] = {}  # id(function): (function, name, why)
        self._classes: dict[int, type] = {}  # id(cls): cls, each class patched once
        self._reasons: Counter[str] = Counter()  # why names were left alone
        self._elsewhere: Counter[str] = Counter()  # the modules defining what is re-exported
        self._hooks: list[_ImportHook] = []
        self._closed = False
        self._lock = threading.RLock()

    @property
    def patched(self) -> tuple[str, ...]:
        """The dotted names now measured, one per name (a re-exported function has several):
        ``('pkg.etl.load', 'pkg.etl.Loader.run', 'pkg.load')``."""
        return tuple(_qualified(owner, name) for owner, name, _ in self._patches.values())

    @property
    def skipped(self) -> tuple[tuple[str, str], ...]:
        """The functions left unmeasured although wanted, one entry per function, as
        ``(dotted name, reason)``: those that read their caller's frame
        (``('attr._make.make_class', "reads its caller's frame (_getframe)")``), and
        those that could not be measured."""
        return tuple((name, why) for _, name, why in self._skipped.values())

    def __repr__(self) -> str:
        functions = len(
            {
                id(getattr(original, "__func__", original))
                for _, _, original in self._patches.values()
            }
        )
        names = len(self._patches)
        skipped = f"; {_count(len(self._skipped), 'function')} skipped" if self._skipped else ""
        return (
            f"<Instrumentation of {self._target!r}: {_count(functions, 'function')}"
            f" patched under {_count(names, 'name')}{skipped}>"
        )

    def uninstrument(self) -> None:
        """Put back the original objects under every patched name, exactly, and cancel
        pending import hooks."""
        with self._lock:
            self._closed = True
            for hook in self._hooks:
                hook.cancel()
            self._hooks.clear()
            for owner, name, original in reversed(self._patches.values()):
                try:
                    setattr(owner, name, original)
                except (AttributeError, TypeError) as error:
                    safe_log(
                        "error",
                        "uninstrument failed",
                        target=_qualified(owner, name),
                        error=repr(error),
                    )
            self._patches.clear()
            self._measured.clear()
            self._originals.clear()

    def _wanted(self, names: tuple[str, ...]) -> bool:
        if self._include is not None and not any(
            fnmatch.fnmatchcase(n, p) for n in names for p in self._include
        ):
            return False
        return not (
            self._exclude is not None
            and any(fnmatch.fnmatchcase(n, p) for n in names for p in self._exclude)
        )

    def _record(self, owner: Any, name: str, original: Any, *, copied: bool = False) -> None:
        """Remember to put ``original`` back under ``owner.name``; a name that an import
        ``copied`` from a patched module may be seen again, a name set anew replaces."""
        key = (id(owner), name)
        if copied and key in self._patches:
            return
        self._patches.pop(key, None)
        self._patches[key] = (owner, name, original)

    def _measured_for(self, function: Any) -> Any:
        """The one measured function for ``function`` (made on first use); None for a
        function skipped."""
        known = self._measured.get(id(function))
        if known is not None:
            return known[1]
        if id(function) in self._skipped:
            return None
        name = f"{function.__module__}.{function.__qualname__}"
        why = inspects_its_caller(function)
        if why is not None:
            self._skip(function, name, why, "frames")
            safe_log("info", "instrument skipped", target=name, reason=why)
            return None
        try:
            measured = decorate(function, tags=self._tags)
        except (AttributeError, TypeError, ValueError) as error:
            self._skip(function, name, f"could not be measured: {error!r}", "failed")
            safe_log("error", "instrument failed", target=name, error=repr(error))
            return None
        self._measured[id(function)] = (function, measured)
        self._originals[id(measured)] = function
        return measured

    def _skip(self, function: Any, name: str, why: str, reason: str) -> None:
        self._skipped[id(function)] = (function, name, why)
        self._reasons[reason] += 1

    def _patch(self, owner: Any, name: str, attribute: Any, function: Any) -> None:
        """Measure ``function`` under ``owner.name``, where ``attribute`` holds it (itself,
        or a staticmethod or classmethod of it): one measured function for every name."""
        if is_measured(attribute):
            self._reasons["measured"] += 1
            return
        qualname = function.__qualname__
        relative = self._scope.qualify(function.__module__, qualname)
        if not self._wanted((function.__name__, qualname, relative)):
            self._reasons["excluded"] += 1
            return
        measured = self._measured_for(function)
        if measured is None:
            return
        try:
            setattr(owner, name, measured if attribute is function else type(attribute)(measured))
        except (AttributeError, TypeError) as error:
            safe_log("error", "instrument failed", target=relative, error=repr(error))
            return
        self._record(owner, name, attribute)

    def _class(self, cls: type) -> None:
        """The public methods of ``cls`` defined in the scope (functions of other modules
        kept on it, such as ``staticmethod(json.dumps)``, are left alone)."""
        with self._lock:
            if id(cls) in self._classes:
                return
            self._classes[id(cls)] = cls
            for name, attribute in list(vars(cls).items()):
                if name.startswith("_"):
                    continue
                function = _function_in(attribute)
                if function is None:
                    continue
                defined_in = getattr(function, "__module__", None)
                if isinstance(defined_in, str) and self._scope.covers(defined_in):
                    self._patch(cls, name, attribute, function)
                else:
                    self._elsewhere[str(defined_in)] += 1

    def _module(self, module: types.ModuleType) -> None:
        with self._lock:
            for name, attribute in list(vars(module).items()):
                try:
                    self._attribute(module, name, attribute)
                except Exception as error:  # noqa: BLE001 - never break the caller's import
                    safe_log(
                        "error",
                        "instrument failed",
                        target=f"{module.__name__}.{name}",
                        error=repr(error),
                    )

    def _attribute(self, module: types.ModuleType, name: str, attribute: Any) -> None:
        original = self._originals.get(id(attribute))
        if original is not None:  # an import copied a measured object from a patched module
            self._record(module, name, original, copied=True)
            return
        if name.startswith("_"):
            return
        if inspect.isclass(attribute):
            if self._scope.covers(attribute.__module__):
                self._class(attribute)
            else:
                self._elsewhere[attribute.__module__] += 1
        elif inspect.isfunction(attribute) or is_measured(attribute):
            defined_in = getattr(attribute, "__module__", None)
            if not isinstance(defined_in, str):
                return
            if self._scope.covers(defined_in):
                self._patch(module, name, attribute, attribute)
            else:
                self._elsewhere[defined_in] += 1

    def _package(self, package: types.ModuleType) -> bool:
        """The package, and its submodules imported now and later; True while the
        package's own import is in progress."""
        self._watch(once=False)
        importing = self._follow(package)
        prefix = self._scope.name + "."
        for name, module in sys.modules.copy().items():
            if name.startswith(prefix) and isinstance(module, types.ModuleType):
                self._follow(module)
        return importing

    def _follow(self, module: types.ModuleType) -> bool:
        """Instrument ``module`` now and, while its import is in progress (its code
        has not all run yet), again when that import ends; True in that case."""
        importing = _importing(module) and _when_imported(module, self._imported)
        self._module(module)
        return importing

    def _watch(self, once: bool) -> None:
        """Instrument the target (and, for a package, its submodules) when imported."""
        with self._lock:
            self._hooks.append(_ImportHook(self._scope, self, once))

    def _imported(self, module: types.ModuleType) -> None:
        """Called right after ``module`` ran: by the import hook, or at the end of an
        import that was in progress at ``instrument()``."""
        with self._lock:
            if self._closed:
                return
            self._module(module)
            if module.__name__ != self._scope.name:
                return
            if self._scope.recursive and hasattr(module, "__path__"):
                return  # its submodules may come at any time: no warning
            for hook in self._hooks:  # a plain module: no submodules to wait for
                hook.cancel()
        self._warn_if_idle()

    def _warn_if_idle(self) -> None:
        if not self._patches:
            reason = self._why()
            safe_log("warning", "instrument patched nothing", target=self._target, reason=reason)

    def _why(self) -> str:
        reasons = self._reasons
        if not reasons:
            if self._elsewhere:
                [(module, _)] = self._elsewhere.most_common(1)
                return f"its functions are defined in another module, such as {module!r}"
            return "no public functions or methods are defined there"
        texts = {
            "excluded": "excluded by include/exclude",
            "measured": "already measured",
            "frames": "skipped because they inspect their caller's frame",
            "failed": "could not be measured (see the errors logged)",
        }
        return "its functions are " + " or ".join(
            text for key, text in texts.items() if reasons[key]
        )


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _qualified(owner: Any, name: str) -> str:
    prefix = (
        owner.__name__
        if isinstance(owner, types.ModuleType)
        else f"{owner.__module__}.{owner.__qualname__}"
    )
    return f"{prefix}.{name}"


def _importing(module: types.ModuleType) -> bool:
    """Whether the import of ``module`` is in progress: importlib sets
    ``__spec__._initializing`` while the module's code runs."""
    return getattr(getattr(module, "__spec__", None), "_initializing", False) is True


#: The attribute of a module spec that holds the calls due when its import ends.
_WHEN_IMPORTED = "_multimeter_when_imported"


class _Hearing:
    """Held while a module spec's class is changed to hear its import end, or back
    (a part of the process's state: a forked child has its own lock)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()


def _hearing() -> threading.Lock:
    return _process.current().part(_Hearing).lock


def _when_imported(module: types.ModuleType, callback: Any) -> bool:
    """Call ``callback(module)`` in the importing thread when the import of ``module``,
    in progress now, ends; False where it has ended or cannot be heard.

    importlib sets ``module.__spec__._initializing`` to False once the module's code
    has run (or failed); until then the spec's class is a subclass that hears it and
    puts the class back.
    """
    spec = module.__spec__
    if not hasattr(spec, "__dict__"):
        return False
    with _hearing():
        calls = vars(spec).get(_WHEN_IMPORTED)
        if calls is None:
            spec_class: type = type(spec)
            listener = _listener(spec_class)
            calls = vars(spec)[_WHEN_IMPORTED] = []
            try:
                spec.__class__ = listener
            except TypeError:  # a spec class of another layout
                del vars(spec)[_WHEN_IMPORTED]
                return False
        calls.append(functools.partial(callback, module))
    if _importing(module):
        return True
    with _hearing():  # the import ended meanwhile, perhaps unheard
        vars(spec).pop(_WHEN_IMPORTED, None)
        if isinstance(spec, _Listener):
            spec.__class__ = spec._spec_class
    return False


class _Listener:
    """Mixed into a module spec's class: hears ``_initializing`` set to False."""

    _spec_class: type  # the class the spec had, and gets back

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if name == "_initializing" and not value:
            with _hearing():
                calls = vars(self).pop(_WHEN_IMPORTED, [])
                self.__class__ = self._spec_class
            for call in calls:
                try:
                    call()
                except Exception as error:  # noqa: BLE001 - never break the caller's import
                    target = getattr(self, "name", None)
                    safe_log("error", "instrument failed", target=target, error=repr(error))


@functools.cache  # one per spec class
def _listener(base: type) -> type:
    """The subclass of a spec class ``base`` that hears the end of an import."""
    namespace = {"__qualname__": base.__qualname__, "_spec_class": base}
    return type(base.__name__, (_Listener, base), namespace)


class _ImportHook:
    """Instruments the modules of a scope right after each is first imported."""

    def __init__(self, scope: _Scope, instrumentation: Instrumentation, once: bool) -> None:
        self._scope = scope
        self._instrumentation = instrumentation
        self._once = once
        self._active = True
        self._busy = threading.local()  # the names this thread is looking up now
        sys.meta_path.insert(0, self)

    def cancel(self) -> None:
        self._active = False
        if self in sys.meta_path:
            sys.meta_path.remove(self)

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> Any:
        """The meta path finder protocol: a spec whose loader instruments the module."""
        if not self._active or not self._scope.covers(fullname):
            return None
        busy: set[str] = self._busy.__dict__.setdefault("names", set())
        if fullname in busy:  # a finder further on asked the whole meta path again
            return None
        finders = sys.meta_path
        later = finders[finders.index(self) + 1 :] if self in finders else []
        if self._once:
            self.cancel()  # one module, once
        busy.add(fullname)
        try:
            spec = _find_spec(later, fullname, path, target)
        finally:
            busy.discard(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _InstrumentingLoader(spec.loader, self._instrumentation)
        return spec


def _find_spec(
    finders: Sequence[Any],
    fullname: str,
    path: Sequence[str] | None,
    target: types.ModuleType | None,
) -> Any:
    for finder in finders:
        find_spec = getattr(finder, "find_spec", None)
        if find_spec is not None:
            spec = find_spec(fullname, path, target)
            if spec is not None:
                return spec
    return None


class _InstrumentingLoader:
    """The loader protocol: runs the module with its own loader, then instruments it."""

    def __init__(self, loader: Any, instrumentation: Instrumentation) -> None:
        self._loader = loader
        self._instrumentation = instrumentation

    def __getattr__(self, name: str) -> Any:  # the rest of the loader's interface
        loader = self.__dict__.get("_loader")
        if loader is None:
            raise AttributeError(name)
        return getattr(loader, name)

    def create_module(self, spec: Any) -> types.ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        spec = getattr(module, "__spec__", None)
        if spec is not None and spec.loader is self:  # the module keeps its real loader
            spec.loader = self._loader
        if getattr(module, "__loader__", None) is self:
            module.__loader__ = self._loader
        self._loader.exec_module(module)
        name = module.__name__
        try:
            self._instrumentation._imported(sys.modules.get(name, module))
        except Exception as error:  # noqa: BLE001 - never break the caller's import
            safe_log("error", "instrument failed", target=name, error=repr(error))


def instrument(
    target: Any,
    *,
    include: str | Iterable[str] | None = None,
    exclude: str | Iterable[str] | None = None,
    tags: Mapping[str, Any] | None = None,
    recursive: bool = True,
) -> Any:
    """Measure every call of a function, a class's methods or a module's functions.

    - a function: returns the measured function (``uninstrument()`` on it
      returns the original), measured even if it inspects its caller's frame
      (you asked for it): the frame it then sees is multimeter's wrapper, which
      carries the function's own module, file and line;
    - a class: its public methods (plain, class and static) are replaced in place;
    - a module object, or a dotted module name: its public functions and the
      public methods of the public classes defined in it are replaced in place;
      a module not imported yet is instrumented when it is first imported;
    - a package (a module with ``__path__``), with ``recursive=True``: the same for
      the package and every submodule, private ones included, imported now or
      later (none is imported for it). A function defined anywhere in the package
      is measured under every public name that reaches it in those modules
      (``more_itertools.chunked`` and ``more_itertools.more.chunked`` become the
      same measured object); a class is patched once, under whatever names.
      Functions and classes that the package imports from elsewhere are left
      alone. ``recursive=False`` instruments the package's ``__init__`` alone.

    Only functions defined in the module or package (by their ``__module__``) are
    measured, also among a class's attributes (``staticmethod(json.dumps)`` kept on
    a class is left alone). One function is one measured object under all its
    names, a ``staticmethod`` or ``classmethod`` of it included
    (``class Parser: parse = staticmethod(parse)``), so it pickles by its name.
    Functions whose own code inspects their caller's frame (see
    :func:`inspects_its_caller`: ``namedtuple()``, ``attr.make_class()``, a
    ``warnings.warn(..., stacklevel=2)``) are left unmeasured, so that they still
    see their real caller; the handle's ``skipped`` lists them, and each is logged
    (``instrument skipped``, at info level).

    ``include``/``exclude`` are glob patterns matched against a function's
    ``__name__``, its ``__qualname__`` (``Loader.run``) and its qualified name
    relative to the package: the ``__qualname__`` prefixed, in a submodule, with
    the submodule's path (``more.chunked``, ``_impl.Loader.run``). Patterns decide
    per function, so a function is measured under all its names or none.

    A module whose import is in progress (a package's ``__init__`` that calls
    ``instrument(__name__)``, another thread importing a submodule) is
    instrumented now and again, in the importing thread, when its import ends:
    what it defines or imports after this call is measured too.

    Instrumenting twice measures each call once. Returns a handle: its
    ``patched`` lists every name now measured, its ``skipped`` the functions left
    unmeasured and why, its ``repr()`` counts functions, names and skipped
    functions, and its ``uninstrument()`` puts back the original objects under
    every name exactly. When nothing gets patched, a warning is logged with the
    target and why; for a module not imported yet (or still importing), when its
    import ends; for a package not imported yet (or still importing), never: its
    submodules may come at any time (see ``patched``). Code that imported a
    function by name before ``instrument()`` keeps calling the original.

    Raises:
        ValueError: for a target that is none of these, or bad patterns or tags.
    """
    include_patterns = _patterns(include, "include")
    exclude_patterns = _patterns(exclude, "exclude")
    tags = normalize_tags(tags)  # bad tags raise here, not once per patched function
    if inspect.isfunction(target) or inspect.ismethod(target):
        return target if is_measured(target) else decorate(target, tags=tags)
    if is_measured(target):
        return target

    def start(name: str, scope: _Scope) -> Instrumentation:
        return Instrumentation(name, scope, include_patterns, exclude_patterns, tags)

    if isinstance(target, str) and target:
        module = sys.modules.get(target)
        if module is None:
            instrumentation = start(target, _Scope(target, recursive))
            instrumentation._watch(once=not recursive)
            return instrumentation
        target = module
    if inspect.isclass(target):
        instrumentation = start(target.__qualname__, _Scope(target.__module__, False))
        instrumentation._class(target)
    elif isinstance(target, types.ModuleType):
        package = recursive and hasattr(target, "__path__")
        instrumentation = start(target.__name__, _Scope(target.__name__, package))
        importing = instrumentation._package(target) if package else instrumentation._follow(target)
        if importing:  # the rest comes, and the warning if any, when the import ends
            return instrumentation
    else:
        raise ValueError(
            f"instrument() takes a function, a class, a module or a dotted module name,"
            f" got {target!r}"
        )
    instrumentation._warn_if_idle()
    return instrumentation
