"""MLflow calls that survive a tracking server going away for a while, or a sqlite store locked
by another search: retry with exponential back-off up to a limit, then give up with
:class:`TrackingUnavailable` (the search keeps the record in its journal and goes on).

Only transient failures are retried: the connection refused or timed out, HTTP 429 and 5xx,
"database is locked". A mistake (a bad parameter, a missing run) fails at once.
The limit is ``GKD_TRACKING_RETRY_SECONDS`` (default 120 s) per call; once a call has given up,
the next ones try once without waiting (the server is known to be down) until one succeeds.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Optional, TypeVar

from .errors import TrackingError

RETRY_ENV = "GKD_TRACKING_RETRY_SECONDS"
DEFAULT_RETRY_SECONDS = 120.0
FIRST_DELAY_SECONDS = 0.5
MAX_DELAY_SECONDS = 8.0

T = TypeVar("T")

_TRANSIENT_TEXT = (
    "api request to", "connection refused", "connection reset", "connection aborted", "max retries exceeded",
    "timed out", "timeout", "temporarily unavailable", "service unavailable", "bad gateway", "gateway time",
    "database is locked", "database table is locked", "could not connect", "server closed the connection",
    "remote end closed", "broken pipe", "name or service not known", "too many requests",
)


class TrackingUnavailable(TrackingError):
    """The tracking store stayed unreachable past the retry limit."""


def retry_limit_seconds() -> float:
    try:
        return max(0.0, float(os.environ.get(RETRY_ENV, DEFAULT_RETRY_SECONDS)))
    except ValueError:
        return DEFAULT_RETRY_SECONDS


def is_transient(exc: BaseException) -> bool:
    """A failure worth retrying: the store is unreachable, overloaded or locked."""
    import requests
    from mlflow.exceptions import RestException

    if isinstance(exc, (requests.ConnectionError, requests.Timeout, ConnectionError, TimeoutError)):
        return True
    if isinstance(exc, RestException):  # the server answered: overloaded or broken for now?
        try:
            code = int(exc.get_http_status_code())
        except Exception:
            code = 0
        if code == 429 or code >= 500:
            return True
    text = str(exc).lower()
    return any(fragment in text for fragment in _TRANSIENT_TEXT)


def first_line(exc: BaseException, limit: int = 160) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0][:limit] if text else type(exc).__name__)


class RetryPolicy:
    """Retries one call at a time (see the module docstring); ``on_retry`` hears about waits."""

    def __init__(self, uri: str, limit_s: Optional[float] = None,
                 on_retry: Optional[Callable[[str], None]] = None) -> None:
        self.uri = uri
        self._limit_s = limit_s
        self.on_retry = on_retry or (lambda message: None)
        self.offline = False
        self.retries = 0

    @property
    def limit_s(self) -> float:
        """The limit given, else ``GKD_TRACKING_RETRY_SECONDS`` as it is now."""
        return retry_limit_seconds() if self._limit_s is None else self._limit_s

    @limit_s.setter
    def limit_s(self, value: Optional[float]) -> None:
        self._limit_s = value

    def call(self, fn: Callable[[], T], what: str) -> T:
        start = time.monotonic()
        limit = 0.0 if self.offline else self.limit_s
        delay = FIRST_DELAY_SECONDS
        announced = None
        while True:
            try:
                value = fn()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                waited = time.monotonic() - start
                if waited >= limit:
                    self.offline = True
                    raise TrackingUnavailable(
                        f"the MLflow tracking store {self.uri} is unreachable ({what}: {first_line(exc)})") from exc
                self.retries += 1
                if announced is None or waited - announced >= 10:
                    announced = waited
                    self.on_retry(f"MLflow {what} failed ({first_line(exc, 100)}); retrying for up to "
                                  f"{limit - waited:.0f} s more")
                time.sleep(min(delay, max(0.05, limit - waited)))
                delay = min(delay * 2, MAX_DELAY_SECONDS)
                continue
            if self.offline:
                self.offline = False
                self.on_retry(f"MLflow tracking store {self.uri} answers again")
            return value


class RetryingClient:
    """An :class:`mlflow.tracking.MlflowClient` whose every method call goes through a
    :class:`RetryPolicy`."""

    def __init__(self, client: Any, policy: RetryPolicy) -> None:
        self._client = client
        self._policy = policy

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            return self._policy.call(lambda: attr(*args, **kwargs), name)

        return call
