"""The built-in datasets: real Cora and Photo from the shared data root, and the synthetic graph."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
import torch
from torch_geometric.utils import contains_self_loops, is_undirected

from gkd_search.errors import DataMissingError, UsageError

SHARED_DATA = Path(os.environ.get("GKD_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))

needs_cora = pytest.mark.skipif(not (SHARED_DATA / "Cora" / "raw").is_dir(), reason="no Cora in the data root")
needs_photo = pytest.mark.skipif(not (SHARED_DATA / "Photo" / "raw").is_dir(), reason="no Photo in the data root")


def tree(root: Path) -> set[str]:
    """Every path under ``root`` (relative)."""
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def check_split(data):
    train, val, test = data.train_mask, data.val_mask, data.test_mask
    assert train.dtype == val.dtype == test.dtype == torch.bool
    assert not (train & val).any() and not (train & test).any() and not (val & test).any()


# ------------------------------------------------------------------------------ Cora


@needs_cora
def test_planetoid_default_teacher_is_appnp_with_the_replaced_gcns_parameters(gkd_registry, tmp_path):
    """The Planetoid default (docs/teachers.md) is APPNP-2x256 with the paper's K, alpha and weight
    decay, and has exactly the parameters of the GCN-2x256 it replaced, so compression figures
    against either teacher compare."""
    from gkd_search.teacher import TeacherConfig, build_teacher_model

    spec = gkd_registry.get("dataset", "cora")
    assert all(gkd_registry.get("dataset", name).default_teacher == spec.default_teacher
               for name in ("citeseer", "pubmed"))
    dataset = spec.load(SHARED_DATA, tmp_path, seed=0)
    appnp = TeacherConfig.parse(spec.default_teacher)
    assert (appnp.family, appnp.num_layers, appnp.hidden_channels) == ("appnp", 2, 256)
    assert int(appnp.family_params["K"]) == 10 and float(appnp.family_params["alpha"]) == 0.1
    assert appnp.weight_decay == 0.005
    gcn = TeacherConfig.parse("gcn:2:256:dropout=0.8:weight_decay=0.001")

    def count(config):
        model = build_teacher_model(config, gkd_registry.get("family", config.family), dataset)
        return sum(p.numel() for p in model.parameters())

    assert count(appnp) == count(gcn) == 368_903


@needs_cora
def test_cora_public_split_and_root_untouched(gkd_registry, tmp_path):
    before = tree(SHARED_DATA)
    ds = gkd_registry.get("dataset", "cora").load(SHARED_DATA, tmp_path, seed=0)
    assert tree(SHARED_DATA) == before
    assert not (SHARED_DATA / "Cora" / "processed").exists()
    assert ds.name == "cora"
    assert ds.num_nodes == 2708
    assert ds.num_classes == 7
    assert ds.num_features == 1433
    d = ds.data
    assert d.x.shape == (2708, 1433) and d.y.shape == (2708,)
    assert (int(d.train_mask.sum()), int(d.val_mask.sum()), int(d.test_mask.sum())) == (140, 500, 1000)
    check_split(d)
    # the public split: 20 labelled nodes per class
    assert torch.bincount(d.y[d.train_mask], minlength=7).tolist() == [20] * 7
    assert d.edge_index.size(1) == 10556
    # the raw files were staged in the cache, and PyG processed there
    assert (tmp_path / "Cora" / "raw" / "ind.cora.x").is_file()
    assert (tmp_path / "Cora" / "processed").is_dir()


@needs_cora
def test_cora_cache_reused_and_repaired(gkd_registry, tmp_path):
    spec = gkd_registry.get("dataset", "cora")
    first = spec.load(SHARED_DATA, tmp_path, seed=0)
    # a truncated staged file (an interrupted copy) is replaced from the data root
    staged = tmp_path / "Cora" / "raw" / "ind.cora.x"
    staged.write_bytes(b"")
    second = spec.load(SHARED_DATA, tmp_path, seed=0)
    assert staged.stat().st_size == (SHARED_DATA / "Cora" / "raw" / "ind.cora.x").stat().st_size
    assert torch.equal(first.data.x, second.data.x)
    assert torch.equal(first.data.edge_index, second.data.edge_index)
    assert not any(p.name.startswith(".raw-") for p in (tmp_path / "Cora").iterdir())  # no staging leftovers


def test_missing_data_root_names_files_and_folder(gkd_registry, tmp_path):
    root = tmp_path / "no-data-here"
    with pytest.raises(DataMissingError) as info:
        gkd_registry.get("dataset", "cora").load(root, tmp_path / "cache", seed=0)
    message = str(info.value)
    for suffix in ("x", "tx", "allx", "y", "ty", "ally", "graph", "test.index"):
        assert f"ind.cora.{suffix}" in message
    assert str(root / "Cora" / "raw") in message
    assert "--data-root" in message
    assert not (tmp_path / "cache").exists()
    assert isinstance(info.value, UsageError)


@needs_cora
def test_partly_missing_files_named(gkd_registry, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(SHARED_DATA / "Cora", root / "Cora")
    os.chmod(root / "Cora" / "raw", 0o755)
    (root / "Cora" / "raw" / "ind.cora.graph").unlink()
    with pytest.raises(DataMissingError, match=re.escape(f"put ind.cora.graph in {root / 'Cora' / 'raw'}/")) as info:
        gkd_registry.get("dataset", "cora").load(root, tmp_path / "cache", seed=0)
    assert "ind.cora.tx" not in str(info.value)


def test_missing_photo_names_file(gkd_registry, tmp_path):
    with pytest.raises(DataMissingError, match=r"amazon_electronics_photo\.npz in .*Photo/raw"):
        gkd_registry.get("dataset", "photo").load(tmp_path / "empty", tmp_path / "cache", seed=0)


# ------------------------------------------------------------------------------ Photo


@pytest.fixture(scope="module")
def photo_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("photo-cache")


@needs_photo
def test_photo_per_class_split(gkd_registry, photo_cache):
    before = tree(SHARED_DATA)
    ds = gkd_registry.get("dataset", "photo").load(SHARED_DATA, photo_cache, seed=0)
    assert tree(SHARED_DATA) == before
    assert ds.name == "photo"
    assert ds.num_nodes == 7650 and ds.num_classes == 8
    d = ds.data
    check_split(d)
    assert torch.bincount(d.y[d.train_mask], minlength=8).tolist() == [20] * 8
    assert torch.bincount(d.y[d.val_mask], minlength=8).tolist() == [30] * 8
    assert bool((d.train_mask | d.val_mask | d.test_mask).all())
    assert int(d.test_mask.sum()) == 7650 - 8 * 50


@needs_photo
def test_photo_split_seeded(gkd_registry, photo_cache):
    spec = gkd_registry.get("dataset", "photo")
    a = spec.load(SHARED_DATA, photo_cache, seed=0).data
    b = spec.load(SHARED_DATA, photo_cache, seed=0).data
    c = spec.load(SHARED_DATA, photo_cache, seed=1).data
    assert torch.equal(a.train_mask, b.train_mask) and torch.equal(a.val_mask, b.val_mask)
    assert not torch.equal(a.train_mask, c.train_mask)
    assert not torch.equal(a.val_mask, c.val_mask)
    # the graph itself does not depend on the seed
    assert torch.equal(a.edge_index, c.edge_index)
    assert torch.bincount(c.y[c.train_mask], minlength=8).tolist() == [20] * 8


# ------------------------------------------------------------------------------ synthetic


def synthetic(registry, tmp_path, seed=0, **options):
    opts = {"nodes": 400, "edges": 2000, "features": 12, "classes": 4, **options}
    return registry.get("dataset", "synthetic").load(None, tmp_path, seed=seed, **opts)


def test_synthetic_sizes(gkd_registry, tmp_path):
    ds = synthetic(gkd_registry, tmp_path)
    d = ds.data
    assert ds.num_nodes == 400 and ds.num_features == 12 and ds.num_classes == 4
    assert ds.name == "synthetic-400n-2000e-12f-4c"
    assert d.x.shape == (400, 12) and d.y.shape == (400,)
    assert int(d.y.min()) >= 0 and int(d.y.max()) < 4
    # about `edges` directed edges, undirected, no self-loops, no duplicates
    assert 1500 < d.edge_index.size(1) <= 2000
    assert is_undirected(d.edge_index, num_nodes=400)
    assert not contains_self_loops(d.edge_index)
    assert torch.unique(d.edge_index, dim=1).size(1) == d.edge_index.size(1)
    check_split(d)
    assert torch.bincount(d.y[d.train_mask], minlength=4).tolist() == [20] * 4
    assert torch.bincount(d.y[d.val_mask], minlength=4).tolist() == [30] * 4


def test_synthetic_homophily(gkd_registry, tmp_path):
    def same_class_fraction(h):
        d = synthetic(gkd_registry, tmp_path, homophily=h).data
        src, dst = d.edge_index
        return float((d.y[src] == d.y[dst]).float().mean())

    assert same_class_fraction(1.0) == 1.0
    assert same_class_fraction(0.0) < 0.5


def test_synthetic_deterministic_by_seed(gkd_registry, tmp_path):
    a = synthetic(gkd_registry, tmp_path, seed=5).data
    b = synthetic(gkd_registry, tmp_path, seed=5).data
    c = synthetic(gkd_registry, tmp_path, seed=6).data
    for key in ("x", "y", "edge_index", "train_mask", "val_mask", "test_mask"):
        assert torch.equal(a[key], b[key]), key
    assert not torch.equal(a.x, c.x)
    assert not torch.equal(a.y, c.y)


def test_synthetic_string_options(gkd_registry, tmp_path):
    # options come from the command line as strings
    ds = synthetic(gkd_registry, tmp_path, nodes="300", edges="900", features="5", classes="2", homophily="0.5")
    assert (ds.num_nodes, ds.num_features, ds.num_classes) == (300, 5, 2)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"colour": "red"}, "synthetic: unknown option 'colour' (known: nodes, edges, features, classes, homophily, order)"),
        ({"nodes": "many"}, "synthetic: option values must be numbers"),
        ({"classes": 1}, "classes >= 2"),
        ({"homophily": 1.5}, "0 <= homophily <= 1"),
        ({"nodes": 100, "classes": 4}, "synthetic: nodes=100 is too few for 4 classes; use at least 240"),
        ({"order": "metis"}, "synthetic: order='metis' is not one of random, community"),
    ],
)
def test_synthetic_bad_options(gkd_registry, tmp_path, options, message):
    with pytest.raises(UsageError, match=re.escape(message)):
        synthetic(gkd_registry, tmp_path, **options)


def test_synthetic_community_order_is_the_same_graph_numbered_class_by_class():
    """``order=community`` renumbers the ``random`` graph: the same features, labels and edges
    under one permutation, with each class's nodes a contiguous block of ids."""
    from gkd_search.datasets.synthetic import make_synthetic_graph

    a = make_synthetic_graph(500, 3000, 6, 4, seed=2)
    b = make_synthetic_graph(500, 3000, 6, 4, seed=2, order="community")
    assert torch.equal(b.y, torch.sort(b.y).values)  # class blocks
    by_class = torch.argsort(a.y, stable=True)  # b's node i is a's node by_class[i]
    assert torch.equal(b.x, a.x[by_class]) and torch.equal(b.y, a.y[by_class])
    edges = lambda ei: set(map(tuple, ei.t().tolist()))  # noqa: E731
    assert edges(by_class[b.edge_index]) == edges(a.edge_index)  # b's edges, numbered back, are a's
    same_class = b.y[b.edge_index[0]] == b.y[b.edge_index[1]]
    assert same_class.float().mean() > 0.7  # homophily 0.8: most edges stay inside one block
    assert (b.edge_index[0] - b.edge_index[1])[same_class].abs().max() < int(torch.bincount(b.y).max())


