"""``multimeter run``: run a Python script, a module or any command as one measured run.

- ``multimeter run [options] script.py [args...]`` and ``-m package.module
  [args...]`` run the program in this process as ``__main__`` (see
  :mod:`multimeter._cli._program`); its ``@measured`` calls are stored as usual
  and also become marks on the run's result (``name:enter`` / ``name:exit``).
- ``multimeter run [options] -- command [args...]`` runs any program as a child
  process, measured from outside as a process tree (see :mod:`multimeter._cli._child`).

The options become the ``MULTIMETER_*`` variables of the program (and of every
process it starts), so its own measurements go where the run's result goes,
and all of them carry one ``run`` meta datum. Everything multimeter prints goes
to stderr; the exit status is the program's.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import shlex
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from multimeter import _config, _env, _lifecycle, _measured, _meta, _process
from multimeter._cli import _child, _program, _status
from multimeter._cli._common import CommandError, add_debug, logs_to_stderr
from multimeter._cli._run_result import MAX_MARKS, Located, put_marks_on, summary_lines
from multimeter._lifecycle import flush_at_exit
from multimeter._marks import MarkSink
from multimeter._reentry import OwnThread
from multimeter._signal_watch import STORING_SIGNALS, storing_handler
from multimeter.measurement import Measurement
from multimeter.multimeter import Multimeter, Snapshot
from multimeter.probe import Probe
from multimeter.storages.file import FileStorage

#: Probes that measure the interpreter they run in: with ``-- COMMAND`` they would
#: measure multimeter, not the command.
_INTERPRETER_PROBES = ("tracemalloc", "gc")
#: The probes of a command's run besides its process tree.
_COMMAND_PROBES = ("resource",)

USAGE = "multimeter run [options] (SCRIPT | -m MODULE | -- COMMAND) [ARGS...]"


def add_parser(commands: Any, name: str) -> None:
    """Declare ``run``."""
    parser = commands.add_parser(
        name,
        usage=USAGE,
        help="run a Python script, a module or any command as one measured run",
        description=(
            "Runs SCRIPT (or -m MODULE) in this process as __main__, as python would,"
            " or COMMAND as a child process measured as a process tree; stores the run"
            " as one result and prints a summary on stderr. The exit status is the"
            " program's (128+n when signal n killed it)."
        ),
    )
    parser.add_argument(
        "-m",
        dest="module",
        nargs=argparse.REMAINDER,  # what follows the module is the module's, options too
        metavar="MODULE",
        help="run a module as python -m does",
    )
    parser.add_argument(
        "--tag",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a tag of the run and of everything it measures (repeatable)",
    )
    parser.add_argument(
        "--cycle-time", metavar="SECONDS", help="seconds between points (MULTIMETER_CYCLE_TIME)"
    )
    parser.add_argument(
        "--probes",
        metavar="NAMES",
        help="comma-separated probe names (MULTIMETER_PROBES); with -- COMMAND: resource,"
        " system, nvml besides the process tree",
    )
    parser.add_argument("--dir", metavar="DIRECTORY", help="result directory (MULTIMETER_DIR)")
    parser.add_argument(
        "--format", metavar="FORMAT", help="jsonl, json or line (MULTIMETER_FORMAT)"
    )
    parser.add_argument(
        "--storage", metavar="STORAGE", help="file, log, influxdb or none (MULTIMETER_STORAGE)"
    )
    parser.add_argument(
        "--no-status",
        action="store_true",
        help="no live status line on the terminal (for full-screen programs)",
    )
    parser.add_argument("program", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    add_debug(parser)
    parser.set_defaults(handler=main)


def main(arguments: argparse.Namespace) -> int:
    """Run the program as one measured run; returns its exit status."""
    words = list(arguments.program)
    if arguments.module is not None:
        if not arguments.module:
            raise CommandError(f"-m needs a module name; usage: {USAGE}")
        mode, target, rest = "module", arguments.module[0], arguments.module[1:]
    elif words and words[0] == "--":
        if len(words) < 2:
            raise CommandError(f"no command after --; usage: {USAGE}")
        mode, target, rest = "command", words[1], words[2:]
    elif words:
        mode, target, rest = "script", words[0], words[1:]
    else:
        raise CommandError(f"nothing to run; usage: {USAGE}")
    command_probes = _command_probes(arguments.probes) if mode == "command" else ()
    _set_environment(arguments, export_probes=mode != "command")
    if mode == "command":
        return _run_command([target, *rest], command_probes, not arguments.no_status)
    program = _program.script(target, rest) if mode == "script" else _program.module(target, rest)
    return _run_program(program, mode, not arguments.no_status)


# -- settings ----------------------------------------------------------------------------


def _set_environment(arguments: argparse.Namespace, *, export_probes: bool) -> None:
    """Check the options and make them the program's ``MULTIMETER_*`` variables;
    give the run its ``MULTIMETER_RUN`` unless the user chose one.

    Raises:
        CommandError: naming the bad option and the allowed values.
    """
    try:
        settings = _settings(arguments, export_probes=export_probes)
    except ValueError as error:
        raise CommandError(str(error)) from None
    os.environ.update(settings)
    if _env.get(_env.RUN) is None:
        os.environ[_env.RUN] = _meta.new_run_id()
    _process.current().meta = None  # made again with the run's identifier


def _settings(arguments: argparse.Namespace, *, export_probes: bool) -> dict[str, str]:
    settings: dict[str, str] = {}
    if arguments.cycle_time is not None:
        _env.parse_cycle_time("--cycle-time", arguments.cycle_time)
        settings[_env.CYCLE_TIME] = arguments.cycle_time.strip()
    if arguments.probes is not None and export_probes:
        names = _env.parse_names("--probes", arguments.probes, tuple(_config.PROBES))
        settings[_env.PROBES] = ",".join(names)
    if arguments.dir is not None and not arguments.dir.strip():
        raise ValueError("--dir='' is not valid; allowed: a directory path")
    # Absolute: a program that changes its directory, and the processes it starts
    # elsewhere (``cd sub && ...``, ``make -C sub``), store where the run does.
    directory = arguments.dir or _env.get(_env.DIR) or _env.DEFAULT_DIR
    settings[_env.DIR] = os.path.abspath(directory)
    spool = _env.get(_env.SPOOL_DIR)
    if spool:
        settings[_env.SPOOL_DIR] = os.path.abspath(spool)
    if arguments.format is not None:
        settings[_env.FORMAT] = _env.parse_choice("--format", arguments.format, _env.FORMAT_CHOICES)
    if arguments.storage is not None:
        settings[_env.STORAGE] = _env.parse_choice(
            "--storage", arguments.storage, _env.STORAGE_CHOICES
        )
    if arguments.tag:
        text = _env.get(_env.TAGS)
        tags = _env.parse_tags(_env.TAGS, text) if text else {}
        for item in arguments.tag:
            key, separator, value = item.partition("=")
            if not separator or not key.strip() or "," in item:
                raise ValueError(f"--tag {item!r} is not valid; allowed: KEY=VALUE without a comma")
            tags[key.strip()] = value.strip()
        settings[_env.TAGS] = ",".join(f"{key}={value}" for key, value in tags.items())
    return settings


def _configuration(probes: list[Probe] | None = None) -> Multimeter:
    """The run's settings from the environment (as ``configure()`` reads it).

    Raises:
        CommandError: a bad ``MULTIMETER_*`` value, naming it.
    """
    try:
        return _config.build(probes=probes)
    except (ValueError, ImportError) as error:
        raise CommandError(str(error)) from None


def _command_probes(text: str | None) -> tuple[str, ...]:
    """The probes of a command's run besides its tree (``--probes``; not the
    environment, which is the program's)."""
    if text is None:
        return _COMMAND_PROBES
    try:
        names = _env.parse_names("--probes", text, tuple(_config.PROBES))
    except ValueError as error:
        raise CommandError(str(error)) from None
    refused = [name for name in names if name in _INTERPRETER_PROBES]
    if refused:
        raise CommandError(
            f"--probes {','.join(refused)} measures the Python interpreter it runs in, which"
            " with -- COMMAND is multimeter's; allowed: resource, psutil, system, nvml"
        )
    return tuple(dict.fromkeys(name for name in names if name != "psutil"))


