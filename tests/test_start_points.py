"""Start points (start_points.py): a space's ``start_with:`` trials run first, then the sampler."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import optuna
import pytest

from gkd_search.errors import SpaceError
from gkd_search.ray_backend import METRICS, MODES, GkdOptunaSearch
from gkd_search.space import SPACES_DIR, load_space, suggest_spec
from gkd_search.start_points import resolve_start_points

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPACE = """
    families:
      gcn: {num_layers: [1, 2], hidden_channels: [16, 32]}
      gat: {num_layers: [2], hidden_channels: [8, 16], heads: [1, 2]}
      mlp: {num_layers: [1, 2], hidden_channels: [32, 64]}
    methods:
      none: {}
      softkd: {tau: {low: 1.0, high: 4.0}, alpha: {low: 0.3, high: 0.9}}
      glnn: {lambda: [0.3, 0.7]}
      lsp: {}
    training:
      lr: {low: 0.001, high: 0.1, log: true}
    start_with:
      - {family: mlp, num_layers: 2, hidden_channels: 64, method: glnn, method_params: {lambda: 0.7}}
      - {family: gat, num_layers: 2, hidden_channels: 16, heads: 2, method: softkd,
         method_params: {tau: 2.5}, training: {lr: 0.02}}
      - {family: mlp, num_layers: 1, hidden_channels: 999, method: none}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def specs_of_a_study(space, feasible, registry, points, n: int):
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.TPESampler(seed=3))
    for params in points:
        study.enqueue_trial(params)
    specs = []
    for _ in range(n):
        trial = study.ask()
        specs.append(suggest_spec(trial, space, feasible, registry.families, registry.methods, seed=0))
        study.tell(trial, [0.5, 1.0])
    return specs


def test_start_points_are_the_first_trials_and_only_their_pinned_values_are_fixed(tmp_path, gkd_registry):
    space = load_space(write(tmp_path, SPACE), gkd_registry.families, gkd_registry.methods)
    # a 1-layer MLP has no hidden width: any given width names the one mlp-1L architecture
    assert [p.label for p in space.start_with] == ["mlp-2L-64 glnn", "gat-2L-16-heads=2 softkd", "mlp-1L none"]
    feasible = space.architectures(gkd_registry.families)
    points, used, skipped = resolve_start_points(space, feasible, gkd_registry.families, gkd_registry.methods)
    assert used == ["mlp-2L-64 glnn", "gat-2L-16-heads=2 softkd", "mlp-1L none"] and skipped == []
    first, second, third, *rest = specs_of_a_study(space, feasible, gkd_registry, points, 8)
    assert (first.architecture_key(), first.method, first.method_params) == ("mlp-2L-64", "glnn", {"lambda": 0.7})
    assert (second.architecture_key(), second.method) == ("gat-2L-16-heads=2", "softkd")
    assert second.method_params["tau"] == 2.5 and second.training["lr"] == 0.02
    assert 0.3 <= second.method_params["alpha"] <= 0.9  # not pinned: sampled
    assert (third.architecture_key(), third.method) == ("mlp-1L", "none")
    assert first.training["lr"] != second.training["lr"]  # sampled, not a default
    # then the sampler draws freely: some other student comes next
    assert {(s.architecture_key(), s.method) for s in rest} - {("mlp-2L-64", "glnn"), ("mlp-1L", "none")}


def test_a_start_point_outside_what_the_search_can_draw_is_skipped(tmp_path, gkd_registry):
    space = load_space(write(tmp_path, SPACE), gkd_registry.families, gkd_registry.methods)
    over_budget = [a for a in space.architectures(gkd_registry.families) if a.family != "gat"]
    points, used, skipped = resolve_start_points(space, over_budget, gkd_registry.families, gkd_registry.methods)
    assert used == ["mlp-2L-64 glnn", "mlp-1L none"] and skipped == ["gat-2L-16-heads=2 softkd"]
    specs = specs_of_a_study(space, over_budget, gkd_registry, points, 2)
    assert [(s.architecture_key(), s.method) for s in specs] == [("mlp-2L-64", "glnn"), ("mlp-1L", "none")]
    # --methods none: the glnn and softkd points name a method the search no longer has
    narrowed = load_space(write(tmp_path, SPACE), gkd_registry.families, gkd_registry.methods, only_methods=["none"])
    _, used, skipped = resolve_start_points(narrowed, narrowed.architectures(gkd_registry.families),
                                            gkd_registry.families, gkd_registry.methods)
    assert used == ["mlp-1L none"] and len(skipped) == 2


