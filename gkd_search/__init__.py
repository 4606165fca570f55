"""gkd-search: find the best distilled graph-neural-network student within a latency budget."""

from __future__ import annotations

__version__ = "0.1.0"

from .hookspecs import hookimpl  # noqa: E402

__all__ = ["__version__", "hookimpl", "load_student"]


def load_student(source: str, *, tracking_uri: str | None = None):
    """Rebuild a saved student from a folder or an MLflow run id (see :mod:`gkd_search.student`)."""
    from .student import load_student as _load

    return _load(source, tracking_uri=tracking_uri)
