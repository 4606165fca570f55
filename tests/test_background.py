"""The latency phase waits for the background start-ups' processes to go quiet (``background.py``)."""

from __future__ import annotations

import subprocess
import sys
import time

from gkd_search.background import BackgroundStart, wait_for_quiet_children

BUSY = "import time\nend = time.perf_counter() + {seconds}\nwhile time.perf_counter() < end:\n    pass\n"


def _busy_child(seconds: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", BUSY.format(seconds=seconds)])


def test_waits_while_a_child_process_burns_cpu_then_returns_once_it_is_done():
    child = _busy_child(2.0)
    try:
        started = time.perf_counter()
        assert wait_for_quiet_children(max_share=0.1, window=0.3, timeout=30.0)
        waited = time.perf_counter() - started
    finally:
        child.kill()
        child.wait()
    assert waited >= 1.2  # the child's busy second(s) were not mistaken for quiet ones
    assert waited < 20.0


def test_gives_up_at_the_timeout_when_a_child_stays_busy():
    child = _busy_child(30.0)
    try:
        started = time.perf_counter()
        assert not wait_for_quiet_children(max_share=0.1, window=0.3, timeout=1.0)
        assert time.perf_counter() - started < 5.0
    finally:
        child.kill()
        child.wait()


def test_quiet_at_once_without_children():
    started = time.perf_counter()
    assert wait_for_quiet_children(max_share=0.1, window=0.2, timeout=5.0)
    assert time.perf_counter() - started < 1.0


def test_a_background_start_that_never_started_does_not_wait():
    start = BackgroundStart(config=None)
    assert start.wait_until_quiet() == 0.0
    assert "wait_for_quiet_seconds" not in start.timings