def _identifier(name: str, storage: Located) -> str:
    """``<name>-<run>``: the script, module or command, then the run identifier; with
    ``-2``, ``-3``... where a file of that name exists (``MULTIMETER_RUN`` chosen
    again: a CI job run twice), so that no storage has to warn about it."""
    base = _measured.safe_prefix(f"{name}-{_meta.run_id()}")
    inner = getattr(storage.inner, "inner", storage.inner)
    if not isinstance(inner, FileStorage):
        return base
    identifier, number = base, 1
    with contextlib.suppress(OSError, ValueError):
        while inner.path_for(identifier).exists() and number < 1000:
            number += 1
            identifier = f"{base}-{number}"
    return identifier


# -- a Python program in this process ----------------------------------------------------


def _run_program(program: _program.Program, mode: str, status_wanted: bool) -> int:
    meter = _configuration()
    config = meter.snapshot
    located = Located(meter.storage)
    meter.set_storage(located)
    measurement = meter.measure(_identifier(program.name, located))
    marks = MarkSink(limit=MAX_MARKS // 2)  # calls, each with two marks
    pid = os.getpid()
    run = _Run(measurement, located, marks, program.name, tree=False)
    run.meta.update(mode=mode, command=program.target)
    sigterm = _SigtermHandler(run, config) if config.handle_sigterm else None
    measurement.start()
    _process.current().marks = marks
    if sigterm is not None:
        sigterm.install()
    status = _status.StatusLine(pid, enabled=status_wanted and _status.wanted())
    run.status = status
    try:
        with status:
            ending = program.run()
    finally:
        _process.current().marks = None
    if os.getpid() != pid:  # a child the program forked ends here: the parent reports
        return ending.status
    with contextlib.suppress(Exception):
        sys.stdout.flush()  # the program's output first, then the summary
    # From here on multimeter is in charge (without the expected news that the
    # measured process has ended).
    logs_to_stderr(without="has ended")
    with _sigterm_deferred(config.exit_timeout if sigterm is not None else None):
        run.finish(ending.status, ending.error)
    if isinstance(ending.error, KeyboardInterrupt):
        _die_of_sigint()
    return ending.status


def _die_of_sigint() -> None:
    """End as Python ends after an unhandled ``KeyboardInterrupt``: the exit handlers
    run, then the process kills itself with SIGINT, so that a calling shell sees a
    death by Ctrl-C (a loop in a shell script stops) and not a plain status 130."""
    with contextlib.suppress(BaseException):
        atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    with contextlib.suppress(ValueError, OSError):
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)


