"""``--trial-timeout``: stop a trial that runs too long, from inside its own process.

:func:`deadline` raises :class:`TrialTimeout` in the thread that entered it once ``seconds``
have passed (``PyThreadState_SetAsyncExc``): Python delivers it between two bytecodes, so a
training loop stops at its next step, whatever the method or family plugin does, while a single
long native call (one huge matrix product) finishes first. :class:`TrialTimeout` derives from
:class:`BaseException` so that ``except Exception`` in a trial or a plugin does not swallow it.
The worker process stays healthy and Ray reuses it for the next trial.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
from typing import Iterator, Optional


class TrialTimeout(BaseException):
    """The trial ran past ``--trial-timeout``."""


def _raise_in(thread_id: int, exc_type: Optional[type]) -> None:
    target = ctypes.py_object(exc_type) if exc_type is not None else None
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), target)


@contextlib.contextmanager
def deadline(seconds: Optional[float]) -> Iterator[None]:
    """Raise :class:`TrialTimeout` in this thread after ``seconds`` (``None``: never)."""
    if not seconds:
        yield
        return
    thread_id = threading.get_ident()
    lock = threading.Lock()
    state = {"done": False, "fired": False}

    def fire() -> None:
        with lock:
            if not state["done"]:
                state["fired"] = True
                _raise_in(thread_id, TrialTimeout)

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        with lock:
            state["done"] = True
            if state["fired"]:
                _raise_in(thread_id, None)  # clear it if it has not been delivered yet
