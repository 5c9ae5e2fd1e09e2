"""Running a Python script or module in this process as ``__main__``, as ``python`` would.

``python script.py`` and ``python -m package.module`` each set ``sys.argv``,
``sys.path[0]`` and a fresh ``__main__`` module; :func:`script` and :func:`module`
prepare the same (the way ``coverage run`` and ``python -m cProfile`` do), so
that the program sees what it sees under plain Python, and functions defined in
it pickle for ``multiprocessing`` as they do there (``__main__`` keeps its
``__file__`` or ``__spec__``). :meth:`Program.run` runs it and turns how it
ended into an exit status the way the interpreter does.
"""

from __future__ import annotations

import builtins
import contextlib
import importlib.machinery
import importlib.util
import os
import sys
import threading
import types
import zipfile
from dataclasses import dataclass
from typing import Any

from multimeter._cli._common import CommandError


@dataclass(frozen=True)
class Ending:
    """How the program ended: its exit status and, if it raised, the exception."""

    status: int
    #: The exception that escaped the program (not ``SystemExit``), else ``None``.
    error: BaseException | None = None


@dataclass(frozen=True)
class Program:
    """A script or module ready to run as ``__main__``."""

    #: What to call the run: the script's stem or the module's name.
    name: str
    #: The script's absolute path, or the module's name (meta data ``command``).
    target: str
    #: The compiled program, or the ``SyntaxError`` it raises when run.
    code: types.CodeType | BaseException
    argv: tuple[str, ...]
    path0: str
    globals: dict[str, Any]

    def run(self) -> Ending:
        """Run the program in a new ``__main__`` module; how it ended.

        ``sys.exit(n)`` ends it with status ``n``; ``sys.exit("message")`` prints
        the message on stderr, status 1; an exception is printed through
        ``sys.excepthook`` (a traceback as Python prints it, without
        multimeter's frames), status 1. Like the interpreter, it then waits for
        the program's non-daemon threads.
        """
        main = types.ModuleType("__main__")
        main.__dict__.update(self.globals)
        sys.modules["__main__"] = main
        sys.argv[:] = self.argv
        if sys.path:
            sys.path[0] = self.path0
        else:  # pragma: no cover - an empty sys.path
            sys.path.append(self.path0)
        if isinstance(self.code, BaseException):  # a syntax error: no traceback in Python
            print_exception(self.code.with_traceback(None))
            return Ending(1, self.code)
        try:
            exec(self.code, main.__dict__)
        except SystemExit as stop:
            ending = Ending(exit_status(stop))
        except BaseException as error:  # noqa: BLE001 - the program's, reported as Python does
            print_exception(error)
            ending = Ending(130 if isinstance(error, KeyboardInterrupt) else 1, error)
        else:
            ending = Ending(0)
        return Ending(_join_threads(ending.status), ending.error)


def _join_threads(status: int) -> int:
    """Wait for the program's non-daemon threads, as the interpreter does at its end."""
    current = threading.current_thread()
    while True:
        waiting = [
            t for t in threading.enumerate() if t is not current and not t.daemon and t.is_alive()
        ]
        if not waiting:
            return status
        try:
            for thread in waiting:
                thread.join()
        except KeyboardInterrupt:
            return 130 if status == 0 else status


def exit_status(stop: SystemExit) -> int:
    """The status Python exits with for ``stop``; prints a non-integer code as Python does."""
    code = stop.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    with contextlib.suppress(Exception):  # a broken stderr: the status still counts
        print(code, file=sys.stderr)
    return 1


def print_exception(error: BaseException) -> None:
    """Print ``error`` through ``sys.excepthook`` without the frames of multimeter's
    own code that ran the program (``python script.py`` shows none)."""
    traceback = error.__traceback__
    if traceback is not None and traceback.tb_frame.f_code.co_filename == __file__:
        traceback = traceback.tb_next  # Program.run's frame
    error.__traceback__ = traceback  # the interpreter's hook prints the error's own
    try:
        sys.excepthook(type(error), error, traceback)
    except Exception:  # noqa: BLE001 - a broken hook: fall back to the default printer
        sys.__excepthook__(type(error), error, traceback)


