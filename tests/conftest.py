"""Shared fixtures: the built-in registry, a tiny synthetic graph and a small trained teacher.

Everything here is real (no mocks) and small, so the unit tests stay fast on two cores.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gkd_search.latency import fixed_threads

#: The read-only folder with the real raw datasets (Cora/raw, Photo/raw, ...).
SHARED_DATA = Path(os.environ.get("GKD_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))

#: Options of the small synthetic graph most unit tests use.
SMALL_SYNTHETIC = {"nodes": 600, "edges": 3000, "features": 16, "classes": 3}

#: A teacher that trains in well under a second on the small synthetic graph.
SMALL_TEACHER = "gcn:2:16:epochs=30:patience=30"


@pytest.fixture
def one_thread():
    """One torch thread for the test (then restored): on the tiny graphs of the unit tests this is
    many times faster than several threads, above all when other processes share the cores.
    Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    with fixed_threads(1):
        yield


@pytest.fixture(scope="session")
def gkd_registry():
    """The built-in components only (third-party entry points are not loaded)."""
    from gkd_search.registry import build_registry, get_plugin_manager

    return build_registry(get_plugin_manager(autoload=False))


@pytest.fixture(scope="session")
def small_synthetic(gkd_registry, tmp_path_factory):
    """``synthetic`` with 600 nodes, ~3000 directed edges, 16 features, 3 classes (seed 0)."""
    spec = gkd_registry.get("dataset", "synthetic")
    return spec.load(None, tmp_path_factory.mktemp("synthetic-cache"), seed=0, **SMALL_SYNTHETIC)


@pytest.fixture(scope="session")
def small_teacher(gkd_registry, small_synthetic, tmp_path_factory):
    """``(model, TeacherOutputs)`` of a 2-layer GCN teacher trained on :func:`small_synthetic`."""
    from gkd_search.teacher import TeacherConfig, get_teacher

    config = TeacherConfig.parse(SMALL_TEACHER)
    with fixed_threads(1):
        return get_teacher(small_synthetic, config, gkd_registry.get("family", config.family), seed=0,
                           cache_dir=tmp_path_factory.mktemp("teacher-cache"))
