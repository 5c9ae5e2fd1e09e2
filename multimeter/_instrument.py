"""``instrument()``: measure the functions of a module or class without editing them."""

from __future__ import annotations

import fnmatch
import inspect
import sys
import threading
import types
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from multimeter._log import logger
from multimeter._measured import decorate, is_measured
from multimeter._tags import normalize_tags

_Patch = tuple[Any, str, Any]  # (owner, attribute name, original object)


def _patterns(value: str | Iterable[str] | None, argument: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)
    patterns = tuple(value) if isinstance(value, Iterable) else (value,)
    if not all(isinstance(p, str) for p in patterns):
        raise ValueError(f"{argument} must be a glob pattern or a list of them, got {value!r}")
    return patterns


class Instrumentation:
    """What :func:`instrument` did; :meth:`uninstrument` undoes it."""

    def __init__(
        self,
        include: tuple[str, ...] | None,
        exclude: tuple[str, ...] | None,
        tags: Mapping[str, Any] | None,
    ) -> None:
        self._include = include
        self._exclude = exclude
        self._tags = tags
        self._patches: list[_Patch] = []
        self._hooks: list[_ImportHook] = []
        self._lock = threading.Lock()

    @property
    def patched(self) -> tuple[str, ...]:
        """The qualified names of what was replaced, e.g. ``('etl.load', 'etl.Loader.run')``."""
        return tuple(_qualified(owner, name) for owner, name, _ in self._patches)

    def uninstrument(self) -> None:
        """Put back the original objects, exactly, and cancel pending import hooks."""
        with self._lock:
            for hook in self._hooks:
                hook.cancel()
            self._hooks.clear()
            for owner, name, original in reversed(self._patches):
                try:
                    setattr(owner, name, original)
                except (AttributeError, TypeError) as error:
                    logger.error(
                        "uninstrument failed", target=_qualified(owner, name), error=repr(error)
                    )
            self._patches.clear()

    def _wanted(self, name: str, qualified: str) -> bool:
        names = (name, qualified)
        if self._include is not None and not any(
            fnmatch.fnmatchcase(n, p) for n in names for p in self._include
        ):
            return False
        return not (
            self._exclude is not None
            and any(fnmatch.fnmatchcase(n, p) for n in names for p in self._exclude)
        )

    def _patch(self, owner: Any, name: str, original: Any, qualified: str) -> None:
        if is_measured(original) or not self._wanted(name, qualified):
            return
        try:
            measured = decorate(original, tags=self._tags)
            setattr(owner, name, measured)
        except (AttributeError, TypeError, ValueError) as error:
            logger.error("instrument failed", target=qualified, error=repr(error))
            return
        with self._lock:
            self._patches.append((owner, name, original))

    def _class(self, cls: type) -> None:
        for name, attribute in list(vars(cls).items()):
            if name.startswith("_"):
                continue
            function = getattr(attribute, "__func__", attribute)
            if inspect.isfunction(function):
                self._patch(cls, name, attribute, f"{cls.__qualname__}.{name}")

    def _module(self, module: types.ModuleType) -> None:
        for name, attribute in list(vars(module).items()):
            if name.startswith("_") or getattr(attribute, "__module__", None) != module.__name__:
                continue
            if inspect.isclass(attribute):
                self._class(attribute)
            elif inspect.isfunction(attribute) or is_measured(attribute):
                self._patch(module, name, attribute, name)


def _qualified(owner: Any, name: str) -> str:
    prefix = (
        owner.__name__
        if isinstance(owner, types.ModuleType)
        else f"{owner.__module__}.{owner.__qualname__}"
    )
    return f"{prefix}.{name}"


class _ImportHook:
    """Instruments a module right after it is first imported."""

    def __init__(self, name: str, instrumentation: Instrumentation) -> None:
        self._name = name
        self._instrumentation = instrumentation
        self._active = True
        sys.meta_path.insert(0, self)

    def cancel(self) -> None:
        self._active = False
        if self in sys.meta_path:
            sys.meta_path.remove(self)

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> Any:
        """The meta path finder protocol: a spec whose loader instruments the module."""
        import importlib.util

        if fullname != self._name or not self._active:
            return None
        self.cancel()  # one module, once
        spec = importlib.util.find_spec(fullname)  # the other finders
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        loader = spec.loader
        instrumentation = self._instrumentation
        original_exec = loader.exec_module

        class _InstrumentingLoader:  # the loader protocol: runs the module, then instruments it
            def create_module(self, spec: Any) -> types.ModuleType | None:
                return loader.create_module(spec)

            def exec_module(self, module: types.ModuleType) -> None:
                original_exec(module)
                instrumentation._module(module)

        spec.loader = _InstrumentingLoader()  # type: ignore[assignment]  # the protocol, not the ABC
        return spec


def instrument(
    target: Any,
    *,
    include: str | Iterable[str] | None = None,
    exclude: str | Iterable[str] | None = None,
    tags: Mapping[str, Any] | None = None,
) -> Any:
    """Measure every call of a function, a class's methods or a module's functions.

    - a function: returns the measured function (``uninstrument()`` on it
      returns the original);
    - a class: its public methods (plain, class and static) are replaced in place;
    - a module object, or a dotted module name: its public functions and the
      public methods of the public classes defined in it are replaced in place;
      a module not imported yet is instrumented when it is first imported.

    ``include``/``exclude`` are glob patterns matched against the name and the
    qualified name (``load*``, ``Loader.*``). Instrumenting twice measures each
    call once. Returns a handle whose ``uninstrument()`` puts back the original
    objects exactly. Code that imported a function by name before
    ``instrument()`` keeps calling the original.

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
    instrumentation = Instrumentation(include_patterns, exclude_patterns, tags)
    if inspect.isclass(target):
        instrumentation._class(target)
    elif isinstance(target, types.ModuleType):
        instrumentation._module(target)
    elif isinstance(target, str) and target:
        module = sys.modules.get(target)
        if module is not None:
            instrumentation._module(module)
        else:
            instrumentation._hooks.append(_ImportHook(target, instrumentation))
    else:
        raise ValueError(
            f"instrument() takes a function, a class, a module or a dotted module name,"
            f" got {target!r}"
        )
    return instrumentation
