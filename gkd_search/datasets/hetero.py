"""Heterogeneous graphs in the relational format RGCN reads, and a seeded synthetic one.

A heterogeneous graph (node types, typed relations ``(source type, relation, destination
type)``) is stored as one node set with an edge type per edge, the input format of the
relational GCN of Schlichtkrull et al., "Modeling Relational Data with Graph Convolutional
Networks" (ESWC 2018), Eq. 2: ``h_i' = W_0 h_i + sum_r sum_{j in N_i^r} W_r h_j / c_{i,r}``
sums over the relation types ``r`` of the edges into ``i``. :func:`typed_graph` is the one
conversion every heterogeneous dataset (``ogbn-mag``, ``synthetic-hetero``) goes through.

Node features for types that have none (ogbn-mag's authors, fields of study, institutions) are
our choice: the mean of the neighbours' features, then a one-hot of the node type. The OGB
R-GCN baseline (``examples/nodeproppred/mag/rgcn.py``) gives those nodes learnable embeddings
instead; we do not, because an embedding table is transductive: it has one row per node of the
training graph, so the model's size is tied to the node count (1.9 M rows on ogbn-mag, far more
parameters than the network), it cannot predict for nodes it has not seen, and subgraph or
chunked inference would have to carry the table's row ids along. Features computed from the
graph keep every model a function of ``(x, edge_index, edge_type)`` like the homogeneous ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.utils import coalesce

from ..errors import UsageError
from ..hookspecs import hookimpl
from ..types import DatasetSpec, GraphDataset
from ._files import per_class_split

Relation = tuple[str, str, str]

#: edges gathered at once when averaging neighbour features (bounds the ``[chunk, F]`` buffer)
_FILL_CHUNK = 1 << 20


def typed_graph(
    x_dict: Mapping[str, Tensor],
    edge_index_dict: Mapping[Relation, Tensor],
    num_nodes_dict: Mapping[str, int],
    target: str,
    y: Tensor,
    masks: Mapping[str, Tensor],
    *,
    add_reverse: bool = True,
) -> tuple[Data, tuple[str, ...]]:
    """Flatten a heterogeneous graph into one :class:`Data` with ``edge_type`` and ``node_type``.

    Node ids: the ``target`` type first (its node ``i`` keeps id ``i``), then the other types in
    sorted order, each a contiguous block; ``node_type`` ``[N]`` numbers the types in that order
    (target = 0). Edge types: the relations in sorted order of their ``(src, rel, dst)``
    triplets, then, with ``add_reverse``, one reverse type per relation in the same order
    (source and destination swapped; also for relations within one type, like ``cites``, so a
    relational model can tell citing from cited). Edges are grouped by type, in the given order
    within a type, and not de-duplicated. A relation is named ``rel`` (``src__rel__dst`` if two
    triplets share ``rel``); its reverse ``rev_<name>``.

    Features (our choice, see the module docstring): the target type's ``x``; a type without
    features gets, per node, the mean of the features of its neighbours of featured types over
    every relation between them, in either direction (a neighbour counts once per edge). This
    runs in rounds until no type is left: a round fills every type with a featured neighbour
    type, using only the types featured before the round, so the result does not depend on any
    iteration order (ogbn-mag: round 1 author and field of study from their papers, round 2
    institution from its authors). Nodes without such a neighbour, and types that never get
    one, are zero. Then a one-hot of the node type (``T`` columns) is appended to every row, so
    ``x`` is ``[N, F + T]``: a filled node's features would otherwise equal its only neighbour's,
    and graph-free students (MLP) could not tell the types apart.

    Args:
        x_dict: features ``[N_t, F]`` of the types that have them (the target must; all ``F``
            equal).
        edge_index_dict: ``[2, E_r]`` per relation, in each type's own node ids.
        num_nodes_dict: nodes per type (every type, featured or not).
        target: the type being classified.
        y: labels of the target nodes ``[N_target]`` (or ``[N_target, 1]``).
        masks: ``train``, ``val``, ``test``: boolean ``[N_target]`` or target node ids.
        add_reverse: add a reverse edge type per relation.

    Returns:
        ``(data, relation_names)``: ``data`` has ``x`` ``[N, F + T]``, ``edge_index``
        ``[2, E]``, ``edge_type`` ``[E]``, ``node_type`` ``[N]``, ``y`` ``[N]`` (``-1`` off
        the target type), boolean ``train_mask``, ``val_mask``, ``test_mask`` and
        ``target_mask`` ``[N]`` (``False`` off the target type); ``relation_names`` in
        edge-type order.
    """
    if target not in num_nodes_dict or target not in x_dict:
        raise ValueError(f"typed_graph: the target type {target!r} needs a node count and features")
    types = [target, *sorted(t for t in num_nodes_dict if t != target)]
    relations = sorted(edge_index_dict)
    for src, rel, dst in relations:
        if src not in num_nodes_dict or dst not in num_nodes_dict:
            raise ValueError(f"typed_graph: relation {(src, rel, dst)} joins a type without a node count")
    sizes = {t: int(num_nodes_dict[t]) for t in types}
    offsets, total = {}, 0
    for t in types:
        offsets[t] = total
        total += sizes[t]

    features = _fill_features(x_dict, edge_index_dict, sizes, types)
    node_type = torch.cat([torch.full((sizes[t],), i, dtype=torch.long) for i, t in enumerate(types)])
    x = torch.cat([torch.cat([features[t] for t in types]), F.one_hot(node_type, len(types)).float()], dim=1)

    rel_names = [r for _, r, _ in relations]
    unique = len(set(rel_names)) == len(rel_names)
    names = [rel if unique else f"{src}__{rel}__{dst}" for src, rel, dst in relations]
    blocks: list[Tensor] = []
    for src, rel, dst in relations:
        ei = edge_index_dict[(src, rel, dst)].long()
        blocks.append(torch.stack([ei[0] + offsets[src], ei[1] + offsets[dst]]))
    if add_reverse:
        blocks += [b.flip(0) for b in blocks]
        names += [f"rev_{n}" for n in names]
    edge_index = torch.cat(blocks, dim=1) if blocks else torch.empty(2, 0, dtype=torch.long)
    edge_type = torch.cat([torch.full((b.size(1),), r, dtype=torch.long) for r, b in enumerate(blocks)]) \
        if blocks else torch.empty(0, dtype=torch.long)

    n_target = sizes[target]
    labels = torch.full((total,), -1, dtype=torch.long)
    labels[:n_target] = y.reshape(-1).long()
    data = Data(x=x, edge_index=edge_index, edge_type=edge_type, node_type=node_type, y=labels, num_nodes=total)
    for key in ("train", "val", "test"):
        mask = torch.zeros(total, dtype=torch.bool)
        mask[:n_target] = _as_mask(masks[key], n_target)
        data[f"{key}_mask"] = mask
    data.target_mask = node_type == 0
    return data, tuple(names)


def _as_mask(value: Tensor, n: int) -> Tensor:
    if value.dtype == torch.bool:
        if value.numel() != n:
            raise ValueError(f"typed_graph: a boolean mask has {value.numel()} entries for {n} target nodes")
        return value.reshape(-1)
    mask = torch.zeros(n, dtype=torch.bool)
    mask[value.reshape(-1).long()] = True
    return mask


def _fill_features(x_dict: Mapping[str, Tensor], edge_index_dict: Mapping[Relation, Tensor],
                   sizes: Mapping[str, int], types: list[str]) -> dict[str, Tensor]:
    """Per type ``[N_t, F]``: given features, or the rounds of neighbour means of :func:`typed_graph`."""
    dims = {t: int(x.size(1)) for t, x in x_dict.items()}
    if len(set(dims.values())) != 1:
        raise ValueError(f"typed_graph: feature widths differ between node types: {dims}")
    width = next(iter(dims.values()))
    features = {t: x_dict[t].float() for t in types if t in x_dict}
    pending = [t for t in types if t not in features]
    while pending:
        done = dict(features)  # the types featured before this round
        filled = {}
        for t in pending:
            total = torch.zeros(sizes[t], width)
            count = torch.zeros(sizes[t])
            touched = False
            for (src, _, dst), ei in sorted(edge_index_dict.items()):
                for own, other, own_row, other_row in ((dst, src, 1, 0), (src, dst, 0, 1)):
                    if own != t or other not in done or other == t:
                        continue
                    touched = True
                    for start in range(0, ei.size(1), _FILL_CHUNK):
                        part = ei[:, start:start + _FILL_CHUNK].long()
                        total.index_add_(0, part[own_row], done[other][part[other_row]])
                        count.index_add_(0, part[own_row], torch.ones(part.size(1)))
            if touched:
                filled[t] = total / count.clamp(min=1).unsqueeze(1)
        if not filled:
            for t in pending:
                features[t] = torch.zeros(sizes[t], width)
            break
        features.update(filled)
        pending = [t for t in pending if t not in filled]
    return features


# ------------------------------------------------------------------------------ synthetic


def make_synthetic_hetero(papers: int, authors: int, fields: int, features: int, classes: int, *, seed: int,
                          homophily: float = 0.8, noise: float = 3.0) -> dict[str, Any]:
    """A seeded paper/author/field graph whose relations carry the paper classes.

    Papers get uniform random classes and features ``centroid[class] + noise * N(0, I)`` (noisy
    enough that features alone classify poorly). With probability ``homophily`` (else a uniform
    random paper or field): each of ``4 * papers`` citations points to a paper of the citing
    paper's class; each author has a class and each of ``3 * papers`` ``writes`` edges joins a
    random author to a paper of that class; field ``f`` has class ``f mod classes`` and each
    paper has 2 topics of its class. Self-citations and duplicate edges are dropped. Authors
    and fields have no features. Returns the arguments of :func:`typed_graph` (without masks).
    """
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (papers,), generator=g)
    centroids = torch.randn(classes, features, generator=g)
    x = centroids[y] + noise * torch.randn(papers, features, generator=g)
    order = torch.argsort(y, stable=True)
    counts = torch.bincount(y, minlength=classes)
    starts = torch.cumsum(counts, 0) - counts

    def paper_of_class(cls: Tensor) -> Tensor:
        offset = (torch.rand(cls.numel(), generator=g) * counts[cls].clamp(min=1)).long()
        return order[(starts[cls] + offset).clamp(max=papers - 1)]

    def mostly(same: Tensor, high: int) -> Tensor:
        other = torch.randint(0, high, (same.numel(),), generator=g)
        return torch.where(torch.rand(same.numel(), generator=g) < homophily, same, other)

    citing = torch.randint(0, papers, (4 * papers,), generator=g)
    cited = mostly(paper_of_class(y[citing]), papers)
    keep = citing != cited
    cites = coalesce(torch.stack([citing[keep], cited[keep]]), num_nodes=papers)

    author_class = torch.randint(0, classes, (authors,), generator=g)
    writer = torch.randint(0, authors, (3 * papers,), generator=g)
    written = mostly(paper_of_class(author_class[writer]), papers)
    writes = coalesce(torch.stack([writer, written]), num_nodes=max(authors, papers))

    paper = torch.arange(papers).repeat(2)
    per_class = (fields - y[paper] + classes - 1) // classes  # fields f with f % classes == y
    same_field = y[paper] + classes * (torch.rand(paper.numel(), generator=g) * per_class).long()
    topic = coalesce(torch.stack([paper, mostly(same_field, fields)]), num_nodes=max(papers, fields))

    return {
        "x_dict": {"paper": x},
        "edge_index_dict": {
            ("author", "writes", "paper"): writes,
            ("paper", "cites", "paper"): cites,
            ("paper", "has_topic", "field_of_study"): topic,
        },
        "num_nodes_dict": {"paper": papers, "author": authors, "field_of_study": fields},
        "y": y,
    }


class SyntheticHetero(DatasetSpec):
    """``synthetic-hetero:papers=2000,authors=1000,fields=50,features=32,classes=4``.

    Papers (the target type) with authors and fields of study (see :func:`make_synthetic_hetero`),
    converted by :func:`typed_graph` with reverse relations: 6 relation types. Split: 20 train
    and 30 validation papers per class, the other papers test (:func:`per_class_split`). The
    graph and the split are seeded by ``--seed``.
    """

    name = "synthetic-hetero"
    description = ("seeded heterogeneous graph (papers, authors, fields); options papers, authors, fields, "
                   "features, classes, homophily")
    default_teacher = "rgcn:2:64"
    options = {"papers": 2000, "authors": 1000, "fields": 50, "features": 32, "classes": 4, "homophily": 0.8}

    def load(self, root: Optional[Path], cache_dir: Path, seed: int, **options: Any) -> GraphDataset:
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise UsageError(f"synthetic-hetero: unknown option {unknown[0]!r} (known: {', '.join(self.options)})")
        cfg = {**self.options, **options}
        try:
            papers, authors, fields, features, classes = (
                int(cfg[k]) for k in ("papers", "authors", "fields", "features", "classes"))
            homophily = float(cfg["homophily"])
        except ValueError as exc:
            raise UsageError(f"synthetic-hetero: option values must be numbers ({exc})") from None
        if min(authors, features) < 1 or classes < 2 or not 0 <= homophily <= 1:
            raise UsageError("synthetic-hetero: authors, features must be >= 1, classes >= 2, 0 <= homophily <= 1")
        if papers < classes * 60:
            raise UsageError(f"synthetic-hetero: papers={papers} is too few for {classes} classes; "
                             f"use at least {classes * 60}")
        if fields < classes:
            raise UsageError(f"synthetic-hetero: fields={fields} is fewer than classes={classes}; "
                             f"use at least {classes} (each class needs a field)")
        parts = make_synthetic_hetero(papers, authors, fields, features, classes, seed=seed, homophily=homophily)
        train, val, test = per_class_split(parts["y"], classes, 20, 30, seed)
        data, relation_names = typed_graph(parts["x_dict"], parts["edge_index_dict"], parts["num_nodes_dict"],
                                           "paper", parts["y"], {"train": train, "val": val, "test": test})
        label = f"synthetic-hetero-{papers}p-{authors}a-{fields}fos-{features}f-{classes}c"
        return GraphDataset(label, data, classes, relation_names=relation_names)


@hookimpl
def gkd_datasets() -> list[DatasetSpec]:
    return [SyntheticHetero()]