@contextlib.contextmanager
def _sigterm_deferred(timeout: float | None) -> Iterator[None]:
    """The program has ended and its run is being stored: a SIGTERM now waits for
    that (then what is pending is flushed and the process dies of it). With
    ``timeout`` ``None`` (``MULTIMETER_HANDLE_SIGTERM=0``) SIGTERM kills at once."""
    if timeout is None:
        yield
        return
    received: list[int] = []
    try:
        signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    except (ValueError, OSError):
        yield
        return
    try:
        yield
    finally:
        with contextlib.suppress(ValueError, OSError):
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if received:
            flush_at_exit(timeout)
            os.kill(os.getpid(), signal.SIGTERM)


class _SigtermHandler:
    """SIGTERM in script mode: store the run so far and what the program's calls have
    pending, then die of SIGTERM (as the process would have), so the caller sees it.

    Installed only where SIGTERM has its default action and ``MULTIMETER_HANDLE_SIGTERM``
    is not ``0``; a handler the program installs itself replaces it (then the program
    decides: ``sys.exit()`` there ends the run normally).
    """

    def __init__(self, run: _Run, config: Snapshot) -> None:
        self._run = run
        self._timeout = config.exit_timeout
        self._pid = os.getpid()

    def install(self) -> None:
        """SIGTERM, and SIGHUP (the terminal or the ssh connection went away), where
        their action is the default one (``nohup`` ignores SIGHUP: left so)."""
        for signum in STORING_SIGNALS:
            with contextlib.suppress(ValueError, OSError):
                if signal.getsignal(signum) is signal.SIG_DFL:
                    signal.signal(signum, self._on_sigterm)
                    _process.current().signal_watch.start()

    @storing_handler
    def _on_sigterm(self, signum: int, frame: Any) -> None:
        if os.getpid() != self._pid:
            # A child forked without Python's fork hooks (which give a child the
            # default action until its first result, see multimeter._signal_watch):
            # the run is the parent's to report. The child stores its own calls and
            # dies of the signal, as in any program.
            _lifecycle._on_sigterm(signum, frame)
            return
        with contextlib.suppress(ValueError, OSError):
            signal.signal(signum, signal.SIG_DFL)  # a second one kills at once
        if _lifecycle.interrupts_exit_flush(signum):
            return  # the run is over: that flush stores it, then the process dies
        _process.current().marks = None

        def finish() -> None:
            self._run.finish(128 + signum, None, killed_by=signum)
            flush_at_exit(self._timeout)

        # In a thread of its own: the interrupted code may hold a lock this needs.
        worker = OwnThread(finish, "multimeter-run-exit")
        worker.start()
        worker.join(2 * self._timeout + 1.0)
        _lifecycle.die_of(signum)
        time.sleep(1.0)  # pragma: no cover - pid 1 in a container ignores SIGTERM
        os._exit(128 + signum)  # pragma: no cover


