"""Progress in a log file is plain lines (no bar redraws); on a terminal it is tqdm's bar."""

import io
import sys

from featx.progress import PlainProgress, progress
from tests.helpers import PROGRESS_LINE


def test_a_log_gets_one_plain_line_per_tenth_and_one_at_the_end(monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    assert list(progress(range(25), desc="extract", unit="video")) == list(range(25))
    lines = err.getvalue().splitlines()
    assert "\r" not in err.getvalue() and all(PROGRESS_LINE.match(line) for line in lines)
    assert lines[0].startswith("extract: 1/25 videos (4%)") and lines[-1].startswith("extract: 25/25 videos (100%)")
    assert len(lines) == 11  # 1, then at 10 %, 20 %, ..., 90 %, then the end


def test_counted_progress_with_a_postfix_and_disabled_progress(monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    bar = progress(total=4, desc="export npy", unit="video")
    assert isinstance(bar, PlainProgress)
    bar.set_postfix(frames_per_s="12.5")
    for _ in range(4):
        bar.update(1)
    bar.close()
    bar.close()  # twice: one end line
    assert err.getvalue().splitlines()[-1].endswith("frames_per_s 12.5") and err.getvalue().count("4/4") == 1
    list(progress(range(3), desc="quiet", unit="step", enabled=False))
    assert "quiet" not in err.getvalue()


def test_a_terminal_gets_tqdms_bar(monkeypatch):
    from tqdm.auto import tqdm

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert isinstance(progress(range(3), desc="x", unit="step"), tqdm)
