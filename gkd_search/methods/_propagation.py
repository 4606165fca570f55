"""SGC-style feature propagation, InfGraND's global influence score, and their per-graph caches.

Everything here is computed once per graph with sparse products (``O(P * E * F)``); nothing builds
a dense ``N x N`` matrix.

* :func:`normalized_adjacency` is ``A_hat = D~^-1/2 (A + I) D~^-1/2`` (Kipf & Welling, ICLR 2017;
  Wu et al., SGC, ICML 2019), with any self-loops of the input replaced by exactly one per node.
* :func:`pooled_features` is InfGraND's student input ``X~ = 1/(P+1) sum_{k=0..P} A_hat^k X``.
* :func:`influence_scores` is InfGraND's global influence ``I_g`` (see its docstring).
* :func:`cached_tensor` keeps results in an in-process cache keyed by a content hash of the inputs
  (:func:`content_key`) and, given a folder, in a file written atomically (temp file, then
  ``os.replace``) and read back with ``torch.load(..., weights_only=True)``; an unreadable or
  mismatched file is recomputed and rewritten.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import pickle
import tempfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

log = logging.getLogger(__name__)

#: bump when a cached quantity's definition changes, so old files are not reused
CACHE_VERSION = 1
#: the in-process cache keeps at most this many tensors and bytes (least recently used go first;
#: the newest entry always stays)
MEMORY_ENTRIES = 16
MEMORY_BYTES = 256 * 2**20
#: multiply-adds allowed for the exact minimum of the N x N cosine matrix (PubMed: 1.9e11)
MIN_COSINE_BUDGET = 2.5e11

_MEMORY: OrderedDict[str, Tensor] = OrderedDict()
_EPS = 1e-12


# ------------------------------------------------------------------------------------ caching


def content_key(kind: str, *tensors: Tensor, **meta: object) -> str:
    """A hex digest of ``kind``, ``meta`` and the bytes, dtypes and shapes of ``tensors``."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{kind}|v{CACHE_VERSION}|{sorted(meta.items())!r}".encode())
    for tensor in tensors:
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"|{flat.dtype}|{tuple(tensor.shape)}|".encode())
        if flat.numel():
            digest.update(flat.view(torch.uint8).numpy().data)
    return digest.hexdigest()


def clear_memory_cache() -> None:
    """Forget every tensor of the in-process cache (the file cache is left alone)."""
    _MEMORY.clear()


def _remember(key: str, value: Tensor) -> None:
    _MEMORY[key] = value
    _MEMORY.move_to_end(key)
    def size() -> int:
        return sum(t.numel() * t.element_size() for t in _MEMORY.values())

    while len(_MEMORY) > 1 and (len(_MEMORY) > MEMORY_ENTRIES or size() > MEMORY_BYTES):
        _MEMORY.popitem(last=False)


