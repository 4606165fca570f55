"""ogbn-arxiv, ogbn-products and ogbn-mag through ogb's own loader, on tiny copies written in OGB's
exact raw layout (tests/ogb_files.py) into a data root that must stay untouched."""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from ogb_files import MAG_RELATIONS, write_ogbn_arxiv, write_ogbn_mag, write_ogbn_products

from gkd_search.datasets.ogb import OgbEvaluator, ogb_meta
from gkd_search.errors import DataMissingError, UsageError

pytestmark = pytest.mark.usefixtures("one_thread")


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` with its size and modification time."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """A data root with the three tiny datasets, and what was written."""
    root = tmp_path_factory.mktemp("ogb-root")
    written = {"ogbn-arxiv": write_ogbn_arxiv(root), "ogbn-products": write_ogbn_products(root),
               "ogbn-mag": write_ogbn_mag(root)}
    return root, written


@pytest.fixture(scope="module")
def loaded(gkd_registry, data_root, tmp_path_factory):
    """Each dataset loaded once from the root (cache in a fresh folder), root snapshots around it."""
    root, _ = data_root
    cache = tmp_path_factory.mktemp("ogb-cache")
    before = snapshot(root)
    datasets = {name: gkd_registry.get("dataset", name).load(root, cache, seed=0)
                for name in ("ogbn-arxiv", "ogbn-products", "ogbn-mag")}
    return datasets, cache, before, snapshot(root)


def masks_from(split, n):
    out = {}
    for key in ("train", "valid", "test"):
        mask = np.zeros(n, dtype=bool)
        mask[split[key]] = True
        out[key] = mask
    return out


def test_root_untouched_and_staged(loaded):
    _, cache, before, after = loaded
    assert after == before
    for folder, release in (("ogbn_arxiv", "RELEASE_v1.txt"), ("ogbn_products", "RELEASE_v1.txt"),
                            ("ogbn_mag", "RELEASE_v2.txt")):
        assert (cache / folder / release).is_file()
        assert (cache / folder / "processed" / "geometric_data_processed.pt").is_file()
        assert not (cache / folder / "mapping").exists()  # ogb does not read it
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]  # no staging leftovers


def test_arxiv(loaded, data_root):
    ds = loaded[0]["ogbn-arxiv"]
    w = data_root[1]["ogbn-arxiv"]
    d = ds.data
    assert ds.name == "ogbn-arxiv" and ds.num_classes == 40 and not ds.is_heterogeneous
    assert ds.num_nodes == 60 and ds.num_features == 128
    assert torch.equal(d.x, torch.from_numpy(w.x))
    assert d.y.tolist() == w.y.tolist() and d.y.shape == (60,)
    # undirected: every written citation in both directions, once each, no other edges
    pairs = {(int(a), int(b)) for a, b in w.edge_index.T}
    expected = sorted(pairs | {(b, a) for a, b in pairs})
    assert sorted(map(tuple, d.edge_index.T.tolist())) == expected
    assert d.edge_index.size(1) == len(expected) > 150
    masks = masks_from(w.split, 60)
    assert d.train_mask.tolist() == masks["train"].tolist()
    assert d.val_mask.tolist() == masks["valid"].tolist()
    assert d.test_mask.tolist() == masks["test"].tolist()
    assert isinstance(ds.evaluator, OgbEvaluator)


def test_arxiv_directed_option(gkd_registry, data_root, tmp_path):
    root, written = data_root
    ds = gkd_registry.get("dataset", "ogbn-arxiv").load(root, tmp_path, seed=0, undirected="false")
    assert ds.name == "ogbn-arxiv-directed"
    assert ds.data.edge_index.tolist() == written["ogbn-arxiv"].edge_index.tolist()
    with pytest.raises(UsageError, match=re.escape("ogbn-arxiv: option undirected='maybe' must be true or false")):
        gkd_registry.get("dataset", "ogbn-arxiv").load(root, tmp_path, seed=0, undirected="maybe")
    with pytest.raises(UsageError, match=re.escape("ogbn-arxiv: unknown option 'reverse' (known: undirected)")):
        gkd_registry.get("dataset", "ogbn-arxiv").load(root, tmp_path, seed=0, reverse="true")
    with pytest.raises(UsageError, match=re.escape("ogbn-products: unknown option 'undirected' (known: none)")):
        gkd_registry.get("dataset", "ogbn-products").load(root, tmp_path, seed=0, undirected="true")


def test_products(loaded, data_root):
    ds = loaded[0]["ogbn-products"]
    w = data_root[1]["ogbn-products"]
    d = ds.data
    assert ds.name == "ogbn-products" and ds.num_classes == 47
    assert (ds.num_nodes, ds.num_features) == (50, 100)
    assert torch.equal(d.x, torch.from_numpy(w.x))
    assert d.y.tolist() == w.y.tolist()
    # ogb adds the inverse of each stored edge right after it
    src, dst = w.edge_index
    assert d.edge_index[:, 0::2].tolist() == [src.tolist(), dst.tolist()]
    assert d.edge_index[:, 1::2].tolist() == [dst.tolist(), src.tolist()]
    masks = masks_from(w.split, 50)
    assert d.train_mask.tolist() == masks["train"].tolist() and d.test_mask.tolist() == masks["test"].tolist()


def test_mag_typed_graph(loaded, data_root):
    ds = loaded[0]["ogbn-mag"]
    w = data_root[1]["ogbn-mag"]
    d = ds.data
    n = w.num_nodes_dict
    assert ds.name == "ogbn-mag" and ds.num_classes == 349 and ds.is_heterogeneous
    assert ds.num_nodes == sum(n.values()) == 63
    # papers first, then author, field_of_study, institution (sorted)
    offsets = {"paper": 0, "author": 30, "field_of_study": 50, "institution": 58}
    assert d.node_type.tolist() == [0] * 30 + [1] * 20 + [2] * 8 + [3] * 5
    assert ds.relation_names == ("affiliated_with", "writes", "cites", "has_topic",
                                 "rev_affiliated_with", "rev_writes", "rev_cites", "rev_has_topic")
    assert ds.num_relations == 8
    for r, (src, rel, dst) in enumerate(MAG_RELATIONS):
        local = torch.from_numpy(w.edge_index_dict[(src, rel, dst)])
        expected = torch.stack([local[0] + offsets[src], local[1] + offsets[dst]])
        assert torch.equal(d.edge_index[:, d.edge_type == r], expected), rel
        assert torch.equal(d.edge_index[:, d.edge_type == r + 4], expected.flip(0)), rel
    assert d.edge_index.size(1) == 2 * sum(e.shape[1] for e in w.edge_index_dict.values())
    # labels and split on papers only
    assert d.y[:30].tolist() == w.y.tolist() and d.y[30:].tolist() == [-1] * 33
    masks = masks_from(w.split, 30)
    for ours, theirs in (("train_mask", "train"), ("val_mask", "valid"), ("test_mask", "test")):
        assert d[ours][:30].tolist() == masks[theirs].tolist() and not d[ours][30:].any()
    assert torch.equal(ds.target_nodes, torch.arange(30))
    # features: papers as written; authors, fields: mean of their papers; institutions: mean of
    # their authors (institution 0 has none: zeros); then the one-hot of the 4 node types
    x = w.x.astype(np.float64)

    def mean_rows(pairs, source, count):
        out = np.zeros((count, source.shape[1]))
        for i in range(count):
            rows = [source[s] for s, t in pairs if t == i]
            if rows:
                out[i] = np.mean(rows, axis=0)
        return out

    writes = w.edge_index_dict[("author", "writes", "paper")]
    authors = mean_rows([(p, a) for a, p in writes.T], x, 20)
    fields = mean_rows([(p, f) for p, f in w.edge_index_dict[("paper", "has_topic", "field_of_study")].T], x, 8)
    institutions = mean_rows([(a, i) for a, i in w.edge_index_dict[("author", "affiliated_with", "institution")].T],
                             authors, 5)
    assert not institutions[0].any() and institutions[1:].any()
    expected_x = np.concatenate([np.concatenate([x, authors, fields, institutions]), np.eye(4)[d.node_type.numpy()]], 1)
    assert ds.num_features == 4 + 4
    assert np.allclose(d.x.numpy(), expected_x, atol=1e-6)


def test_evaluator_is_ogbs_accuracy(loaded):
    generator = torch.Generator().manual_seed(0)
    for name, ds in loaded[0].items():
        d = ds.data
        logits = torch.randn(ds.num_nodes, ds.num_classes, generator=generator)
        # random labels in range on the target nodes, so that some predictions are right
        y = d.y.clone()
        y[d.y >= 0] = torch.randint(0, 3, (int((d.y >= 0).sum()),), generator=generator)
        logits[:, :3] += 3 * torch.randn(ds.num_nodes, 3, generator=generator)
        for mask in (d.train_mask, d.val_mask, d.test_mask):
            pred = logits.numpy().argmax(1)
            hand = float(np.mean(pred[mask.numpy()] == y.numpy()[mask.numpy()]))
            assert ds.evaluator(logits, y, mask) == pytest.approx(hand, abs=1e-12), name
        assert math.isnan(ds.evaluator(logits, y, torch.zeros(ds.num_nodes, dtype=torch.bool)))
    assert 0 < hand < 1


def test_second_load_uses_the_staged_cache(gkd_registry, data_root, tmp_path):
    root, _ = data_root
    spec = gkd_registry.get("dataset", "ogbn-mag")
    first = spec.load(root, tmp_path, seed=0)
    staged = tmp_path / "ogbn_mag"
    files = snapshot(staged)
    second = spec.load(root, tmp_path, seed=0)
    assert snapshot(staged) == files  # nothing copied or processed again
    assert torch.equal(first.data.x, second.data.x) and torch.equal(first.data.edge_index, second.data.edge_index)


def test_changed_source_is_restaged(gkd_registry, tmp_path):
    root = tmp_path / "root"
    write_ogbn_arxiv(root, num_edges=150, seed=0)
    spec = gkd_registry.get("dataset", "ogbn-arxiv")
    first = spec.load(root, tmp_path / "cache", seed=0)
    # a truncated staged file (an interrupted copy) is replaced, and ogb processes again
    (tmp_path / "cache" / "ogbn_arxiv" / "raw" / "edge.csv.gz").write_bytes(b"")
    again = spec.load(root, tmp_path / "cache", seed=0)
    assert torch.equal(first.data.edge_index, again.data.edge_index)
    # new files in the root (more edges): the cache follows, processed/ included
    shutil.rmtree(root)
    write_ogbn_arxiv(root, num_edges=200, seed=5)
    changed = spec.load(root, tmp_path / "cache", seed=0)
    assert changed.data.edge_index.size(1) > first.data.edge_index.size(1)


def test_missing_file_named(gkd_registry, data_root, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(data_root[0] / "ogbn_arxiv", root / "ogbn_arxiv")
    (root / "ogbn_arxiv" / "raw" / "node-feat.csv.gz").unlink()
    (root / "ogbn_arxiv" / "split" / "time" / "valid.csv.gz").unlink()
    with pytest.raises(DataMissingError) as info:
        gkd_registry.get("dataset", "ogbn-arxiv").load(root, tmp_path / "cache", seed=0)
    message = str(info.value)
    assert f"put raw/node-feat.csv.gz, split/time/valid.csv.gz in {root / 'ogbn_arxiv'}/" in message
    assert "raw/edge.csv.gz" not in message
    assert "http://snap.stanford.edu/ogb/data/nodeproppred/arxiv.zip" in message
    assert not (tmp_path / "cache").exists()


def test_missing_release_file_named(gkd_registry, data_root, tmp_path):
    # without it, ogb would stop and ask on stdin whether to delete the folder
    root = tmp_path / "root"
    shutil.copytree(data_root[0] / "ogbn_mag", root / "ogbn_mag")
    (root / "ogbn_mag" / "RELEASE_v2.txt").unlink()
    (root / "ogbn_mag" / "raw" / "relations" / "paper___cites___paper" / "edge.csv.gz").unlink()
    with pytest.raises(DataMissingError, match=re.escape(
            "put raw/relations/paper___cites___paper/edge.csv.gz, RELEASE_v2.txt in")):
        gkd_registry.get("dataset", "ogbn-mag").load(root, tmp_path / "cache", seed=0)


def test_missing_folder_and_no_root(gkd_registry, tmp_path):
    spec = gkd_registry.get("dataset", "ogbn-products")
    with pytest.raises(DataMissingError, match=re.escape(f"{tmp_path / 'empty' / 'ogbn_products'} does not exist")) as info:
        spec.load(tmp_path / "empty", tmp_path / "cache", seed=0)
    assert "products.zip, unzip it and rename its folder products/ to ogbn_products/" in str(info.value)
    # no root: never download (ogb's download would prompt), say how to get the files
    with pytest.raises(DataMissingError, match="never downloads OGB data: download http://snap.stanford.edu/ogb/data/"
                                               r"nodeproppred/products\.zip.*--data-root DIR"):
        spec.load(None, tmp_path / "cache", seed=0)


def test_no_root_reads_a_filled_cache(gkd_registry, data_root, tmp_path):
    shutil.copytree(data_root[0] / "ogbn_products", tmp_path / "ogbn_products")
    ds = gkd_registry.get("dataset", "ogbn-products").load(None, tmp_path, seed=0)
    assert ds.num_nodes == 50


def test_ogb_output_kept_off_stdout(gkd_registry, data_root, tmp_path, capfd):
    gkd_registry.get("dataset", "ogbn-arxiv").load(data_root[0], tmp_path, seed=0)
    out, err = capfd.readouterr()
    assert out == ""
    assert "Loading necessary files" in err


def test_meta_matches_the_written_layout():
    assert ogb_meta("ogbn-arxiv")["version"] == "1" and ogb_meta("ogbn-arxiv")["split"] == "time"
    assert ogb_meta("ogbn-products")["split"] == "sales_ranking"
    assert ogb_meta("ogbn-mag")["version"] == "2"


def test_ogb_version_check_skipped():
    code = ("import sys; from gkd_search.datasets.ogb import _import_nodeproppred; _import_nodeproppred(); "
            "import ogb.version; assert ogb.version.check_outdated is None; assert 'outdated' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
