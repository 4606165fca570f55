"""bench/offline_bundle.py: what it leaves out of a bundle, and that it never deletes outside it."""

from __future__ import annotations

import importlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def bundle_module(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    return importlib.import_module("offline_bundle")


def fake_distribution(site: Path, name: str, files: list[str]) -> None:
    info = site / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    for relative in files:
        path = (site / relative)
        if not relative.startswith(".."):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("x")
    (info / "RECORD").write_text("".join(f"{f},sha256=0,1\n" for f in [*files, f"{name}-1.0.dist-info/RECORD"]))


def test_left_out_packages_are_removed_and_nothing_outside_the_bundle_is_touched(monkeypatch, tmp_path):
    bundle = bundle_module(monkeypatch)
    site = tmp_path / "deep" / "site"
    outside = tmp_path / "deep" / "bin"
    outside.mkdir(parents=True)
    (outside / "numpy-config").write_text("keep me")
    # a --target install's RECORD names scripts as ../../bin/...: once, that path deleted /tmp
    fake_distribution(site, "numpy", ["numpy/__init__.py", "numpy.libs/lib.so", "../bin/numpy-config"])
    fake_distribution(site, "optuna", ["optuna/__init__.py"])
    removed = bundle.remove_installed(site, {"numpy"})
    assert removed == ["numpy"]
    assert not (site / "numpy").exists() and not (site / "numpy.libs").exists()
    assert not (site / "numpy-1.0.dist-info").exists()
    assert (site / "optuna" / "__init__.py").is_file()  # not in the target's list: kept
    assert (outside / "numpy-config").read_text() == "keep me"


def test_the_targets_package_list_reads_pip_freeze_and_plain_names(monkeypatch, tmp_path):
    bundle = bundle_module(monkeypatch)
    listing = tmp_path / "have.txt"
    listing.write_text("# from pip list --format=freeze\nNumPy==2.5.2\ntorch_geometric==2.8.0\nscikit-learn\n"
                       "ray[tune]>=2\npkg @ file:///x\n")
    assert bundle.read_have(listing) == {"numpy", "torch-geometric", "scikit-learn", "ray", "pkg"}
