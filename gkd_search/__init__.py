"""gkd-search: find the best distilled graph-neural-network student within a latency budget."""

from __future__ import annotations

__version__ = "0.1.0"

from .hookspecs import hookimpl  # noqa: E402

__all__ = ["__version__", "hookimpl", "load_dataset", "load_student"]


def load_student(source: str, *, tracking_uri: str | None = None):
    """Rebuild a saved student from a folder, an MLflow run id or a model URI
    (``models:/gkd-cora/1``); see :func:`gkd_search.student.load_student`."""
    from .student import load_student as _load

    return _load(source, tracking_uri=tracking_uri)


def load_dataset(name: str, data_root=None, seed: int = 0, *, cache_dir=None):
    """The graph a search with ``--dataset name`` runs on (``cora``, ``graph.npz``,
    ``pyg:class=Coauthor,name=CS``, ...); see :func:`gkd_search.loading.load_dataset`."""
    from .loading import load_dataset as _load

    return _load(name, data_root, seed, cache_dir=cache_dir)