# -- a command as a child process ------------------------------------------------------


def _run_command(command: list[str], probe_names: tuple[str, ...], status_wanted: bool) -> int:
    from multimeter.probes.psutil import PsutilProbe

    config = _configuration(probes=[]).snapshot  # checks the environment before anything starts
    logs_to_stderr(without="has ended")
    others = [_config.PROBES[name]() for name in probe_names]
    storage = Located(config.storage)
    name = os.path.basename(command[0]) or command[0]
    _start_reader(PsutilProbe)
    child = _child.start(command)
    with _child.signals_to(child):
        try:
            tree: Probe = PsutilProbe(pid=child.pid, children=True)
            meter = Multimeter(tree, *others, cycle_time=config.cycle_time)
            meter.set_storage(storage).set_tags(config.tags)
            measurement = meter.measure(_identifier(name, storage))
            run = _Run(measurement, storage, MarkSink(), name, tree=True)
            run.meta.update(mode="command", command=shlex.join(command))
            measurement.start()
        except BaseException:
            child.kill()
            child.wait()
            raise
        status = _status.StatusLine(child.pid, enabled=status_wanted and _status.wanted())
        run.status = status
        with status:
            returncode = _wait(child)
        exit_status = _child.status_of(returncode)
        # Still in the block: a SIGTERM or Ctrl-C now does not cut the storing short.
        run.finish(exit_status, None, killed_by=-returncode if returncode < 0 else None)
    return exit_status


def _start_reader(probe_class: Any, wait: float = 1.0) -> None:
    """Start the background reader before the command, and give it up to ``wait``
    seconds to read: its helper process takes a few tenths of a second to start,
    which the command's tree would miss."""
    from multimeter import _reader

    with contextlib.suppress(Exception):
        probe_class(children=False).read()
        deadline = time.monotonic() + wait
        while not _reader.reader().started_reading and time.monotonic() < deadline:
            time.sleep(0.01)


def _wait(child: Any) -> int:
    while True:
        try:
            return int(child.wait())
        except KeyboardInterrupt:  # pragma: no cover - SIGINT is ignored meanwhile
            continue


# -- the run's result --------------------------------------------------------------------


class _Run:
    """The run's measurement and how it is ended, stored and summed up (once)."""

    def __init__(
        self,
        measurement: Measurement,
        storage: Located,
        marks: MarkSink,
        name: str,
        *,
        tree: bool,
    ) -> None:
        self.measurement = measurement
        self.storage = storage
        self.marks = marks
        self.name = name
        self.tree = tree
        self.meta: dict[str, str] = {}
        self.status: _status.StatusLine | None = None
        self._done = threading.Lock()
        self._finished = False

    def finish(
        self, exit_status: int, error: BaseException | None, killed_by: int | None = None
    ) -> None:
        """End the measurement, store the result, print the summary on stderr."""
        with self._done:
            if self._finished:
                return
            self._finished = True
        if self.status is not None:
            self.status.close()
        result = self.measurement.result
        assert result is not None
        put_marks_on(self.marks, result)
        meta = dict(self.meta, exit_status=str(exit_status))
        if error is not None:
            meta["outcome"] = "raise"
            kind = type(error)
            meta["exception_type"] = kind.__qualname__
            meta["exception_module"] = str(kind.__module__)
            ending = f"raised {kind.__name__} (status {exit_status})"
        elif killed_by is not None:
            meta["outcome"] = "signal"
            meta["signal"] = _signal_name(killed_by)
            ending = f"was killed by {_signal_name(killed_by)} (status {exit_status})"
        else:
            meta["outcome"] = "ok"
            ending = f"exited with status {exit_status}"
        result.add_meta_data(**meta)
        self.measurement.end()
        if self.storage.error is not None:
            where = f"NOT stored: {type(self.storage.error).__name__}: {self.storage.error}"
        else:
            where = self.storage.where or "not stored"
        _print_lines(summary_lines(self.name, ending, result, where, tree=self.tree))


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _print_lines(lines: list[str]) -> None:
    text = "".join(line + "\n" for line in lines)
    try:
        stream = sys.__stderr__ if sys.__stderr__ is not None else sys.stderr
        stream.write(text)
        stream.flush()
    except (OSError, ValueError, AttributeError):
        pass
