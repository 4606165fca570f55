"""Slow start-ups done while the search prepares: Ray and the MLflow store.

A small search pays a fixed cost before its first trial: importing Ray and starting it (a
raylet, a GCS, workers: 2-3 s on 2 cores) and creating a fresh MLflow sqlite store (its schema
migrations: about 2 s). Neither needs the teacher or the latency table, so
:class:`BackgroundStart` runs each in a thread while the main thread loads the data, trains (or
loads) the teacher and measures the latency table.

Three rules keep it honest:

* both start once the options, the space and the data are known to be good (where the store
  was checked before), so a search that fails on them neither starts Ray nor creates a store;
* the cheap tracking checks (the folder is writable, the server answers ``/health``) still run
  in the main thread before anything is trained; only opening the store (which creates it)
  moves to the thread, and its error, if any, is raised by :meth:`BackgroundStart.wait`;
* latency is measured on idle cores: before the first architecture is timed,
  :meth:`BackgroundStart.wait_until_quiet` lets both start-ups finish *and* waits until the
  processes they started (Ray's GCS, raylet and the idle workers it prestarts, which import Ray
  for a few seconds after ``ray.init`` returns) are quiet: on a 2-core machine a timed request
  would otherwise share a core with them, and the store's thread with the GIL, and the logged
  p50 would not be the deployed model's. A search whose latency table is cached never waits.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Optional


class _Task:
    """``work()`` in a daemon thread; :meth:`result` joins it and re-raises its error."""

    def __init__(self, name: str, work: Callable[[], Any]) -> None:
        self.value: Any = None
        self.error: Optional[BaseException] = None
        self.seconds = 0.0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(work,), name=f"gkd-{name}", daemon=True)
        self._thread.start()

    def _run(self, work: Callable[[], Any]) -> None:
        start = time.perf_counter()
        try:
            self.value = work()
        except BaseException as exc:  # re-raised in the main thread by result()
            self.error = exc
        finally:
            self.seconds = time.perf_counter() - start
            self._done.set()
        self._after()

    def _after(self) -> None:
        """What the thread does once ``work`` returned (nothing: it ends)."""

    def result(self) -> Any:
        self._done.wait()
        if self.error is not None:
            raise self.error
        return self.value


class _RayTask(_Task):
    """Starts Ray and then keeps its thread alive until :meth:`release`.

    Ray's local processes (GCS, raylet) are started with ``PR_SET_PDEATHSIG``, which fires when
    the *thread* that started them ends, not the process: a thread that started Ray and returned
    would take Ray down with it (the driver then fails with "Failed to connect to GCS within 60
    seconds"). So the thread waits until the search has shut Ray down."""

    def __init__(self, config: Any) -> None:
        self._release = threading.Event()
        super().__init__("ray", lambda: _start_ray(config))

    def _after(self) -> None:
        if self.value:  # we started Ray: its processes live as long as this thread
            self._release.wait()

    def release(self) -> None:
        self._release.set()


class BackgroundStart:
    """Starts Ray (``ray_backend.init_ray``) and opens the MLflow store, each in a background
    thread, on :meth:`start`.

    Args:
        config: the :class:`~gkd_search.search.SearchConfig` (``ray_address``, ``device``).
    """

    def __init__(self, config: Any) -> None:
        self.config = config
        self._ray: Optional[_RayTask] = None
        self._store: Optional[_Task] = None
        #: seconds :meth:`wait_until_quiet` waited (None: it was not called)
        self.quiet_wait_seconds: Optional[float] = None

    def start(self, tracking_uri: str) -> None:
        """Run the tracking store's cheap checks now (raising ``TrackingError``), then start Ray
        and open the store in the background. A search calls this once its options, space and
        data are known to be good, so a search that fails on them neither starts Ray nor
        creates a store."""
        from .tracking import check_tracking_uri

        check_tracking_uri(tracking_uri, open_it=False)
        self._ray = _RayTask(self.config)
        self._store = _Task("mlflow", lambda: _open_store(tracking_uri))

    def wait_for_ray(self) -> bool:
        """Block until Ray has started; True when this process started it (so must shut it down).
        False when :meth:`start` was never called."""
        return False if self._ray is None else bool(self._ray.result())

    def wait_until_quiet(self, max_share: float = 0.1, window: float = 0.5, timeout: float = 20.0) -> float:
        """Block until both start-ups are done (raising what they raised) and this process's
        descendants (Ray's local processes) used less than ``max_share`` of a core during
        ``window`` seconds, or ``timeout`` seconds passed; the seconds waited."""
        started = time.perf_counter()
        if self._ray is None:
            return 0.0
        self.wait()
        wait_for_quiet_children(max_share, window, timeout - (time.perf_counter() - started))
        self.quiet_wait_seconds = time.perf_counter() - started
        return self.quiet_wait_seconds

    def wait(self) -> bool:
        """Block until both are done; raise what either raised (a ``TrackingError`` for a store
        that cannot be opened). Returns :meth:`wait_for_ray`'s value."""
        if self._ray is None:
            raise RuntimeError("BackgroundStart.wait() before start()")
        if self._store is not None:
            self._store.result()
        return self.wait_for_ray()

    def shutdown_ray(self) -> None:
        """Shut down a Ray this process started (after the search, or after a failure) and let
        the starting thread end. Never raises for a Ray that failed to start."""
        if self._ray is None:
            return
        try:
            started = self.wait_for_ray()
        except BaseException:
            started = False
        try:
            if started:
                import ray

                ray.shutdown()
        finally:
            self._ray.release()

    @property
    def timings(self) -> dict[str, float]:
        """Seconds each start-up took in its thread (``ray_start_seconds``, ``mlflow_store_seconds``)."""
        out = {}
        if self._ray is not None:
            out["ray_start_seconds"] = self._ray.seconds
        if self._store is not None:
            out["mlflow_store_seconds"] = self._store.seconds
        if self.quiet_wait_seconds is not None:
            out["wait_for_quiet_seconds"] = self.quiet_wait_seconds
        return out


def _children_cpu_seconds() -> float:
    """CPU seconds (user + system) used so far by this process's living descendants."""
    import psutil

    total = 0.0
    for child in psutil.Process().children(recursive=True):
        try:
            times = child.cpu_times()
            total += times.user + times.system
        except psutil.Error:  # ended meanwhile
            pass
    return total


def wait_for_quiet_children(max_share: float, window: float, timeout: float) -> bool:
    """Wait until this process's descendants use less than ``max_share`` of a core over
    ``window`` seconds (True), or ``timeout`` seconds passed (False). A descendant that appears
    or ends during a window only adds what it used while measured, so a busy window is never
    mistaken for a quiet one by more than a just-started process's first tick."""
    deadline = time.perf_counter() + max(timeout, 0.0)
    while True:
        before = _children_cpu_seconds()
        time.sleep(window)
        if _children_cpu_seconds() - before < max_share * window:
            return True
        if time.perf_counter() >= deadline:
            return False


def _start_ray(config: Any) -> bool:
    from .ray_backend import init_ray

    return init_ray(config)


def _open_store(uri: str) -> None:
    from .tracking import open_store

    open_store(uri)
