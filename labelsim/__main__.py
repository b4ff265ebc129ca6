"""``python -m labelsim``: train a grid into a run directory, then analyze, report, check and
budget the finished run.

A failure ends a command with one line on stderr that says what to do next, and an exit status:
2 bad input (flags or stored files), 1 an OS error (disk full, permission denied) or a fault in
labelsim, 130 Ctrl-C, 143 SIGTERM (which stops a command as Ctrl-C does, keeping what it
finished). ``--debug`` shows the traceback instead. A reader that closes the output early (as
``| head``) ends a command quietly with 141, as a shell reports a process stopped by SIGPIPE."""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import signal
import sys
from collections.abc import Callable
from typing import NoReturn

from labelsim.config import ConfigError
from labelsim.stops import Terminated, signals_as_stops

# Subcommand name -> (module under labelsim.commands, one-line help).
COMMANDS = {
    "train": ("train", "train a label-noise x volume sensitivity grid into a run directory (as run_grid.py)"),
    "analyze": ("analyze", "per-class tables and curve fits of a run (terminal, CSV, JSON)"),
    "report": ("report", "one offline HTML page with every chart and table of a run"),
    "check": ("check", "verify a run directory; exits non-zero on any fault"),
    "budget": ("budget", "plan a labeling budget on a run's fitted per-class curves"),
    "oof": ("oof", "out-of-fold class probabilities of every training record (cross-fitted replicas)"),
    "recommend": ("recommend", "which records to label or relabel, and at which tier, within a budget"),
    "clusters": ("clusters", "assign every record to a cluster (k-means on the run's embeddings, or your own)"),
    "replay": ("replay", "replay a labeling budget by each strategy, round by round, and measure what it buys"),
}

EXIT_OS_ERROR = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 128 + signal.SIGINT  # as a shell reports a process the signal ended
EXIT_TERMINATED = 128 + signal.SIGTERM
EXIT_BROKEN_PIPE = 128 + 13  # SIGPIPE (signal.SIGPIPE does not exist on Windows)

_REMEDIES = {
    errno.ENOSPC: "free some disk space",
    errno.EDQUOT: "free some space within your disk quota",
    errno.EACCES: "give yourself access to it or choose another place",
    errno.EPERM: "give yourself access to it or choose another place",
    errno.EROFS: "the disk is read-only: choose another place",
}


def add_debug_flag(parser: argparse.ArgumentParser) -> None:
    """The --debug flag, shared by ``python -m labelsim`` and run_grid.py."""
    parser.add_argument("--debug", action="store_true", help="on a failure, show the traceback instead of one line")


def program_name() -> str:
    """The command as the user typed it: ``python -m labelsim`` (Python then names this file first on the
    command line) or the installed ``labelsim`` script."""
    return "python -m labelsim" if os.path.basename(sys.argv[0]) == "__main__.py" else "labelsim"


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one subparser per command."""
    parser = argparse.ArgumentParser(prog=program_name(), description=__doc__)
    add_debug_flag(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(f"labelsim.commands.{module_name}")
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def run_guarded(parse: Callable[[], argparse.Namespace]) -> int:
    """Parse a command line and run its command (``args._module``) with SIGTERM raised as
    Terminated and Ctrl-C as KeyboardInterrupt, neither lost (``labelsim.stops``); returns the
    exit status. A failure becomes one line on stderr (``failure``), or, with --debug, is raised.
    A command module may define ``next_step(args, err)``: what to do after an interrupt or an OS
    error, given what it has written."""
    args = None
    with signals_as_stops():
        try:
            args = parse()
            status = int(args._module.run(args) or 0)
            sys.stdout.flush()  # here, so that a closed pipe is met inside the guard
            return status
        except BrokenPipeError:
            _discard_stdout()
            return EXIT_BROKEN_PIPE
        except (Exception, KeyboardInterrupt) as err:
            if args is not None and args.debug:
                raise
            message, status = failure(err, args)
            print(message, file=sys.stderr)
            return status


def _discard_stdout() -> None:
    """Point stdout at the null device: the reader closed the pipe, and the interpreter's last flush
    would fail on it again."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout is no file (captured or closed): nothing to flush
        return


def failure(err: BaseException, args: argparse.Namespace | None) -> tuple[str, int]:
    """The one-line message and the exit status of a command that raised ``err``."""
    if isinstance(err, ConfigError):  # bad flags or stored files: the message says what to change
        return f"error: {err}", EXIT_BAD_INPUT
    module = getattr(args, "_module", None)  # None when the command line was not parsed yet
    next_step = getattr(module, "next_step", None)
    then = (next_step(args, err) if next_step else None) or "run the same command again"
    if isinstance(err, Terminated):
        return f"stopped by SIGTERM; {then}", EXIT_TERMINATED
    if isinstance(err, KeyboardInterrupt):
        return f"interrupted; {then}", EXIT_INTERRUPTED
    if isinstance(err, OSError):
        where = f" ({err.filename})" if err.filename else ""
        remedy = _REMEDIES.get(err.errno, "fix it")
        return f"error: {err.strerror or err}{where}; {remedy}, then {then}", EXIT_OS_ERROR
    first_line = next(iter(str(err).strip().splitlines()), "")
    return (
        f"error: unexpected {type(err).__name__}: {first_line}; {then}, and if it fails again, rerun with "
        "--debug and report the traceback",
        EXIT_OS_ERROR,
    )


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run one subcommand; returns the exit status."""
    return run_guarded(lambda: build_parser().parse_args(argv))


def exit_process(status: int) -> NoReturn:
    """End the process with ``status``. A command stopped by Ctrl-C or SIGTERM ends at once, its files
    written and its output flushed: the interpreter's teardown could otherwise meet the native threads of
    an interrupted computation and crash (a segmentation fault after the one-line message)."""
    if status in (EXIT_INTERRUPTED, EXIT_TERMINATED):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)


if __name__ == "__main__":
    exit_process(main())
