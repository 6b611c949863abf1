"""Moments that must not be cut in two: a Ctrl-C (SIGINT) or SIGTERM arriving while a finished result replaces
an earlier one is held until the swap is done, then delivered, so a folder is always the old result or the new
one, never half of each."""

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