def _save_atomically(value: Tensor, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(value.detach().to("cpu").contiguous(), tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _load(path: Path, shape: tuple[int, ...] | None) -> Tensor | None:
    try:
        value = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as exc:
        # a truncated, foreign or unsafe file: recompute it
        log.warning("ignoring unreadable cache file %s (%s: %s)", path, type(exc).__name__, exc)
        return None
    if not isinstance(value, Tensor) or (shape is not None and tuple(value.shape) != tuple(shape)):
        log.warning("ignoring cache file %s: not a tensor of shape %s", path, shape)
        return None
    return value


def cached_tensor(kind: str, key: str, compute: Callable[[], Tensor], cache_dir: Path | None = None,
                  shape: tuple[int, ...] | None = None) -> Tensor:
    """``compute()``, or its value from the in-process cache or from ``cache_dir/<kind>-<key>.pt``.

    Args:
        key: a content hash of everything the value depends on (:func:`content_key`).
        cache_dir: the folder of the file cache, or ``None`` for the in-process cache only.
        shape: the expected shape; a cached file of another shape is recomputed.
    """
    full_key = f"{kind}-{key}"
    hit = _MEMORY.get(full_key)
    if hit is not None:
        _MEMORY.move_to_end(full_key)
        return hit
    path = Path(cache_dir) / f"{full_key}.pt" if cache_dir is not None else None
    value = _load(path, shape) if path is not None and path.exists() else None
    if value is None:
        value = compute().detach()
        if path is not None:
            _save_atomically(value, path)
    _remember(full_key, value)
    return value


# ------------------------------------------------------------------------------- propagation


def self_loop_edges(edge_index: Tensor, num_nodes: int) -> tuple[Tensor, Tensor]:
    """``(source, target)`` of the graph with its self-loops replaced by one per node and
    repeated edges merged, sorted by target then source (``A + I`` as a 0/1 matrix)."""
    source, target = edge_index[0].long(), edge_index[1].long()
    keep = source != target
    loops = torch.arange(num_nodes, device=edge_index.device)
    source = torch.cat([source[keep], loops])
    target = torch.cat([target[keep], loops])
    flat = torch.unique(target * num_nodes + source)  # sorted: by target, then source
    return flat % num_nodes, torch.div(flat, num_nodes, rounding_mode="floor")


def normalized_adjacency(edge_index: Tensor, num_nodes: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """``A_hat = D~^-1/2 (A + I) D~^-1/2`` as a sparse (COO) ``[N, N]`` matrix.

    Row ``i`` holds node ``i``'s incoming edges (``edge_index[0]`` is the source, PyG's
    convention), so ``(A_hat @ X)[i] = sum_j A_hat[i, j] X[j]``; ``D~`` counts incoming edges plus
    the self-loop (as :func:`torch_geometric.nn.conv.gcn_conv.gcn_norm` does).
    """
    source, target = self_loop_edges(edge_index, num_nodes)
    inv_sqrt = torch.bincount(target, minlength=num_nodes).to(dtype).rsqrt()
    weight = inv_sqrt[target] * inv_sqrt[source]
    return torch.sparse_coo_tensor(torch.stack([target, source]), weight, (num_nodes, num_nodes),
                                   is_coalesced=True, check_invariants=False)


def pooled_features(x: Tensor, edge_index: Tensor, hops: int) -> Tensor:
    """InfGraND's student input: the mean of ``X, A_hat X, ..., A_hat^P X`` (``P = hops``)."""
    if hops < 0:
        raise ValueError(f"hops must be >= 0, got {hops}")
    if hops == 0:
        return x
    adj = normalized_adjacency(edge_index, x.size(0), torch.float32)
    current = x.detach().float()
    total = current.clone()
    for _ in range(hops):
        current = adj @ current
        total += current
    return (total / (hops + 1)).to(x.dtype)


def _unit_rows(t: Tensor) -> Tensor:
    return t / t.norm(dim=1, keepdim=True).clamp_min(_EPS)


def min_cosine(xn: Tensor, hn: Tensor, budget: float = MIN_COSINE_BUDGET, block_rows: int = 256) -> float:
    """``min_{i,j} xn_i . hn_j`` for unit rows, scanning blocks of rows in a fixed random order.

    The scan stops early when a block reaches the lower bound (0 when both matrices are
    non-negative, as bag-of-words features and their propagation are; else -1): the minimum is then
    exact. Beyond ``budget`` multiply-adds it stops and returns the minimum over the rows scanned
    so far (an estimate from above; only graphs larger than PubMed get there).
    """
    n, m, f = xn.size(0), hn.size(0), max(xn.size(1), 1)
    lower = 0.0 if bool((xn >= 0).all()) and bool((hn >= 0).all()) else -1.0
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0)).to(xn.device)
    max_rows = max(block_rows, int(budget // (m * f)))
    columns = hn.t().contiguous()
    best = math.inf
    for start in range(0, min(n, max_rows), block_rows):
        best = min(best, float((xn[order[start:start + block_rows]] @ columns).min()))
        if best <= lower:
            break
    if max_rows < n and best > lower:
        log.warning("InfGraND influence: min cosine estimated from %d of %d rows", max_rows, n)
    return best


def influence_scores(x: Tensor, edge_index: Tensor, hops: int = 2, budget: float = MIN_COSINE_BUDGET) -> Tensor:
    """InfGraND's global influence ``I_g`` ``[N]`` in ``[0, 1]`` (Eskandari et al., TMLR 2026,
    arXiv:2601.08033, Sec. 4, Eq. 3-4 / Algorithm 1, as the authors' code computes it).

    With ``H = A_hat^hops X`` (SGC propagation, ``hops = 2`` in the paper) and the pairwise
    influence of node ``i`` on node ``j`` taken as ``S_ij = cos(x_i, h_j)``, min-max normalised
    over all pairs::

        S'_ij = (S_ij - min S) / (max S - min S)
        I_g(v_i) = sum_j S'_ij / max_k sum_j S'_kj

    The row sums need no ``N x N`` matrix: ``sum_j S_ij = x^_i . (sum_j h^_j)`` for unit rows
    ``x^``, ``h^``, and ``max S - min S`` cancels in the ratio, so only ``min S`` needs the pairs
    (:func:`min_cosine`). Cost: ``O(hops * E * F + N * F)`` plus the scan for ``min S``.
    """
    n = x.size(0)
    h = x.detach().float()
    if hops > 0:
        adj = normalized_adjacency(edge_index, n, torch.float32)
        for _ in range(hops):
            h = adj @ h
    xn, hn = _unit_rows(x.detach().float()), _unit_rows(h)
    s_min = min_cosine(xn, hn, budget)
    row_sums = xn.double() @ hn.double().sum(dim=0) - n * s_min
    row_sums = row_sums.clamp_min(0.0)
    top = float(row_sums.max()) if n else 0.0
    if top <= n * 1e-6:  # every similarity equal: no node stands out (the authors' code gives 0)
        return torch.zeros(n, dtype=torch.float32, device=x.device)
    return (row_sums / top).float()
