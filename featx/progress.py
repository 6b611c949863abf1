"""Progress on long work: tqdm's bar on a terminal; in a log file (stderr not a terminal) plain lines instead,
one per tenth of the work and one at the end, so logs hold no bar redraws (carriage returns)."""

from __future__ import annotations

import sys
import time


def progress(iterable=None, *, total: int | None = None, desc: str, unit: str, enabled: bool = True):
    """A progress reporter over `iterable` (or `total` steps counted with .update(n)): tqdm on a terminal,
    PlainProgress in a log, silent when not `enabled`."""
    if enabled and not sys.stderr.isatty():
        return PlainProgress(iterable, total, desc, unit)
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=not enabled)


class PlainProgress:
    """Plain progress lines on stderr: `extract: 30/100 videos (30%), 12 s`, at each tenth and at the end."""

    def __init__(self, iterable, total: int | None, desc: str, unit: str):
        self.iterable, self.desc, self.unit = iterable, desc, unit
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.n, self._shown, self._started, self._postfix, self._closed = 0, -1, time.monotonic(), "", False

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        tenth = int(10 * self.n / self.total) if self.total else self.n
        if not self._closed and tenth > self._shown and (not self.total or self.n < self.total):
            self._line()
            self._shown = tenth

    def set_postfix(self, **values) -> None:
        self._postfix = ", ".join(f"{k} {v}" for k, v in values.items())

    def close(self) -> None:
        if not self._closed:
            self._line()
            self._closed = True

    def _line(self) -> None:
        of = f"/{self.total}" if self.total is not None else ""
        share = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        extra = f", {self._postfix}" if self._postfix else ""
        print(f"{self.desc}: {self.n}{of} {self.unit}s{share}, {time.monotonic() - self._started:.0f} s{extra}",
              file=sys.stderr, flush=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
