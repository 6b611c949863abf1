"""Moments that must not be cut in two. `held_interrupts`: a Ctrl-C (SIGINT) or SIGTERM arriving while a finished
result replaces an earlier one is held until the swap is done, then delivered, so a folder is always the old
result or the new one, never half of each. `InterruptLater`: a long loop (extraction) checks a first Ctrl-C
between its steps, so it never lands in the middle of writing a part."""

from __future__ import annotations

import contextlib
import os
import signal
import threading


@contextlib.contextmanager
def held_interrupts():
    """Run the block with SIGINT and SIGTERM held; deliver one that arrived once it ends (main thread only:
    elsewhere signals are not delivered to Python code anyway)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []
    previous = {sig: signal.signal(sig, lambda number, frame: arrived.append(number))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if arrived:
            if arrived[0] == signal.SIGINT:
                raise KeyboardInterrupt
            os.kill(os.getpid(), arrived[0])


class InterruptLater:
    """Turns the first Ctrl-C (SIGINT) into a request checked between events, so that it never lands in the
    middle of writing a part; a second Ctrl-C interrupts at once. Only in the main thread."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame) -> None:
        self.requested = True
        signal.signal(signal.SIGINT, self._previous)

    def __enter__(self) -> "InterruptLater":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
