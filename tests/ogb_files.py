"""Write tiny OGB node-property datasets in OGB's exact raw layout, for loader tests.

The layout is the one ``ogb.nodeproppred.PygNodePropPredDataset`` reads (ogb 1.3.6,
``ogb/io/read_graph_raw.py``) and the unzipped download has, under ``ROOT/<dir name>/``:

* homogeneous (ogbn-arxiv, ogbn-products): ``raw/{edge,num-node-list,num-edge-list,node-feat,
  node-label}.csv.gz`` (+ ``raw/node_year.csv.gz`` for arxiv), ``split/<split>/{train,valid,
  test}.csv.gz``, ``mapping/`` (not read by ogb) and ``RELEASE_v<version>.txt``;
* heterogeneous (ogbn-mag): ``raw/num-node-dict.csv.gz`` (a header of node types and one row of
  counts), ``raw/triplet-type-list.csv.gz``, ``raw/relations/<src>___<rel>___<dst>/{edge,
  num-edge-list,edge_reltype}.csv.gz``, ``raw/node-feat/paper/{node-feat,node_year}.csv.gz``,
  ``raw/nodetype-has-label.csv.gz``, ``raw/node-label/paper/node-label.csv.gz``,
  ``split/time/nodetype-has-split.csv.gz`` and ``split/time/paper/{train,valid,test}.csv.gz``.

Feature values are multiples of 1/8, so they survive the text round trip exactly in float32.
Every writer returns the arrays it wrote, for the tests to compare against.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

#: ``(source, relation, destination)`` of ogbn-mag, as in its ``triplet-type-list.csv.gz``
MAG_RELATIONS = (
    ("author", "affiliated_with", "institution"),
    ("author", "writes", "paper"),
    ("paper", "cites", "paper"),
    ("paper", "has_topic", "field_of_study"),
)


def write_csv_gz(path: Path, rows: Sequence[Sequence[object]] | np.ndarray, header: Sequence[str] | None = None) -> None:
    """``rows`` as comma-separated lines, gzip-compressed (OGB's ``*.csv.gz``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [",".join(header)] if header is not None else []
    lines += [",".join(_cell(v) for v in np.atleast_1d(row)) for row in rows]
    with gzip.open(path, "wt") as f:
        f.write("\n".join(lines) + "\n")


def _cell(value: object) -> str:
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    return str(value.item() if isinstance(value, np.generic) else value)


def _split(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    order = rng.permutation(n)
    a, b = int(0.5 * n), int(0.75 * n)
    return {"train": np.sort(order[:a]), "valid": np.sort(order[a:b]), "test": np.sort(order[b:])}


def _write_split(folder: Path, split: dict[str, np.ndarray]) -> None:
    for part in ("train", "valid", "test"):
        write_csv_gz(folder / f"{part}.csv.gz", split[part].reshape(-1, 1))


@dataclass
class Written:
    """What a writer put on disk (node ids are OGB's, per node type for mag)."""

    folder: Path
    x: np.ndarray
    y: np.ndarray
    edge_index: np.ndarray
    split: dict[str, np.ndarray]
    #: mag only: node counts, edges per relation
    num_nodes_dict: dict[str, int] = field(default_factory=dict)
    edge_index_dict: dict[tuple[str, str, str], np.ndarray] = field(default_factory=dict)


def write_homogeneous(root: Path, dir_name: str, split_name: str, *, num_nodes: int, num_edges: int,
                      num_features: int, num_classes: int, year: bool, seed: int = 0) -> Written:
    """An OGB homogeneous node-classification folder ``root/dir_name`` (random graph)."""
    rng = np.random.default_rng(seed)
    folder = root / dir_name
    src = rng.integers(0, num_nodes, num_edges)
    dst = (src + rng.integers(1, num_nodes, num_edges)) % num_nodes  # no self-loops
    edge_index = np.stack([src, dst])
    x = rng.integers(-16, 16, (num_nodes, num_features)) / 8.0
    y = rng.integers(0, num_classes, num_nodes)
    raw = folder / "raw"
    write_csv_gz(raw / "edge.csv.gz", edge_index.T)
    write_csv_gz(raw / "num-node-list.csv.gz", [[num_nodes]])
    write_csv_gz(raw / "num-edge-list.csv.gz", [[num_edges]])
    write_csv_gz(raw / "node-feat.csv.gz", x)
    write_csv_gz(raw / "node-label.csv.gz", y.reshape(-1, 1))
    if year:
        write_csv_gz(raw / "node_year.csv.gz", rng.integers(2010, 2020, (num_nodes, 1)))
    split = _split(rng, num_nodes)
    _write_split(folder / "split" / split_name, split)
    write_csv_gz(folder / "mapping" / "nodeidx2id.csv.gz", [[i, 1000 + i] for i in range(num_nodes)], header=["node idx", "id"])
    (folder / "RELEASE_v1.txt").write_text("tiny test copy\n")
    return Written(folder, x.astype(np.float32), y, edge_index, split)


def write_ogbn_arxiv(root: Path, *, num_nodes: int = 60, num_edges: int = 150, seed: int = 0) -> Written:
    """Tiny ogbn-arxiv: directed citation edges, 128-d features, labels in ``0..39``, time split."""
    return write_homogeneous(root, "ogbn_arxiv", "time", num_nodes=num_nodes, num_edges=num_edges,
                             num_features=128, num_classes=40, year=True, seed=seed)


def write_ogbn_products(root: Path, *, num_nodes: int = 50, num_edges: int = 120, seed: int = 1) -> Written:
    """Tiny ogbn-products: each undirected edge stored once (ogb adds the inverse), 100-d
    features, labels in ``0..46``, sales-ranking split."""
    return write_homogeneous(root, "ogbn_products", "sales_ranking", num_nodes=num_nodes, num_edges=num_edges,
                             num_features=100, num_classes=47, year=False, seed=seed)


def write_ogbn_mag(root: Path, *, papers: int = 30, authors: int = 20, institutions: int = 5, fields: int = 8,
                   num_features: int = 4, seed: int = 2) -> Written:
    """Tiny ogbn-mag (version 2: ``RELEASE_v2.txt``) with all four relations and features on
    papers only. Every author writes at least one paper and every paper has a topic, so every
    author and field gets features from its papers; institution 0 has no author."""
    rng = np.random.default_rng(seed)
    folder = root / "ogbn_mag"
    raw = folder / "raw"
    counts = {"author": authors, "field_of_study": fields, "institution": institutions, "paper": papers}
    write_csv_gz(raw / "num-node-dict.csv.gz", [[counts[t] for t in sorted(counts)]], header=sorted(counts))
    write_csv_gz(raw / "triplet-type-list.csv.gz", [list(t) for t in MAG_RELATIONS])
    writes = np.concatenate([np.stack([np.arange(authors), rng.integers(0, papers, authors)]),
                             np.stack([rng.integers(0, authors, papers), np.arange(papers)])], axis=1)
    affiliated = np.stack([np.arange(authors), 1 + rng.integers(0, institutions - 1, authors)])
    cites_src = rng.integers(0, papers, 3 * papers)
    cites = np.stack([cites_src, (cites_src + rng.integers(1, papers, 3 * papers)) % papers])
    topic = np.stack([np.arange(papers), rng.integers(0, fields, papers)])
    edges = {MAG_RELATIONS[0]: affiliated, MAG_RELATIONS[1]: writes, MAG_RELATIONS[2]: cites, MAG_RELATIONS[3]: topic}
    for triplet, edge_index in edges.items():
        rel_dir = raw / "relations" / "___".join(triplet)
        write_csv_gz(rel_dir / "edge.csv.gz", edge_index.T)
        write_csv_gz(rel_dir / "num-edge-list.csv.gz", [[edge_index.shape[1]]])
        write_csv_gz(rel_dir / "edge_reltype.csv.gz", np.full((edge_index.shape[1], 1), MAG_RELATIONS.index(triplet)))
    x = rng.integers(-16, 16, (papers, num_features)) / 8.0
    y = rng.integers(0, 349, papers)
    write_csv_gz(raw / "node-feat" / "paper" / "node-feat.csv.gz", x)
    write_csv_gz(raw / "node-feat" / "paper" / "node_year.csv.gz", rng.integers(2010, 2020, (papers, 1)))
    write_csv_gz(raw / "nodetype-has-label.csv.gz", [[t == "paper" for t in sorted(counts)]], header=sorted(counts))
    write_csv_gz(raw / "node-label" / "paper" / "node-label.csv.gz", y.reshape(-1, 1))
    split = _split(rng, papers)
    split_dir = folder / "split" / "time"
    write_csv_gz(split_dir / "nodetype-has-split.csv.gz", [[t == "paper" for t in sorted(counts)]], header=sorted(counts))
    _write_split(split_dir / "paper", split)
    (folder / "RELEASE_v2.txt").write_text("tiny test copy\n")
    return Written(folder, x.astype(np.float32), y, cites, split, counts, edges)