def test_fingerprint_changes_with_content(gkd_registry, tmp_path):
    a = synthetic(gkd_registry, tmp_path, seed=0).fingerprint()
    assert a == synthetic(gkd_registry, tmp_path, seed=0).fingerprint()
    assert a != synthetic(gkd_registry, tmp_path, seed=1).fingerprint()
    assert a["nodes"] == 400 and a["split"] == [80, 120, 200]


@needs_cora
def test_cora_row_normalised_features(gkd_registry, tmp_path):
    spec = gkd_registry.get("dataset", "cora")
    raw = spec.load(SHARED_DATA, tmp_path, seed=0)
    ds = spec.load(SHARED_DATA, tmp_path, seed=0, normalize_features="true")
    assert ds.name == "cora-rownorm" and ds.fingerprint() != raw.fingerprint()
    sums = ds.data.x.sum(dim=1)
    nonzero = raw.data.x.sum(dim=1) > 0
    assert torch.allclose(sums[nonzero], torch.ones(int(nonzero.sum())), atol=1e-5)
    # row i is the raw row divided by its number of words
    i = int(torch.nonzero(nonzero)[0])
    assert torch.allclose(ds.data.x[i], raw.data.x[i] / raw.data.x[i].sum())
    with pytest.raises(UsageError, match="cora: normalize_features='maybe' is not true or false"):
        spec.load(SHARED_DATA, tmp_path, seed=0, normalize_features="maybe")
    with pytest.raises(UsageError, match="cora: unknown option 'scale'"):
        spec.load(SHARED_DATA, tmp_path, seed=0, scale="2")