def script(path: str, arguments: list[str]) -> Program:
    """A script file run as ``python PATH ARGUMENTS...`` would run it.

    Raises:
        CommandError: the file does not exist or cannot be read (status 2, as
            ``python`` uses). A syntax error is not raised: the program raises
            it when run, and it is printed as Python prints it.
    """
    # As Python makes it: joined to the current directory, not normalised ("../").
    absolute = path if os.path.isabs(path) else os.path.join(os.getcwd(), path)
    if os.path.isdir(absolute) or zipfile.is_zipfile(absolute):
        return _main_of(path, absolute, arguments)
    try:
        with open(absolute, "rb") as stream:
            source = stream.read()
    except OSError as error:
        raise CommandError(f"can't open file {path!r}: {error.strerror}", 2) from None
    code: types.CodeType | BaseException
    try:
        code = compile(source, absolute, "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as error:  # raised when the program runs, as in Python
        code = error
    stem = os.path.splitext(os.path.basename(absolute))[0] or "script"
    return Program(
        name=stem,
        target=absolute,
        code=code,
        argv=(path, *arguments),
        # Python resolves symbolic links for sys.path[0], not for __file__.
        path0=os.path.dirname(os.path.realpath(absolute)),
        globals={
            "__name__": "__main__",
            "__file__": absolute,
            "__builtins__": builtins,  # in __main__, the module (elsewhere its dict)
            "__loader__": importlib.machinery.SourceFileLoader("__main__", absolute),
            "__spec__": None,
            "__package__": None,
            "__cached__": None,
        },
    )


def _main_of(path: str, absolute: str, arguments: list[str]) -> Program:
    """A directory or zip file (a ``.pyz`` application) run as ``python PATH`` runs
    it: its ``__main__`` module, with ``PATH`` first on ``sys.path``.

    Raises:
        CommandError: it has no ``__main__`` module (status 1, as ``python``).
    """
    spec = importlib.machinery.PathFinder.find_spec("__main__", [absolute])
    loader = spec.loader if spec is not None else None
    try:
        code = loader.get_code("__main__") if loader is not None else None  # type: ignore[attr-defined]
    except SyntaxError as error:  # raised when the program runs, as in Python
        code = error
    except (ImportError, OSError) as error:
        raise CommandError(f"can't read '__main__' module in {path!r}: {error}", 1) from None
    if spec is None or code is None:
        raise CommandError(f"can't find '__main__' module in {path!r}", 1)
    stem = os.path.splitext(os.path.basename(os.path.normpath(absolute)))[0] or "script"
    return Program(
        name=stem,
        target=absolute,
        code=code,
        argv=(path, *arguments),
        path0=absolute,
        globals=_main_globals(spec, package=""),
    )


def _main_globals(spec: Any, package: str | None) -> dict[str, Any]:
    """The globals of a new ``__main__`` run from ``spec``, as Python sets them."""
    return {
        "__name__": "__main__",
        "__file__": spec.origin,
        "__builtins__": builtins,  # in __main__, the module (elsewhere its dict)
        "__loader__": spec.loader,
        "__spec__": spec,
        "__package__": package,
        "__cached__": spec.cached,
    }


def module(name: str, arguments: list[str]) -> Program:
    """A module run as ``python -m NAME ARGUMENTS...`` would run it (a package runs
    its ``__main__``; ``sys.path[0]`` is the current directory).

    Raises:
        CommandError: no such module, or it cannot be run (status 1, as ``python -m``).
    """
    path0 = os.getcwd()
    if sys.path:
        sys.path[0] = path0  # where python -m looks first
    else:  # pragma: no cover
        sys.path.append(path0)
    spec = _find(name)
    if spec.submodule_search_locations is not None:
        if name == "__main__" or name.endswith(".__main__"):
            raise CommandError("cannot use package as __main__ module", 1)
        main_name = f"{name}.__main__"
        try:
            spec = _find(main_name)
        except CommandError:
            raise CommandError(
                f"no module named {main_name}; {name!r} is a package and cannot be"
                " directly executed",
                1,
            ) from None
        name = main_name
    loader = spec.loader
    code: types.CodeType | BaseException | None
    try:
        code = loader.get_code(name) if loader is not None else None
    except SyntaxError as error:  # raised when the program runs, as in Python
        code = error
    except ImportError as error:
        raise CommandError(f"cannot read module {name}: {error}", 1) from None
    if code is None:
        raise CommandError(f"no code object available for {name}", 1)
    origin = spec.origin or name
    display = name[: -len(".__main__")] if name.endswith(".__main__") else name
    return Program(
        name=display,
        target=display,
        code=code,
        argv=(origin, *arguments),
        path0=path0,
        globals=_main_globals(spec, package=spec.parent),
    )


def _find(name: str) -> Any:
    if name.startswith("."):
        raise CommandError(f"relative module names not supported: {name}", 1)
    try:
        spec = importlib.util.find_spec(name)
    except ImportError as error:
        if isinstance(error, ModuleNotFoundError) and error.name and name.startswith(error.name):
            raise CommandError(f"no module named {name}", 1) from None
        raise CommandError(
            f"error while finding module specification for {name!r}"
            f" ({type(error).__name__}: {error})",
            1,
        ) from None
    except Exception as error:  # noqa: BLE001 - a parent package that fails to import
        raise CommandError(
            f"error while finding module specification for {name!r}"
            f" ({type(error).__name__}: {error})",
            1,
        ) from None
    if spec is None:
        raise CommandError(f"no module named {name}", 1)
    return spec
