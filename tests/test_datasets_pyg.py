"""``pyg:class=...`` and the built-in names users expect (citeseer, computers, cs, physics), on
small files written in PyG's raw layouts: the data root is only read, the raw files are copied
into the cache, and every dataset that is not one node-classification graph is one clear error."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from pyg_files import graph, write_planetoid, write_shchur_npz, write_tudataset, write_wikipedia_geom_gcn

from gkd_search.datasets._graph import GraphFileError
from gkd_search.errors import DataMissingError
from gkd_search.loading import parse_dataset, typed_dataset_options
from gkd_search.testing import check_dataset

pytestmark = pytest.mark.usefixtures("one_thread")


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    """A read-only data root holding CS, Physics, Computers, CiteSeer, chameleon and a TUDataset."""
    root = tmp_path_factory.mktemp("pyg-root")
    x, edge_index, y = graph(nodes=700, classes=5, features=20, seed=1)
    write_shchur_npz(root / "CS" / "raw" / "ms_academic_cs.npz", x, edge_index, y)
    write_shchur_npz(root / "Physics" / "raw" / "ms_academic_phy.npz", x[:, :10], edge_index, y)
    write_shchur_npz(root / "Computers" / "raw" / "amazon_electronics_computers.npz", x, edge_index, y)
    write_planetoid(root / "CiteSeer" / "raw", "citeseer", x, edge_index, y, train=60, test=100)
    write_wikipedia_geom_gcn(root / "chameleon" / "geom_gcn" / "raw", "chameleon", x[:200], *_sub(edge_index, 200),
                             y[:200])
    write_tudataset(root / "RINGS" / "raw", "RINGS")
    for path in root.rglob("*"):
        path.chmod(0o555 if path.is_dir() else 0o444)
    yield root
    for path in root.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def _sub(edge_index, n):
    keep = (edge_index < n).all(dim=0)
    return (edge_index[:, keep],)


def load(gkd_registry, text, root, cache, seed=0):
    name, options = parse_dataset(text)
    spec = gkd_registry.get("dataset", name)
    return spec.load(root, cache, seed, **typed_dataset_options(spec, options))


@pytest.mark.parametrize("name, classes, features, train", [
    ("cs", 5, 20, 100), ("physics", 5, 10, 100), ("computers", 5, 20, 100), ("citeseer", 5, 20, 60)])
def test_builtin_names_load_from_the_raw_layout(gkd_registry, data_root, tmp_path, name, classes, features, train):
    before = snapshot(data_root)
    dataset = load(gkd_registry, name, data_root, tmp_path / "cache")
    assert dataset.name == name and dataset.num_classes == classes and dataset.num_features == features
    assert int(dataset.data.train_mask.sum()) == train  # 20 per class, or Planetoid's first 60
    assert snapshot(data_root) == before
    assert any((tmp_path / "cache").rglob("*.npz")) or any((tmp_path / "cache").rglob("ind.citeseer.x"))
    check_dataset(gkd_registry.get("dataset", name), data_root, tmp_path / "contract-cache")


def test_pyg_class_loads_any_node_classification_dataset(gkd_registry, data_root, tmp_path):
    before = snapshot(data_root)
    cs = load(gkd_registry, "pyg:class=Coauthor,name=CS", data_root, tmp_path / "cache")
    builtin = load(gkd_registry, "cs", data_root, tmp_path / "cache2")
    assert cs.name == "coauthor-cs-per-class"
    assert torch.equal(cs.data.x, builtin.data.x) and torch.equal(cs.data.train_mask, builtin.data.train_mask)
    assert (tmp_path / "cache" / "pyg" / "Coauthor" / "CS" / "raw" / "ms_academic_cs.npz").is_file()
    assert snapshot(data_root) == before
    assert cs.source == str(data_root / "CS" / "raw")
    # loaded again: processed in the cache, nothing copied again
    again = load(gkd_registry, "pyg:class=Coauthor,name=CS", data_root, tmp_path / "cache")
    assert torch.equal(again.data.edge_index, cs.data.edge_index)


def test_masks_with_a_split_dimension_and_constructor_options(gkd_registry, data_root, tmp_path):
    text = "pyg:class=WikipediaNetwork,name=chameleon,geom_gcn_preprocess=true"
    first = load(gkd_registry, text, data_root, tmp_path / "cache")
    third = load(gkd_registry, text + ",split_index=3", data_root, tmp_path / "cache")
    assert first.name == "wikipedianetwork-chameleon-geom_gcn_preprocess=true"
    assert third.name == first.name + "-split3"
    assert int(first.data.train_mask.sum()) == 120 and int(first.data.val_mask.sum()) == 40
    assert not torch.equal(first.data.train_mask, third.data.train_mask)
    with pytest.raises(GraphFileError, match="split_index=10 but train_mask has 10 split columns"):
        load(gkd_registry, text + ",split_index=10", data_root, tmp_path / "cache")
    random = load(gkd_registry, text + ",split=random,train=0.5,val=0.25", data_root, tmp_path / "cache")
    assert random.name.endswith("-random") and int(random.data.train_mask.sum()) == 100
    # 40 nodes per class: 20 train + 30 validation per class leaves no test node
    with pytest.raises(GraphFileError, match="the test set is empty"):
        load(gkd_registry, text + ",split=per-class", data_root, tmp_path / "cache")


def test_pyg_errors_are_one_line(gkd_registry, data_root, tmp_path):
    cases = [
        ("pyg:class=Coauthr,name=CS", GraphFileError, "no dataset class 'Coauthr'; did you mean Coauthor"),
        ("pyg:class=Coauthor,name=CS,colour=red", GraphFileError, "Coauthor takes no option 'colour'"),
        ("pyg:class=TUDataset,name=RINGS", GraphFileError, "holds 3 graphs; gkd-search needs one graph"),
        ("pyg:class=Amazon,name=Photo", DataMissingError,
         f"put amazon_electronics_photo.npz in {data_root / 'Photo' / 'raw'}/"),
        ("pyg:name=CS", GraphFileError, "give the dataset class"),
    ]
    for text, error, message in cases:
        with pytest.raises(error, match=message) as info:
            load(gkd_registry, text, data_root, tmp_path / "cache")
        assert "\n" not in str(info.value)
