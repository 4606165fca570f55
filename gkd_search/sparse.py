"""Sparse products for message passing and for bag-of-words features (CSR).

Message passing as PyG runs it by default gathers one message per edge (``[E, d]``), weights it
and scatters it into the targets: two ``[E, d]`` tensors per layer and direction, and random
scatters. A GCN layer is the product ``P H`` of a constant sparse matrix with a dense one
(Kipf & Welling 2017, Eq. 2); PyG's guide "Memory-Efficient Aggregations" runs it as a sparse
matrix product instead, which needs no per-edge tensor. :class:`SparseMatrix` does that with
``torch.sparse`` CSR (pyg-lib and torch-sparse have no wheel for our torch): the matrix and its
transpose (for the backward pass, ``dL/dH = P^T dL/d(PH)``) are built once per graph and cached,
so an epoch costs two sparse-dense products per layer and nothing per edge.

Bag-of-words features are mostly zeros (Cora 1.3% non-zero, Coauthor CS 0.9%). When a feature
matrix is sparse enough (:data:`MAX_FEATURE_DENSITY`), the first layer's ``X W`` runs as a sparse
product too (:class:`SparseFeatures`), with dropout applied to the non-zeros only (the zeros of
``X`` stay zero under dropout, so that is the same operation).

What this module caches is keyed by the identity of the tensors it was built from (a training
loop passes the same ``edge_index`` and ``x`` every epoch) together with their version counter,
so an in-place change builds again; an entry is dropped when its tensor is freed.
:func:`disabled` turns every fast path off (the benchmarks' "before"; the tests' reference).
"""

from __future__ import annotations

import contextlib
import threading
import warnings
import weakref
from collections import OrderedDict
from typing import Any, Callable, Hashable, Iterator, Optional, Union

import torch
from torch import Tensor

#: Feature matrices with at most this fraction of non-zeros are kept in CSR for the first layer.
#: Measured (``docs/large-graphs.md``): a ``gcn:2:256`` training step is faster with CSR features
#: on Cora (1.3% non-zero: 20 ms against 73 ms with dense features) and slower on PubMed (10%,
#: TF-IDF: 553 ms against 266 ms) and Photo (35%: 523 ms against 155 ms).
MAX_FEATURE_DENSITY = 0.05
#: Below this many rows a feature matrix stays dense (the conversion costs more than it saves).
MIN_SPARSE_ROWS = 64

_state = threading.local()


def enabled() -> bool:
    """Whether the sparse fast paths are on in this thread: they are, unless :func:`disabled` or
    under ``torch.inference_mode``.

    Inference mode is where requests are answered (``serving.answer``, the latency protocol, the
    MLflow model): each request builds its own small subgraph and uses it once, so building a CSR
    matrix for it costs more than it saves (measured on Cora, GCN and GraphSAGE requests: p50
    about 5% higher in CSR), and the edge-list path, timed and served alike, stays."""
    return not getattr(_state, "disabled", False) and not torch.is_inference_mode_enabled()


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Run the block with PyG's edge-list message passing and dense features, as before the fast
    paths existed: the reference the tests compare with and the benchmarks' "before"."""
    previous = getattr(_state, "disabled", False)
    _state.disabled = True
    try:
        yield
    finally:
        _state.disabled = previous


# ------------------------------------------------------------------------------ the cache


