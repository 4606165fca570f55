"""Finding raw files under a read-only data root and staging them in a writable cache."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Optional, Sequence

import torch

from ..errors import DataMissingError

DATA_ENV = "GKD_DATA"


def resolve_data_root(data_root: Optional[str | Path]) -> Optional[Path]:
    """``--data-root`` if given, else ``$GKD_DATA``, else ``None`` (let PyG download)."""
    value = data_root if data_root is not None else os.environ.get(DATA_ENV)
    return Path(value).expanduser() if value else None


def stage_raw_files(root: Path, folder: str, files: Sequence[str], cache_dir: Path, *, hint: str) -> Path:
    """Copy ``root/folder/raw/<files>`` into ``cache_dir/folder/raw`` and return ``cache_dir``.

    The data root is never written to. The copy is made in a temporary folder and renamed into
    place, so an interrupted copy leaves no half-filled cache. If the cached copy differs in size
    from the source, it is replaced and PyG's ``processed`` folder is dropped.

    Raises:
        DataMissingError: naming the missing files and where to put them.
    """
    target = cache_dir / folder / "raw"
    if not _staged(root / folder / "raw", files, target, hint, folder, f"{folder}/raw/"):
        shutil.rmtree(cache_dir / folder / "processed", ignore_errors=True)
    return cache_dir


def stage_files(source: Path, files: Sequence[str], target: Path, *, hint: str, label: str, where: str) -> Path:
    """Copy ``source/<files>`` into the folder ``target`` (as :func:`stage_raw_files`: atomically,
    re-copied when a size differs, the source never written) and return ``target``. ``label``
    and ``where`` name the data and the folder a data root should have, for the error.

    Raises:
        DataMissingError: naming the missing files and where to put them.
    """
    _staged(source, files, target, hint, label, where)
    return target


def _staged(source: Path, files: Sequence[str], target: Path, hint: str, label: str, where: str) -> bool:
    """Make ``target`` hold a copy of ``source/<files>``; True when it already did."""
    missing = [f for f in files if not (source / f).is_file()]
    if missing:
        raise DataMissingError(
            f"{label} data not found: put {', '.join(missing)} in {source}/ ({hint}), "
            f"or point --data-root / ${DATA_ENV} at a folder that has {where}"
        )
    if target.is_dir() and all(
        (target / f).is_file() and (target / f).stat().st_size == (source / f).stat().st_size for f in files
    ):
        return True
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".stage-", dir=target.parent))
    try:
        if target.is_dir():  # keep what is already staged there (other split files)
            for existing in target.iterdir():
                if existing.is_file() and existing.name not in files:
                    shutil.copyfile(existing, staging / existing.name)
        for f in files:
            shutil.copyfile(source / f, staging / f)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return False


def per_class_split(y: torch.Tensor, num_classes: int, train_per_class: int, val_per_class: int,
                    seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Seeded split: ``train_per_class`` and ``val_per_class`` nodes of each class, the rest test.

    As in Shchur et al., "Pitfalls of Graph Neural Network Evaluation" (2018), Sec. 4.
    """
    generator = torch.Generator().manual_seed(seed)
    n = y.numel()
    train = torch.zeros(n, dtype=torch.bool)
    val = torch.zeros(n, dtype=torch.bool)
    for c in range(num_classes):
        idx = torch.nonzero(y == c, as_tuple=False).view(-1)
        idx = idx[torch.randperm(idx.numel(), generator=generator)]
        train[idx[:train_per_class]] = True
        val[idx[train_per_class:train_per_class + val_per_class]] = True
    test = ~(train | val)
    return train, val, test


def pyg_safe_globals() -> list:
    """What ``torch.load(weights_only=True)`` must allow to read a pickled PyG ``Data`` (or ogb's
    ``(Data, slices)`` file) besides tensors: PyG's storage classes, and ``Data`` itself."""
    from torch_geometric.data import Data
    from torch_geometric.data.data import DataEdgeAttr, DataTensorAttr
    from torch_geometric.data.storage import GlobalStorage

    return [Data, DataEdgeAttr, DataTensorAttr, GlobalStorage]