# ------------------------------------------------------------------------------ Geom-GCN splits


@needs_cora
@pytest.mark.parametrize("index", [0, 7])
def test_cora_geom_gcn_split_is_the_npz_masks(gkd_registry, tmp_path, index):
    import numpy as np

    spec = gkd_registry.get("dataset", "cora")
    ds = spec.load(SHARED_DATA, tmp_path, seed=0, split="geom-gcn", split_index=index)
    public = spec.load(SHARED_DATA, tmp_path, seed=0)
    assert ds.name == f"cora-geom-gcn-{index}"
    with np.load(SHARED_DATA / "Cora" / "geom-gcn-splits" / f"cora_split_0.6_0.2_{index}.npz") as z:
        for key in ("train_mask", "val_mask", "test_mask"):
            assert torch.equal(getattr(ds.data, key), torch.from_numpy(z[key].astype(bool)))
    check_split(ds.data)
    assert int(ds.data.train_mask.sum()) > 1000  # 60 %, not the public 140
    assert torch.equal(ds.data.x, public.data.x) and torch.equal(ds.data.edge_index, public.data.edge_index)
    assert ds.fingerprint() != public.fingerprint()
    # staged into the cache; the data root only read
    assert (tmp_path / "Cora" / "geom-gcn-splits" / f"cora_split_0.6_0.2_{index}.npz").is_file()


