"""Small graphs written in the raw layouts PyG's dataset classes read (no data is downloaded):
Shchur et al.'s ``.npz`` (``Amazon``, ``Coauthor``), Planetoid's pickles (``ind.<name>.*``),
WikipediaNetwork's Geom-GCN text files with ten split files, and a TUDataset (several graphs)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from gkd_search.datasets.synthetic import make_synthetic_graph


def graph(nodes: int = 400, classes: int = 4, features: int = 12, seed: int = 0):
    """A seeded homophilous graph: ``(x [N, F] binary-ish float, edge_index [2, E], y [N])``."""
    data = make_synthetic_graph(nodes, nodes * 5, features, classes, seed=seed, homophily=0.9, noise=0.8)
    x = (data.x > 0.3).float()  # bag-of-words-like: PyG's npz reader binarises features
    return x, data.edge_index, data.y


def write_shchur_npz(path: Path, x, edge_index, y) -> Path:
    """The ``amazon_electronics_*.npz`` / ``ms_academic_*.npz`` format (``torch_geometric.io.read_npz``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = x.size(0)
    attr = sp.csr_matrix(x.numpy())
    adj = sp.csr_matrix((np.ones(edge_index.size(1), dtype=np.float32),
                         (edge_index[0].numpy(), edge_index[1].numpy())), shape=(n, n))
    np.savez(path, attr_data=attr.data, attr_indices=attr.indices, attr_indptr=attr.indptr, attr_shape=attr.shape,
             adj_data=adj.data, adj_indices=adj.indices, adj_indptr=adj.indptr, adj_shape=adj.shape,
             labels=y.numpy())
    return path


def write_planetoid(raw: Path, prefix: str, x, edge_index, y, *, train: int, test: int) -> Path:
    """``ind.<prefix>.{x,tx,allx,y,ty,ally,graph,test.index}``: the first ``train`` nodes train,
    the next 500 validation, the last ``test`` nodes test (as the public split is read)."""
    raw.mkdir(parents=True, exist_ok=True)
    n, classes = x.size(0), int(y.max()) + 1
    assert n - test >= train + 500, "Planetoid's reader takes the 500 nodes after the training ones as validation"
    onehot = np.eye(classes, dtype=np.float32)[y.numpy()]
    features = sp.csr_matrix(x.numpy())
    items = {
        "x": features[:train], "tx": features[n - test:], "allx": features[:n - test],
        "y": onehot[:train], "ty": onehot[n - test:], "ally": onehot[:n - test],
    }
    adjacency: dict[int, list[int]] = {i: [] for i in range(n)}
    for s, d in edge_index.t().tolist():
        adjacency[s].append(d)
    items["graph"] = adjacency
    for name, value in items.items():
        with open(raw / f"ind.{prefix}.{name}", "wb") as handle:
            pickle.dump(value, handle)
    (raw / f"ind.{prefix}.test.index").write_text("\n".join(str(i) for i in range(n - test, n)) + "\n")
    return raw


def write_wikipedia_geom_gcn(raw: Path, name: str, x, edge_index, y, splits: int = 10, seed: int = 0) -> Path:
    """WikipediaNetwork's Geom-GCN files: ``out1_node_feature_label.txt``, ``out1_graph_edges.txt``
    and ``<name>_split_0.6_0.2_<k>.npz`` with boolean masks (60/20/20, seeded per split)."""
    raw.mkdir(parents=True, exist_ok=True)
    lines = ["node_id\tfeature\tlabel"] + [
        f"{i}\t{','.join(str(int(v)) for v in x[i].tolist())}\t{int(y[i])}" for i in range(x.size(0))]
    (raw / "out1_node_feature_label.txt").write_text("\n".join(lines) + "\n")
    edges = ["node_id\tnode_id"] + [f"{s}\t{d}" for s, d in edge_index.t().tolist()]
    (raw / "out1_graph_edges.txt").write_text("\n".join(edges) + "\n")
    n = x.size(0)
    generator = torch.Generator().manual_seed(seed)
    for k in range(splits):
        order = torch.randperm(n, generator=generator)
        masks = {key: np.zeros(n, dtype=bool) for key in ("train_mask", "val_mask", "test_mask")}
        masks["train_mask"][order[:int(0.6 * n)].numpy()] = True
        masks["val_mask"][order[int(0.6 * n):int(0.8 * n)].numpy()] = True
        masks["test_mask"][order[int(0.8 * n):].numpy()] = True
        np.savez(raw / f"{name}_split_0.6_0.2_{k}.npz", **masks)
    return raw


def write_tudataset(raw: Path, name: str, graphs: int = 3, nodes: int = 5) -> Path:
    """A TUDataset (graph classification): ``<name>_A.txt``, ``_graph_indicator.txt``,
    ``_graph_labels.txt`` for ``graphs`` rings of ``nodes`` nodes."""
    raw.mkdir(parents=True, exist_ok=True)
    edges, indicator = [], []
    for g in range(graphs):
        base = g * nodes
        for i in range(nodes):
            a, b = base + i + 1, base + (i + 1) % nodes + 1  # 1-based ids
            edges += [f"{a}, {b}", f"{b}, {a}"]
            indicator.append(str(g + 1))
    (raw / f"{name}_A.txt").write_text("\n".join(edges) + "\n")
    (raw / f"{name}_graph_indicator.txt").write_text("\n".join(indicator) + "\n")
    (raw / f"{name}_graph_labels.txt").write_text("\n".join(str(g % 2) for g in range(graphs)) + "\n")
    (raw / f"{name}_node_labels.txt").write_text("\n".join("0" for _ in indicator) + "\n")
    return raw
