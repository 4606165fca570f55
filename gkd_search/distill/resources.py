"""What training costs in memory: the peak resident set size while a block runs."""

from __future__ import annotations

import threading
from typing import Optional

import psutil


class PeakMemory:
    """Sample this process's resident memory every ``interval`` seconds inside a ``with`` block.

    ``peak_mb`` is the largest sample (MiB), including the memory the process held before the
    block (the dataset, the teacher's outputs): it is what the machine must have free to run
    the block. ``resource.getrusage`` is not used because its peak spans the process's whole
    life, and Ray reuses worker processes across trials.
    """

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.peak_mb: Optional[float] = None
        self._process = psutil.Process()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._peak = 0

    def _sample(self) -> None:
        self._peak = max(self._peak, self._process.memory_info().rss)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> PeakMemory:
        self._sample()
        self._thread = threading.Thread(target=self._run, name="gkd-peak-rss", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        self.peak_mb = self._peak / 2**20
