"""From a ``--dataset`` value to a loaded graph: :func:`load_dataset` (public), and the parsing and
typing of the dataset's options that a search shares with it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Optional

from .datasets._files import resolve_data_root
from .datasets._options import parse_flag
from .errors import UsageError
from .types import DatasetSpec, GraphDataset, Unset

CACHE_ENV = "GKD_CACHE"
#: ``--dataset PATH`` with one of these suffixes (an existing file) is a graph of the user's own
GRAPH_FILE_SUFFIXES = (".pt", ".npz")


def default_cache_dir() -> Path:
    """``$GKD_CACHE``, else ``~/.cache/gkd-search``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "gkd-search").expanduser()


def check_writable_folder(path: str | Path, option: str) -> None:
    """Raise a :class:`UsageError` naming ``option`` unless ``path`` is a folder this process can
    write, or one it can create (its nearest existing parent is a writable folder). Creates
    nothing: a search that fails on its options leaves no folder behind."""
    folder = Path(path).expanduser().absolute()
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        raise UsageError(f"{option} {str(path)!r} cannot be created: {existing} is not a folder; "
                         "give a folder you can write")
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "is not writable" if existing == folder else f"cannot be created: {existing} is not writable"
        raise UsageError(f"{option} {str(path)!r} {what}; give a folder you can write")


def parse_dataset(text: str) -> tuple[str, dict[str, str]]:
    """``synthetic:nodes=1000,edges=5000`` -> ``("synthetic", {"nodes": "1000", ...})``; a path to
    an existing ``.pt`` or ``.npz`` file, or one without ``:`` (so a missing file is named as
    missing, not as an unknown dataset) -> ``("file", {"path": text})``."""
    if Path(text).suffix.lower() in GRAPH_FILE_SUFFIXES and (":" not in text or Path(text).expanduser().is_file()):
        return "file", {"path": text}
    name, _, rest = text.partition(":")
    options: dict[str, str] = {}
    for item in filter(None, rest.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"--dataset {text!r}: option {item!r} is not key=value")
        options[key.strip()] = value.strip()
    return name.strip().lower(), options


def typed_dataset_options(spec: DatasetSpec, options: Mapping[str, str]) -> dict[str, Any]:
    """The ``--dataset`` options checked against ``spec.options`` and converted to the type of
    each option's default (``nodes=900`` -> ``900`` when the default is an ``int``; ``true``,
    ``false``, ``1``, ``0``, ``yes``, ``no`` for a ``bool``; an :class:`~gkd_search.types.Unset`
    default converts to its type); a key ``spec.options`` does not declare is a
    :class:`UsageError`. Only the options given are returned (``load`` fills in the rest from its
    defaults, :meth:`DatasetSpec.option_values`)."""
    known = dict(spec.options)
    typed: dict[str, Any] = {}
    for key, text in options.items():
        if key not in known and getattr(spec, "passes_other_options", False):
            typed[key] = text  # the loader passes it on (pyg: the dataset class's constructor)
            continue
        if key not in known:
            raise UsageError(f"{spec.name}: unknown option {key!r} (known: {', '.join(known) or 'none'})")
        default = known[key]
        kind = default.type if isinstance(default, Unset) else type(default)
        if kind is bool:
            typed[key] = parse_flag(spec.name, key, text)
        elif kind in (int, float):
            label, convert = ("an integer", int) if kind is int else ("a number", float)
            try:
                typed[key] = convert(text)
            except (TypeError, ValueError):
                raise UsageError(f"{spec.name}: {key}={text!r} is not {label}") from None
        else:
            typed[key] = text
    return typed


def load_dataset(name: str, data_root: Optional[str | Path] = None, seed: int = 0, *,
                 cache_dir: Optional[str | Path] = None, registry=None) -> GraphDataset:
    """The graph a search with ``--dataset name --data-root data_root --seed seed`` runs on.

    Args:
        name: any ``--dataset`` value: ``cora``, ``photo:...``, ``pyg:class=Coauthor,name=CS``, a
            ``.pt``/``.npz`` path, a plugin's dataset.
        data_root: the read-only raw-data folder (default ``$GKD_DATA``; none: download where the
            dataset can).
        seed: the seed of random splits.
        cache_dir: where processed files go (default ``$GKD_CACHE`` or ``~/.cache/gkd-search``;
            the dataset cache is its ``datasets/`` folder, as in a search).

    Example::

        dataset = gkd_search.load_dataset("cora", data_root="../shared/data")
        logits = gkd_search.load_student("models:/gkd-cora/1").predict(dataset.data.x, dataset.data.edge_index)
    """
    from .registry import build_registry

    registry = registry or build_registry()
    key, options = parse_dataset(str(name))
    spec = registry.get("dataset", key)
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return spec.load(resolve_data_root(data_root), cache / "datasets", seed, **typed_dataset_options(spec, options))
