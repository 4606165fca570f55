"""A graph of the user's own (``--dataset PATH``, ``file:path=...``): the two formats, the splits,
and one clear error for every bad graph."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from pyg_files import graph
from torch_geometric.data import Data

from gkd_search.datasets._graph import GraphFileError
from gkd_search.loading import parse_dataset, typed_dataset_options

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tensors():
    return graph(nodes=400, classes=4, features=12, seed=3)


def write_npz(path: Path, **arrays) -> Path:
    np.savez(path, **{k: (v.numpy() if isinstance(v, torch.Tensor) else v) for k, v in arrays.items()})
    return path


def load(gkd_registry, text: str, tmp_path: Path, seed: int = 0):
    name, options = parse_dataset(text)
    spec = gkd_registry.get("dataset", name)
    return spec.load(None, tmp_path / "cache", seed, **typed_dataset_options(spec, options))


def test_pt_and_npz_of_the_same_graph_load_the_same(gkd_registry, tensors, tmp_path):
    x, edge_index, y = tensors
    torch.save(Data(x=x, edge_index=edge_index, y=y), tmp_path / "mine.pt")
    write_npz(tmp_path / "mine.npz", x=x, edge_index=edge_index, y=y)
    a = load(gkd_registry, str(tmp_path / "mine.pt"), tmp_path)
    b = load(gkd_registry, f"file:path={tmp_path / 'mine.npz'}", tmp_path)
    assert a.name == b.name and a.name.startswith("mine-") and len(a.name) == len("mine-") + 10
    assert a.num_classes == 4 and a.num_nodes == 400
    for key in ("x", "edge_index", "y", "train_mask", "val_mask", "test_mask"):
        assert torch.equal(a.data[key], b.data[key]), key
    assert a.content_hash() == b.content_hash()
    assert a.source == str((tmp_path / "mine.pt").resolve())
    # the default split without masks: 20/30 per class (4 classes), the rest test, seeded
    assert (int(a.data.train_mask.sum()), int(a.data.val_mask.sum())) == (80, 120)
    assert torch.equal(torch.bincount(a.data.y[a.data.train_mask]), torch.full((4,), 20))
    other_seed = load(gkd_registry, str(tmp_path / "mine.pt"), tmp_path, seed=1)
    assert not torch.equal(other_seed.data.train_mask, a.data.train_mask)
    assert other_seed.name == a.name  # the graph's name follows its content, not its split


def test_a_changed_graph_gets_another_name(gkd_registry, tensors, tmp_path):
    x, edge_index, y = tensors
    a = load(gkd_registry, str(write_npz(tmp_path / "g.npz", x=x, edge_index=edge_index, y=y)), tmp_path)
    x2 = x.clone()
    x2[0, 0] += 1
    b = load(gkd_registry, str(write_npz(tmp_path / "g.npz", x=x2, edge_index=edge_index, y=y)), tmp_path)
    assert a.name != b.name and a.name.startswith("g-") and b.name.startswith("g-")


def test_undirected_option(gkd_registry, tmp_path):
    x = torch.eye(4)
    y = torch.tensor([0, 1, 0, 1])
    masks = {"train_mask": [1, 1, 0, 0], "val_mask": [0, 0, 1, 0], "test_mask": [0, 0, 0, 1]}
    path = write_npz(tmp_path / "d.npz", x=x, edge_index=torch.tensor([[0, 1], [1, 2]]), y=y,
                     **{k: np.array(v, dtype=bool) for k, v in masks.items()})
    both = load(gkd_registry, f"file:path={path}", tmp_path)
    directed = load(gkd_registry, f"file:path={path},undirected=false", tmp_path)
    assert both.data.edge_index.size(1) == 4 and directed.data.edge_index.size(1) == 2
    assert both.name != directed.name
    assert torch.equal(both.data.train_mask, torch.tensor([True, True, False, False]))  # split=auto: the masks


def test_random_split_is_stratified_with_the_given_fractions(gkd_registry, tensors, tmp_path):
    x, edge_index, y = tensors
    path = write_npz(tmp_path / "r.npz", x=x, edge_index=edge_index, y=y)
    d = load(gkd_registry, f"file:path={path},split=random,train=0.5,val=0.25", tmp_path).data
    for c in range(4):
        n = int((y == c).sum())
        assert int((d.y[d.train_mask] == c).sum()) == round(0.5 * n)
        assert int((d.y[d.val_mask] == c).sum()) == round(0.25 * n)
    assert bool((d.train_mask | d.val_mask | d.test_mask).all())


def test_masks_with_a_split_dimension_take_column_split_index(gkd_registry, tensors, tmp_path):
    x, edge_index, y = tensors
    n = x.size(0)
    columns = []
    for k in range(3):
        order = torch.randperm(n, generator=torch.Generator().manual_seed(k))
        train, val, test = (torch.zeros(n, dtype=torch.bool) for _ in range(3))
        train[order[:200]], val[order[200:300]], test[order[300:]] = True, True, True
        columns.append((train, val, test))
    stacked = {key: torch.stack([c[i] for c in columns], dim=1) for i, key in
               enumerate(("train_mask", "val_mask", "test_mask"))}
    torch.save({"x": x, "edge_index": edge_index, "y": y, **stacked}, tmp_path / "s.pt")
    d = load(gkd_registry, f"file:path={tmp_path / 's.pt'},split_index=2", tmp_path).data
    assert torch.equal(d.train_mask, columns[2][0]) and torch.equal(d.test_mask, columns[2][2])
    with pytest.raises(GraphFileError, match="split_index=3 but train_mask has 3 split columns"):
        load(gkd_registry, f"file:path={tmp_path / 's.pt'},split_index=3", tmp_path)


def test_unlabelled_nodes_stay_out_of_every_split(gkd_registry, tensors, tmp_path):
    x, edge_index, y = tensors
    y = y.clone()
    y[::5] = -1
    d = load(gkd_registry, str(write_npz(tmp_path / "u.npz", x=x, edge_index=edge_index, y=y)), tmp_path).data
    assert not bool(((d.train_mask | d.val_mask | d.test_mask) & (d.y < 0)).any())


# ------------------------------------------------------------------------ every bad graph


def _good(tensors):
    x, edge_index, y = tensors
    return {"x": x.numpy(), "edge_index": edge_index.numpy(), "y": y.numpy()}


def _masks(n, train, val, test):
    out = {}
    for key, ids in (("train_mask", train), ("val_mask", val), ("test_mask", test)):
        mask = np.zeros(n, dtype=bool)
        mask[list(ids)] = True
        out[key] = mask
    return out


BAD_GRAPHS = {
    "missing key": (lambda g: {k: v for k, v in g.items() if k != "y"}, "missing 'y'"),
    "x not 2-D": (lambda g: {**g, "x": g["x"][:, 0]}, r"x has shape \[400\]; expected \[N, F\]"),
    "x strings": (lambda g: {**g, "x": np.array([["a"] * 12] * 400)}, "x has dtype <U1"),
    "edge_index float": (lambda g: {**g, "edge_index": g["edge_index"].astype(np.float32)},
                         "edge_index has dtype torch.float32; store integer node ids"),
    "edge_index [E, 2]": (lambda g: {**g, "edge_index": g["edge_index"].T.copy()},
                          r"edge_index has shape \[\d+, 2\]; expected \[2, E\] \(transpose it"),
    "edge id out of range": (lambda g: {**g, "edge_index": np.concatenate([g["edge_index"], [[0], [400]]], axis=1)},
                             "edge_index holds node id 400, outside 0..399"),
    "negative edge id": (lambda g: {**g, "edge_index": np.concatenate([g["edge_index"], [[-3], [1]]], axis=1)},
                         "edge_index holds node id -3, outside 0..399"),
    "label below -1": (lambda g: {**g, "y": np.where(np.arange(400) == 7, -2, g["y"])},
                       r"y holds label -2, outside 0..3 \(-1 marks an unlabelled node\)"),
    "label beyond classes": (lambda g: {**g, "y": np.where(np.arange(400) == 7, 9, g["y"])}, None),
    "float labels": (lambda g: {**g, "y": g["y"].astype(np.float32)}, "y has dtype torch.float32; store integer"),
    "y of the wrong length": (lambda g: {**g, "y": g["y"][:300]}, r"y has shape \[300\]; expected \[400\]"),
    "multi-label y": (lambda g: {**g, "y": np.stack([g["y"], g["y"]], axis=1)}, "multi-label targets"),
    "NaN feature": (lambda g: {**g, "x": np.where(np.arange(400)[:, None] == 11, np.nan, g["x"])},
                    "x has 12 NaN or infinite values \\(first in row 11\\)"),
    "infinite feature": (lambda g: {**g, "x": np.where(np.arange(400)[:, None] == 5, np.inf, g["x"])},
                         "NaN or infinite values \\(first in row 5\\)"),
    "overlapping splits": (lambda g: {**g, **_masks(400, range(0, 100), range(90, 200), range(200, 400))},
                           "10 nodes are in both the train and the val set"),
    "empty val set": (lambda g: {**g, **_masks(400, range(0, 100), [], range(200, 400))},
                      "the val set is empty"),
    "mask of the wrong length": (lambda g: {**g, **{k: v[:10] for k, v in _masks(400, [0], [1], [2]).items()}},
                                 r"train_mask has shape \[10\]; expected \[400\]"),
    "non-boolean mask": (lambda g: {**g, **_masks(400, [0], [1], [2]), "train_mask": np.full(400, 2)},
                         "train_mask must be boolean"),
}


@pytest.mark.parametrize("case", sorted(BAD_GRAPHS))
def test_every_bad_graph_is_one_error_naming_file_and_field(gkd_registry, tensors, tmp_path, case):
    corrupt, message = BAD_GRAPHS[case]
    path = tmp_path / "bad.npz"
    np.savez(path, **corrupt(_good(tensors)))
    if case == "label beyond classes":  # numbered 0..9 with classes=4 declared
        with pytest.raises(GraphFileError, match="y holds label 9, outside 0..3"):
            load(gkd_registry, f"file:path={path},classes=4", tmp_path)
        return
    with pytest.raises(GraphFileError, match=message) as info:
        load(gkd_registry, str(path), tmp_path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_a_class_without_a_training_node(gkd_registry, tensors, tmp_path):
    g = _good(tensors)
    y = g["y"]
    train = [i for i in range(400) if y[i] != 2][:50]
    rest = [i for i in range(400) if i not in train]
    np.savez(tmp_path / "c.npz", **g, **_masks(400, train, rest[:100], rest[100:]))
    with pytest.raises(GraphFileError, match="class 2 has no training node"):
        load(gkd_registry, str(tmp_path / "c.npz"), tmp_path)


def test_split_masks_without_masks_and_bad_fractions(gkd_registry, tensors, tmp_path):
    path = tmp_path / "m.npz"
    np.savez(path, **_good(tensors))
    with pytest.raises(GraphFileError, match="split=masks but the graph has no train_mask, val_mask, test_mask"):
        load(gkd_registry, f"file:path={path},split=masks", tmp_path)
    with pytest.raises(GraphFileError, match="train=0.9 and val=0.2 must be fractions"):
        load(gkd_registry, f"file:path={path},split=random,train=0.9,val=0.2", tmp_path)
    with pytest.raises(GraphFileError, match="split='halves' is unknown"):
        load(gkd_registry, f"file:path={path},split=halves", tmp_path)


def test_unreadable_files(gkd_registry, tmp_path):
    with pytest.raises(GraphFileError, match="no such file"):
        load(gkd_registry, f"file:path={tmp_path / 'absent.npz'}", tmp_path)
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(GraphFileError, match="not a torch_geometric Data or a dict of tensors"):
        load(gkd_registry, str(tmp_path / "junk.pt"), tmp_path)
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(GraphFileError, match="holds a list; save a torch_geometric Data"):
        load(gkd_registry, str(tmp_path / "list.pt"), tmp_path)
    np.savez(tmp_path / "objects.npz", x=np.array([object()], dtype=object))
    with pytest.raises(GraphFileError, match="needs pickle"):
        load(gkd_registry, str(tmp_path / "objects.npz"), tmp_path)
    (tmp_path / "graph.csv").write_text("1,2\n")
    with pytest.raises(GraphFileError, match="unknown graph file type '.csv'"):
        load(gkd_registry, f"file:path={tmp_path / 'graph.csv'}", tmp_path)


def test_the_cli_prints_one_line_exits_2_and_logs_nothing(tensors, tmp_path):
    g = _good(tensors)
    g["edge_index"] = np.concatenate([g["edge_index"], [[0], [999]]], axis=1)
    np.savez(tmp_path / "broken.npz", **g)
    store = tmp_path / "mlruns"
    proc = subprocess.run(
        [sys.executable, "-m", "gkd_search", "--dataset", str(tmp_path / "broken.npz"), "--trials", "2",
         "--tracking-uri", f"sqlite:///{store}/mlflow.db", "--cache-dir", str(tmp_path / "cache")],
        capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert lines[0] == (f"gkd-search: error: {tmp_path / 'broken.npz'}: edge_index holds node id 999, "
                        "outside 0..399 (x has 400 rows)")
    assert not store.exists()  # nothing half-written: no store, no run