@pytest.mark.parametrize("name", sorted(p.stem for p in SPACES_DIR.glob("*.yaml")))
def test_every_start_point_of_a_built_in_space_can_run(gkd_registry, name):
    space = load_space(name, gkd_registry.families, gkd_registry.methods)
    feasible = space.architectures(gkd_registry.families)
    points, used, skipped = resolve_start_points(space, feasible, gkd_registry.families, gkd_registry.methods)
    assert skipped == [] and len(used) == len(space.start_with)
    specs = specs_of_a_study(space, feasible, gkd_registry, points, len(points))
    assert [f"{s.architecture_key()} {s.method}" for s in specs] == used


BAD = [
    ("start_with: {family: mlp}", "start_with: expected a list of trials"),
    ("start_with: [mlp]", "start_with[0]: expected a mapping"),
    ("start_with: [{family: mlp, num_layers: 2}]", "start_with[0]: missing 'method'"),
    ("start_with: [{family: mlp, num_layers: 2, method: none}]", "start_with[0]: missing 'hidden_channels'"),
    ("start_with: [{family: sage, num_layers: 2, hidden_channels: 16, method: none}]",
     "start_with[0].family: 'sage' is not a family of this space"),
    ("start_with: [{family: mlp, num_layers: 3, hidden_channels: 64, method: none}]",
     "start_with[0]: mlp-3L-64 is not an architecture of this space (families.mlp: num_layers [1, 2]"),
    ("start_with: [{family: gat, num_layers: 2, hidden_channels: 16, method: none}]",
     "start_with[0]: gat-2L-16 matches several: give its heads"),
    ("start_with: [{family: mlp, num_layers: 2, hidden_channels: 64, method: none, heads: 2}]",
     "start_with[0].heads: unknown key"),
    ("start_with: [{family: mlp, num_layers: 2, hidden_channels: 64, method: at}]",
     "start_with[0].method: 'at' is not a method of this space"),
    ("start_with: [{family: gcn, num_layers: 2, hidden_channels: 16, method: glnn}]",
     "start_with[0].method: 'glnn' cannot train a gcn student"),
    ("start_with: [{family: mlp, num_layers: 2, hidden_channels: 64, method: softkd, method_params: {tau: 9.0}}]",
     "start_with[0].method_params.tau: 9.0 is outside the space's range [1.0, 4.0]"),
    ("start_with: [{family: mlp, num_layers: 2, hidden_channels: 64, method: glnn, method_params: {lambda: 0.5}}]",
     "start_with[0].method_params.lambda: 0.5 is outside the space's choices [0.3, 0.7]"),
    ("start_with: [{family: mlp, num_layers: 2, hidden_channels: 64, method: none, training: {momentum: 0.9}}]",
     "start_with[0].training.momentum: not a searched value here"),
    ("start_with: [{family: mlp, num_layers: 2, hidden_channels: 64, method: none, training: {lr: fast}}]",
     "start_with[0].training.lr: 'fast' is outside the space's range"),
]


@pytest.mark.parametrize("entry, message", BAD, ids=[m.split(":")[1].strip()[:40] for _, m in BAD])
def test_a_bad_start_point_names_the_file_the_entry_and_the_fix(tmp_path, gkd_registry, entry, message):
    body = SPACE.split("    start_with:")[0] + textwrap.indent(entry, "    ") + "\n"
    path = write(tmp_path, body)
    with pytest.raises(SpaceError, match=re.escape(f"{path}: {message}")):
        load_space(path, gkd_registry.families, gkd_registry.methods)


def test_the_searcher_enqueues_the_start_points_once_and_never_into_a_resumed_study(tmp_path, gkd_registry):
    space = load_space(write(tmp_path, SPACE), gkd_registry.families, gkd_registry.methods)
    feasible = space.architectures(gkd_registry.families)
    points, _, _ = resolve_start_points(space, feasible, gkd_registry.families, gkd_registry.methods)
    storage = f"sqlite:///{tmp_path}/study.db"

    def searcher() -> GkdOptunaSearch:
        def define(trial):
            spec = suggest_spec(trial, space, feasible, gkd_registry.families, gkd_registry.methods, seed=0)
            return {"spec": f"{spec.architecture_key()} {spec.method}"}

        return GkdOptunaSearch(space=define, metric=METRICS, mode=MODES, sampler=optuna.samplers.TPESampler(seed=0),
                               storage=optuna.storages.RDBStorage(storage), study_name="gkd-search")

    first = searcher()
    assert first.start_with(points) == 3
    assert first.suggest("a")["spec"] == "mlp-2L-64 glnn"
    assert first.suggest("b")["spec"] == "gat-2L-16-heads=2 softkd"
    resumed = searcher()  # the same study on disk: it has trials, the points are not queued again
    assert resumed.start_with(points) == 0
    waiting = resumed._ot_study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
    assert len(waiting) == 1  # the third point, queued by the first searcher
