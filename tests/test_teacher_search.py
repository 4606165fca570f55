"""``--teacher auto`` (teacher_search.py): every candidate is trained and reported, the best by
validation is kept and cached, the memory limit skips deep candidates, and a search logs the
candidates as ``teacher_candidates.csv``."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

import gkd_search.teacher_search as teacher_search
from gkd_search import hookimpl
from gkd_search.distill.minibatch import Batching
from gkd_search.registry import build_registry, get_plugin_manager
from gkd_search.search import Reporter, SearchConfig, prepare, run_search
from gkd_search.teacher import TeacherConfig, get_teacher
from gkd_search.teacher_search import Candidate, select_teacher
from gkd_search.types import DatasetSpec

pytestmark = pytest.mark.usefixtures("one_thread")

#: real families with their papers' settings, trained briefly (the full list trains for minutes)
SMALL = (
    Candidate("gcn:2:16:epochs=30:patience=30", "GCN"),
    Candidate("sage:2:16:epochs=30:patience=30", "GraphSAGE"),
    Candidate("appnp:2:16:K=10:alpha=0.1:epochs=30:patience=30", "APPNP"),
    Candidate("gcnii:4:16:alpha=0.1:theta=0.5:epochs=30:patience=30", "GCNII"),
)
DATASET = "synthetic:nodes=600,edges=3000,features=16,classes=3"
TINY_SPACE = Path(__file__).parent / "spaces" / "tiny.yaml"


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("auto-cache")


@pytest.fixture(scope="module")
def first_choice(gkd_registry, small_synthetic, cache):
    lines: list[str] = []
    selection = select_teacher(small_synthetic, gkd_registry.families, seed=0, cache_dir=cache, candidates=SMALL,
                               progress=lines.append)
    return selection, lines


def test_every_candidate_is_trained_reported_and_the_best_by_validation_kept(first_choice):
    selection, lines = first_choice
    assert [c.spec for c in selection.candidates] == [c.spec for c in SMALL]
    assert len(lines) == len(SMALL) + 2 and all(f"{i}/{len(SMALL)}" in line for i, line in enumerate(lines[:-2], 1))
    assert all(c.status == "trained" and 0.0 <= c.val_acc <= 1.0 and c.params > 0 for c in selection.candidates)
    winners = [c for c in selection.candidates if c.selected]
    assert len(winners) == 1 and lines[-1].startswith(f"teacher auto: selected {winners[0].spec}")
    # ranked by validation accuracy weighted to the estimated class shares of the unlabelled nodes
    assert selection.class_prior is not None and sum(selection.class_prior) == pytest.approx(1.0)
    assert all(0.0 <= c.val_acc_weighted <= 1.0 for c in selection.candidates)
    best = max(c.val_acc_weighted for c in selection.candidates)
    assert winners[0].val_acc_weighted == best
    assert winners[0].params == min(c.params for c in selection.candidates if c.val_acc_weighted == best)  # ties
    assert "Saerens" in lines[-2] and "unlabelled nodes" in lines[-2]
    assert selection.config.spec == TeacherConfig.parse(winners[0].spec).spec
    assert winners[0].val_acc > 0.8  # the easy synthetic graph is learned
    assert not selection.from_cache and Path(selection.cache_path).is_file()


def test_the_choice_and_the_winner_are_cached(gkd_registry, small_synthetic, cache, first_choice):
    first, _ = first_choice
    lines: list[str] = []
    again = select_teacher(small_synthetic, gkd_registry.families, seed=0, cache_dir=cache, candidates=SMALL,
                           progress=lines.append)
    assert again.from_cache and again.config == first.config and len(lines) == len(SMALL) + 1
    assert "the cached choice" in lines[-1] and again.class_prior == first.class_prior
    assert all("class-weighted val" in line for line in lines[:-1])
    family = gkd_registry.get("family", again.config.family)
    _, outputs = get_teacher(small_synthetic, again.config, family, seed=0, cache_dir=cache)
    assert outputs.from_cache  # the winner's weights were cached when it was trained
    winner = next(c for c in first.candidates if c.selected)
    assert outputs.val_acc == pytest.approx(winner.val_acc)


def test_candidates_respect_the_memory_limit(gkd_registry, small_synthetic, tmp_path):
    # a limit no full-batch step fits: shallow candidates train on mini-batches, deep ones are skipped
    tiny = Batching(max_full_batch_gb=1e-9, batch_size=256)
    candidates = (SMALL[0], SMALL[3])
    selection = select_teacher(small_synthetic, gkd_registry.families, seed=0, cache_dir=tmp_path,
                               batching=tiny, candidates=candidates)
    gcn, gcnii = selection.candidates
    assert (gcn.status, gcn.training_mode) == ("trained", "mini-batch")
    assert gcnii.status == "skipped" and "--max-full-batch-gb" in gcnii.note and "4 hops" in gcnii.note
    assert selection.config.family == "gcn"


def test_no_trainable_candidate_is_a_usage_error(gkd_registry, small_synthetic, tmp_path):
    from gkd_search.errors import UsageError

    with pytest.raises(UsageError, match="--teacher auto: no candidate"):
        select_teacher(small_synthetic, {}, seed=0, cache_dir=tmp_path, candidates=SMALL[:1])


class NoDefaultTeacher(DatasetSpec):
    """A plugin dataset that declares no ``default_teacher``: the small synthetic graph."""

    name = "nodefault"

    def load(self, root, cache_dir, seed, **options):
        from conftest import SMALL_SYNTHETIC

        from gkd_search.datasets.synthetic import Synthetic

        return Synthetic().load(root, cache_dir, seed, **SMALL_SYNTHETIC)


class NoDefaultTeacherPlugin:
    @hookimpl
    def gkd_datasets(self):
        return [NoDefaultTeacher()]


def test_a_dataset_without_a_default_teacher_gets_auto(cache, first_choice, monkeypatch):
    monkeypatch.setattr(teacher_search, "CANDIDATES", SMALL)
    pm = get_plugin_manager(autoload=False)
    pm.register(NoDefaultTeacherPlugin(), name="no-default-teacher")
    lines: list[str] = []

    class Lines(Reporter):
        def message(self, text):
            lines.append(text)

    config = SearchConfig(dataset="nodefault", space=str(TINY_SPACE), cache_dir=str(cache), latency_repeats=30)
    prepared = prepare(config, build_registry(pm), Lines(), check_tracking=False)
    first, _ = first_choice
    assert prepared.teacher_selection is not None and prepared.teacher_selection.from_cache
    assert prepared.teacher.spec == first.config.spec and prepared.teacher.from_cache
    assert sum("teacher candidate" in line for line in lines) == len(SMALL)
    assert prepared.teacher.label_shift is not None  # --label-shift adapt, the default
    assert any("teacher outputs adapted to the class shares" in line for line in lines)
    adapted = prepared.teacher.logits
    lines.clear()
    config = SearchConfig(dataset="nodefault", space=str(TINY_SPACE), cache_dir=str(cache), latency_repeats=30,
                          label_shift="off")
    plain = prepare(config, build_registry(pm), Lines(), check_tracking=False).teacher
    assert plain.label_shift is None and not any("adapted" in line for line in lines)
    # the adapted logits are a new tensor; the last layer's output stays as trained
    assert not torch.equal(adapted, prepared.teacher.hidden[-1]) and torch.equal(plain.logits, plain.hidden[-1])


@pytest.mark.slow
def test_a_search_with_teacher_auto_logs_every_candidate(gkd_registry, cache, first_choice, monkeypatch, tmp_path):
    from mlflow.tracking import MlflowClient

    monkeypatch.setattr(teacher_search, "CANDIDATES", SMALL)
    config = SearchConfig(dataset=DATASET, teacher="auto", space=str(TINY_SPACE), trials=2, epochs=5,
                          cache_dir=str(cache), tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", latency_repeats=30)
    summary = run_search(config, gkd_registry)
    client = MlflowClient(config.tracking_uri)
    parent = client.get_run(summary.parent_run_id)
    assert parent.data.params["teacher_selection"] == "auto"
    assert parent.data.params["teacher"] == first_choice[0].config.spec
    local = client.download_artifacts(summary.parent_run_id, "teacher_candidates.csv", str(tmp_path))
    with open(local) as handle:
        rows = list(csv.DictReader(handle))
    assert [r["spec"] for r in rows] == [c.spec for c in SMALL]
    assert sum(r["selected"] == "True" for r in rows) == 1
    assert all(r["val_acc"] and r["val_acc_weighted"] for r in rows)
    prior = json.loads(Path(client.download_artifacts(summary.parent_run_id, "teacher_class_prior.json",
                                                      str(tmp_path))).read_text())
    assert prior["class_prior"] == first_choice[0].class_prior and "Saerens" in prior["ranking"]