class _IdentityCache:
    """A small LRU cache keyed by tensors' identities and version counters; an entry goes when
    one of its tensors is freed."""

    def __init__(self, max_entries: int = 16) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _key(tensors: tuple[Tensor, ...], extra: Hashable) -> Hashable:
        return (tuple((id(t), t._version, t.data_ptr(), tuple(t.shape), str(t.device)) for t in tensors), extra)

    def get(self, tensors: tuple[Tensor, ...], extra: Hashable, build: Callable[[], Any]) -> Any:
        if any(t.is_inference() for t in tensors):  # no version counter: built for this call only
            return build()
        key = self._key(tensors, extra)
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
        value = build()
        with self._lock:
            self._entries[key] = value
            for tensor in tensors:
                weakref.finalize(tensor, self._drop, key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return value

    def _drop(self, key: Hashable) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_CACHE = _IdentityCache()


def clear_cache() -> None:
    """Forget every cached matrix (tests; freeing memory between graphs)."""
    _CACHE.clear()


# ------------------------------------------------------------------------------ sparse matrices


def _csr(crow: Tensor, col: Tensor, values: Tensor, shape: tuple[int, int]) -> Tensor:
    with warnings.catch_warnings():  # torch calls CSR "beta"; these products are its stable core
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
        return torch.sparse_csr_tensor(crow, col, values, shape, check_invariants=False)


class SparseMatrix:
    """A constant ``[rows, cols]`` matrix in CSR whose products are differentiable in the dense
    operand: ``matmul(H) = M H``, with ``M^T dL/d(MH)`` as the gradient of ``H``.

    The transpose is built on the first backward pass and kept. Duplicate entries are summed
    (as message passing sums parallel edges).
    """

    def __init__(self, crow: Tensor, col: Tensor, values: Tensor, shape: tuple[int, int]) -> None:
        self.crow, self.col, self.values = crow, col, values
        self.shape = (int(shape[0]), int(shape[1]))
        self._csr: Optional[Tensor] = None
        #: the transpose's structure (crow, col) and which of ``values`` each of its entries is
        self._t_structure: Optional[tuple[Tensor, Tensor, Tensor]] = None
        self._t_csr: Optional[Tensor] = None

    @classmethod
    def from_coo(cls, rows: Tensor, cols: Tensor, values: Tensor, shape: tuple[int, int]) -> SparseMatrix:
        """From ``(row, col, value)`` triples in any order, duplicates summed."""
        num_rows, num_cols = int(shape[0]), int(shape[1])
        key = rows.to(torch.long) * num_cols + cols.to(torch.long)
        key, order = torch.sort(key)
        values = values[order]
        if key.numel() > 1 and bool((key[1:] == key[:-1]).any()):
            key, inverse = torch.unique_consecutive(key, return_inverse=True)
            values = values.new_zeros(key.numel()).index_add_(0, inverse, values)
        rows, cols = key // num_cols, key % num_cols
        crow = torch.zeros(num_rows + 1, dtype=torch.long, device=rows.device)
        crow[1:] = torch.cumsum(torch.bincount(rows, minlength=num_rows), 0)
        return cls(crow, cols.contiguous(), values.contiguous(), (num_rows, num_cols))

    @classmethod
    def from_dense(cls, dense: Tensor) -> SparseMatrix:
        csr = dense.to_sparse_csr()
        return cls(csr.crow_indices(), csr.col_indices(), csr.values(), tuple(dense.shape))

    @property
    def nnz(self) -> int:
        return int(self.col.numel())

    def csr(self) -> Tensor:
        if self._csr is None:
            self._csr = _csr(self.crow, self.col, self.values, self.shape)
        return self._csr

    def _transpose_structure(self) -> tuple[Tensor, Tensor, Tensor]:
        if self._t_structure is None:
            rows = torch.repeat_interleave(torch.arange(self.shape[0], device=self.col.device),
                                           self.crow[1:] - self.crow[:-1])
            order = torch.argsort(self.col * self.shape[0] + rows)
            t_crow = torch.zeros(self.shape[1] + 1, dtype=torch.long, device=self.col.device)
            t_crow[1:] = torch.cumsum(torch.bincount(self.col, minlength=self.shape[1]), 0)
            self._t_structure = (t_crow, rows[order].contiguous(), order)
        return self._t_structure

    def transpose_csr(self) -> Tensor:
        if self._t_csr is None:
            t_crow, t_col, order = self._transpose_structure()
            self._t_csr = _csr(t_crow, t_col, self.values[order], (self.shape[1], self.shape[0]))
        return self._t_csr

    def with_values(self, values: Tensor) -> SparseMatrix:
        """The same structure with other values (dropout on the non-zeros); shares the transpose's
        structure."""
        other = SparseMatrix(self.crow, self.col, values, self.shape)
        other._t_structure = self._transpose_structure() if torch.is_grad_enabled() else self._t_structure
        return other

    def to(self, dtype: torch.dtype) -> SparseMatrix:
        if self.values.dtype == dtype:
            return self
        other = self.with_values(self.values.to(dtype))
        return other

    def matmul(self, dense: Tensor) -> Tensor:
        """``M @ dense`` (``dense`` ``[cols, d]``), differentiable in ``dense``."""
        matrix = self.to(dense.dtype)
        if dense.requires_grad and torch.is_grad_enabled():
            return _SparseDenseProduct.apply(matrix, dense)
        return torch.sparse.mm(matrix.csr(), dense.contiguous())

    def to_dense(self) -> Tensor:
        return self.csr().to_dense()


class _SparseDenseProduct(torch.autograd.Function):
    """``M H`` with ``M`` constant: the backward pass is ``M^T G`` (the cached transpose)."""

    @staticmethod
    def forward(ctx, matrix: SparseMatrix, dense: Tensor) -> Tensor:  # type: ignore[override]
        ctx.matrix = matrix
        return torch.sparse.mm(matrix.csr(), dense.contiguous())

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        return None, torch.sparse.mm(ctx.matrix.transpose_csr(), grad.contiguous())


# ------------------------------------------------------------------------------ graphs


#: ``normalize(edge_index, num_nodes) -> (edge_index, edge_weight)``
Normalizer = Callable[[Tensor, int], "tuple[Tensor, Tensor]"]


def _from_edges(edge_index: Tensor, edge_weight: Optional[Tensor], num_nodes: int, reduce: str) -> SparseMatrix:
    src, dst = edge_index[0], edge_index[1]
    if edge_weight is None:
        edge_weight = torch.ones(src.numel(), device=src.device)
    values = edge_weight.detach().to(torch.float32)
    if reduce == "mean":  # PyG's mean aggregation: each parallel edge counts
        degree = torch.bincount(dst, minlength=num_nodes).clamp(min=1).to(values.dtype)
        values = values / degree[dst]
    return SparseMatrix.from_coo(dst, src, values, (num_nodes, num_nodes))


def propagation_matrix(edge_index: Tensor, num_nodes: int, *, normalize: Optional[Normalizer] = None,
                       edge_weight: Optional[Tensor] = None, reduce: str = "sum") -> SparseMatrix:
    """The ``[N, N]`` matrix of one message-passing step, rows = targets: ``out = M @ h`` is
    ``out_i = reduce_{j -> i} w_ji h_j`` (``reduce``: ``sum`` or ``mean``).

    ``normalize`` (GCN's ``D^-1/2 (A + I) D^-1/2``) gives the weights when ``edge_weight`` is not
    given (then the edges are already normalised, as a served request's are). Cached per
    ``edge_index`` (and ``edge_weight``) object: a training loop builds it once.
    """
    if reduce not in ("sum", "mean"):
        raise ValueError(f"reduce must be 'sum' or 'mean', got {reduce!r}")
    tensors = (edge_index,) if edge_weight is None else (edge_index, edge_weight)
    norm_key = "" if normalize is None or edge_weight is not None else f"{normalize.__module__}.{normalize.__qualname__}"

    def build() -> SparseMatrix:
        ei, w = edge_index, edge_weight
        if w is None and normalize is not None:
            ei, w = normalize(edge_index, num_nodes)
        return _from_edges(ei, w, num_nodes, reduce)

    return _CACHE.get(tensors, ("graph", int(num_nodes), norm_key, reduce), build)


# ------------------------------------------------------------------------------ features


class SparseFeatures:
    """Node features ``[N, F]`` kept in CSR, for the first layer's ``X W^T``.

    Only :meth:`linear` and :meth:`dropout` are offered: a model applies them where it applies
    a linear map to its input (the first layer), and reads :meth:`to_dense` anywhere else.
    """

    def __init__(self, matrix: SparseMatrix) -> None:
        self.matrix = matrix

    @property
    def shape(self) -> torch.Size:
        return torch.Size(self.matrix.shape)

    def size(self, dim: Optional[int] = None) -> Union[int, torch.Size]:
        return self.shape if dim is None else self.shape[dim]

    @property
    def dtype(self) -> torch.dtype:
        return self.matrix.values.dtype

    @property
    def density(self) -> float:
        rows, cols = self.matrix.shape
        return self.matrix.nnz / max(rows * cols, 1)

    def dropout(self, p: float, training: bool) -> SparseFeatures:
        """``F.dropout`` on the non-zeros (the zeros stay zero under dropout anyway)."""
        if not training or p <= 0.0:
            return self
        values = torch.nn.functional.dropout(self.matrix.values, p=p, training=True)
        return SparseFeatures(self.matrix.with_values(values))

    def linear(self, weight: Tensor, bias: Optional[Tensor] = None) -> Tensor:
        """``X W^T + b`` (``weight`` ``[out, F]``), differentiable in ``weight`` and ``bias``."""
        matrix = self.matrix.to(weight.dtype)
        if weight.requires_grad and torch.is_grad_enabled():
            out = _SparseDenseProduct.apply(matrix, weight.t())
        else:
            out = torch.sparse.mm(matrix.csr(), weight.t().contiguous())
        return out if bias is None else out + bias

    def to_dense(self) -> Tensor:
        return self.matrix.to_dense()


Features = Union[Tensor, SparseFeatures]


def _density(x: Tensor) -> float:
    return float(torch.count_nonzero(x)) / max(x.numel(), 1)


def sparse_features(x: Tensor) -> Features:
    """``x`` as :class:`SparseFeatures` when it is sparse enough for the first layer's product to
    be faster in CSR (at most :data:`MAX_FEATURE_DENSITY` non-zeros, at least
    :data:`MIN_SPARSE_ROWS` rows), else ``x`` itself. Cached per tensor: a training loop converts
    its feature matrix once."""
    if (not enabled() or isinstance(x, SparseFeatures) or x.dim() != 2 or not x.is_floating_point()
            or x.size(0) < MIN_SPARSE_ROWS or x.requires_grad):
        return x

    def build() -> Any:
        if _density(x) > MAX_FEATURE_DENSITY:
            return None
        return SparseFeatures(SparseMatrix.from_dense(x))  # holds no reference to x

    converted = _CACHE.get((x,), ("features", MAX_FEATURE_DENSITY), build)
    return x if converted is None else converted


def dense(x: Features) -> Tensor:
    """The features as a dense tensor."""
    return x.to_dense() if isinstance(x, SparseFeatures) else x


def dropout(x: Features, p: float, training: bool) -> Features:
    """``F.dropout`` for dense or sparse features."""
    if isinstance(x, SparseFeatures):
        return x.dropout(p, training)
    return torch.nn.functional.dropout(x, p=p, training=training)


def linear(x: Features, weight: Tensor, bias: Optional[Tensor] = None) -> Tensor:
    """``x W^T + b`` for dense or sparse features (``F.linear``)."""
    if isinstance(x, SparseFeatures):
        return x.linear(weight, bias)
    return torch.nn.functional.linear(x, weight, bias)
