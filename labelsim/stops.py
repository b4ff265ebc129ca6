"""Ctrl-C and SIGTERM as exceptions that are not lost.

Python raises a signal handler's exception wherever the main thread happens to be. Inside a
garbage-collection callback (jax registers one) it is printed as "Exception ignored" and dropped,
and the command would go on as if the key had never been pressed. The handlers here also remember
the stop, and long loops (training, chunk by chunk) call :func:`check`, which raises it again.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that a command stops as on Ctrl-C."""


_pending: list[type[KeyboardInterrupt]] = []  # the stop a handler raised in this block, if any


def _stop(kind: type[KeyboardInterrupt]) -> None:
    _pending[:] = [kind]
    raise kind


def _on_sigint(signum: int, frame: Any) -> None:
    _stop(KeyboardInterrupt)


def _on_sigterm(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
    _stop(Terminated)


def check() -> None:
    """Raise the stop a handler raised if it was dropped on the way (nothing otherwise)."""
    if _pending:
        raise _pending[0]


@contextlib.contextmanager
def signals_as_stops() -> Iterator[None]:
    """Within the block, in the main thread, SIGTERM raises Terminated and Ctrl-C KeyboardInterrupt,
    and :func:`check` raises either again. Ctrl-C is taken over only from Python's own handler (a
    process told to ignore it keeps ignoring it); elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _pending.clear()
    previous_term = signal.signal(signal.SIGTERM, _on_sigterm)
    previous_int = signal.getsignal(signal.SIGINT)
    if previous_int is signal.default_int_handler:
        signal.signal(signal.SIGINT, _on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous_term is None else previous_term)
        if previous_int is signal.default_int_handler:
            signal.signal(signal.SIGINT, previous_int)
        _pending.clear()