@needs_cora
def test_geom_gcn_splits_differ_and_combine_with_row_normalisation(gkd_registry, tmp_path):
    spec = gkd_registry.get("dataset", "cora")
    a = spec.load(SHARED_DATA, tmp_path, seed=0, split="geom-gcn", split_index=0)
    b = spec.load(SHARED_DATA, tmp_path, seed=0, split="geom-gcn", split_index=1, normalize_features=True)
    assert b.name == "cora-rownorm-geom-gcn-1"
    assert not torch.equal(a.data.train_mask, b.data.train_mask) and a.fingerprint() != b.fingerprint()
    assert sorted(p.name for p in (tmp_path / "Cora" / "geom-gcn-splits").iterdir()) == [
        "cora_split_0.6_0.2_0.npz", "cora_split_0.6_0.2_1.npz"]


@needs_cora
@pytest.mark.parametrize("options, message", [
    ({"split": "geom-gcn", "split_index": 10}, "cora: split_index=10 is out of range: the Geom-GCN splits are numbered 0 to 9"),
    ({"split": "geom-gcn", "split_index": -1}, "cora: split_index=-1 is out of range"),
    ({"split": "geom-gcn", "split_index": "two"}, "cora: split_index='two' is not an integer (0 to 9)"),
    ({"split_index": 3}, "cora: split_index=3 needs split=geom-gcn (e.g. cora:split=geom-gcn,split_index=3)"),
    ({"split": "random"}, "cora: split='random' is not one of public, geom-gcn"),
])
def test_bad_geom_gcn_options_are_usage_errors(gkd_registry, tmp_path, options, message):
    with pytest.raises(UsageError, match=re.escape(message)):
        gkd_registry.get("dataset", "cora").load(SHARED_DATA, tmp_path, seed=0, **options)


@needs_cora
def test_missing_split_file_names_file_and_folder(gkd_registry, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(SHARED_DATA / "Cora" / "raw", root / "Cora" / "raw")
    with pytest.raises(DataMissingError, match=re.escape(
            f"put cora_split_0.6_0.2_4.npz in {root / 'Cora' / 'geom-gcn-splits'}/")):
        gkd_registry.get("dataset", "cora").load(root, tmp_path / "cache", seed=0, split="geom-gcn", split_index=4)
