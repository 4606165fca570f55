"""Hyperparameter declarations (params.py) and search-space files (space.py)."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import optuna
import pytest

from gkd_search.errors import SpaceError, UnknownComponentError, UsageError
from gkd_search.params import Choice, Fixed, FloatRange, IntRange, param_from_yaml
from gkd_search.space import SPACES_DIR, Architecture, SearchSpace, load_space, suggest_spec

optuna.logging.set_verbosity(optuna.logging.WARNING)

WHERE = "space.yaml: training.lr"


# ------------------------------------------------------------------------------ param_from_yaml


@pytest.mark.parametrize(
    "value, expected",
    [
        ([16, 32, 64], Choice((16, 32, 64))),
        (["a", "b"], Choice(("a", "b"))),
        ({"low": 0.1, "high": 1.0}, FloatRange(0.1, 1.0, False)),
        ({"low": 1, "high": 8}, FloatRange(1.0, 8.0, False)),
        ({"low": 0.001, "high": 0.1, "log": True}, FloatRange(0.001, 0.1, True)),
        ({"low": 1, "high": 8, "type": "int"}, IntRange(1, 8, False)),
        ({"low": 2.0, "high": 16.0, "type": "int", "log": True}, IntRange(2, 16, True)),
        ({"low": 0.5, "high": 0.5}, FloatRange(0.5, 0.5, False)),
        (0.5, Fixed(0.5)),
        (200, Fixed(200)),
        ("adam", Fixed("adam")),
        (True, Fixed(True)),
    ],
)
def test_param_from_yaml_kinds(value, expected):
    param = param_from_yaml(value, WHERE)
    assert param == expected
    assert type(param) is type(expected)


def test_int_range_bounds_are_ints():
    param = param_from_yaml({"low": 2.0, "high": 6.0, "type": "int"}, WHERE)
    assert isinstance(param.low, int) and isinstance(param.high, int)


@pytest.mark.parametrize(
    "value, message",
    [
        ({"low": 2.0, "high": 1.0}, "range needs finite low <= high"),
        ({"low": 5, "high": 1, "type": "int"}, "range needs low <= high"),
        ({"low": float("nan"), "high": 1.0}, "range needs finite low <= high"),
        ({"low": 0.0, "high": 1.0, "log": True}, "a log range needs low > 0, got 0.0"),
        ({"low": -1.0, "high": 1.0, "log": True}, "a log range needs low > 0"),
        ({"low": 0, "high": 4, "type": "int", "log": True}, "a log range needs low > 0, got 0"),
        ({"low": 0.0, "high": 1.0, "step": 0.1}, "unknown key 'step' in range"),
        ({"low": 0.0}, "a range needs both 'low' and 'high'"),
        ({"high": 1.0}, "a range needs both 'low' and 'high'"),
        ({"low": "a", "high": 1.0}, "'low' and 'high' must be numbers"),
        ({"low": True, "high": 1.0}, "'low' and 'high' must be numbers"),
        ({"low": 1.5, "high": 3, "type": "int"}, "an int range needs integer bounds"),
        ({"low": 1, "high": 3, "type": "str"}, "unknown range type 'str'"),
        ([], "a choice list must not be empty"),
        ([16, 32, 16], "has repeated values"),
        ([[1, 2]], "is not a number, string or boolean"),
    ],
)
def test_param_from_yaml_errors_name_the_place(value, message):
    with pytest.raises(SpaceError, match=re.escape(WHERE) + ".*" + re.escape(message)):
        param_from_yaml(value, WHERE)


def test_space_error_is_a_usage_error():
    assert issubclass(SpaceError, UsageError)


# ------------------------------------------------------------------------------ load_space


def write_space(tmp_path: Path, text: str, name: str = "space.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


SMALL_SPACE = """
    description: a small space
    families:
      gcn: {num_layers: [1, 2], hidden_channels: [16, 32]}
      gat: {num_layers: [1, 2], hidden_channels: [8, 16], heads: [1, 2]}
      mlp: {num_layers: [1, 2, 3], hidden_channels: [32]}
    methods:
      none: {}
      softkd: {tau: {low: 1.0, high: 4.0}}
      glnn: {lambda: [0.3, 0.7]}
    training:
      lr: {low: 0.005, high: 0.02, log: true}
      dropout: [0.0, 0.5]
      patience: 20
"""


def load(path, registry, **kwargs) -> SearchSpace:
    return load_space(path, registry.families, registry.methods, **kwargs)


def test_valid_space_loads(tmp_path, gkd_registry):
    path = write_space(tmp_path, SMALL_SPACE)
    space = load(path, gkd_registry)
    assert space.source == str(path)
    assert set(space.families) == {"gcn", "gat", "mlp"}
    assert space.families["gcn"].num_layers == (1, 2)
    assert space.families["gcn"].hidden_channels == (16, 32)
    assert space.families["gat"].params == {"heads": (1, 2)}
    assert space.families["gcn"].params == {}
    assert list(space.methods) == ["none", "softkd", "glnn"]
    assert space.methods["none"] == {}
    # a narrowed parameter replaces the default, the others keep the method's default range
    assert space.methods["softkd"]["tau"] == FloatRange(1.0, 4.0)
    assert space.methods["softkd"]["alpha"] == FloatRange(0.1, 0.95)
    assert space.methods["glnn"]["lambda"] == Choice((0.3, 0.7))
    assert space.training["lr"] == FloatRange(0.005, 0.02, log=True)
    assert space.training["dropout"] == Choice((0.0, 0.5))
    assert space.training["patience"] == Fixed(20)
    # not in the file: the defaults
    assert space.training["epochs"] == Fixed(200)
    assert space.training["weight_decay"] == FloatRange(1e-5, 1e-3, log=True)


def test_epochs_override(tmp_path, gkd_registry):
    space = load(write_space(tmp_path, SMALL_SPACE), gkd_registry, epochs=7)
    assert space.training["epochs"] == Fixed(7)


def test_default_space_loads_by_name(gkd_registry):
    space = load("default", gkd_registry)
    assert Path(space.source) == SPACES_DIR / "default.yaml"
    assert set(space.families) == {"gcn", "sage", "gat", "mlp"}
    assert set(space.methods) == set(gkd_registry.methods)  # the whole catalogue
    archs = space.architectures(gkd_registry.families)
    # gcn, sage: 1 one-layer + 2*4 ; gat: 2*3*3 ; mlp: 1 + 2*4
    assert len(archs) == 9 + 9 + 18 + 9
    for arch in archs:  # every architecture of the default space can be built
        gkd_registry.families[arch.family].build(8, 3, arch.num_layers, arch.hidden_channels,
                                                 **dict(arch.family_params))


def test_space_not_found_lists_known_names(gkd_registry):
    with pytest.raises(SpaceError, match="search space 'no-such-space' not found.*default"):
        load("no-such-space", gkd_registry)


@pytest.mark.parametrize(
    "text, key, message",
    [
        ("families: {}\nfamiles: {}\n", "unknown key 'familes'",
         "known: description, teacher, students_smaller_than_teacher, families, methods, training"),
        ("families:\n  transformer: {num_layers: [1], hidden_channels: [8]}\nmethods: {none: {}}\n",
         "families.transformer", "unknown family (known: appnp, gat, gcn, gcnii, mlp, rgcn, sage, sgc)"),
        ("families:\n  gcn: {num_layers: [1], hidden_channels: [8]}\nmethods: {magic: {}}\n",
         "methods.magic", "unknown method (known: abkd, at, fitnets, gcrd, glnn, graphakd, gsp, "
         "infgrand, lsp, none, softkd, stride)"),
        ("families:\n  gcn: {num_layers: [1], hidden_channels: [8]}\nmethods:\n  softkd: {temperature: 2.0}\n",
         "methods.softkd.temperature", "unknown hyperparameter (known: tau, alpha)"),
        ("families:\n  gcn: {num_layers: [1], hidden_channels: [8]}\nmethods:\n  none: {tau: 2.0}\n",
         "methods.none.tau", "unknown hyperparameter (known: none)"),
        ("families:\n  gcn: {num_layers: [1], hidden_channels: [8]}\nmethods: {none: {}}\ntraining: {momentum: 0.9}\n",
         "training.momentum", "unknown key (known: lr, weight_decay, dropout, epochs, patience, conv_weight_decay, guard)"),
        ("families:\n  gcn: {num_layers: [1], hidden_channels: [8], heads: [2]}\nmethods: {none: {}}\n",
         "families.gcn.heads", "unknown key (known: num_layers, hidden_channels)"),
        ("families:\n  gcn: {hidden_channels: [8]}\nmethods: {none: {}}\n",
         "families.gcn", "missing 'num_layers'"),
        ("families:\n  gcn: {num_layers: [2]}\nmethods: {none: {}}\n",
         "families.gcn", "missing 'hidden_channels'"),
        ("families:\n  gcn: {num_layers: [0, 2], hidden_channels: [8]}\nmethods: {none: {}}\n",
         "families.gcn.num_layers", "expected a positive integer"),
        ("families:\n  gcn: {num_layers: -1, hidden_channels: [8]}\nmethods: {none: {}}\n",
         "families.gcn.num_layers", "expected a positive integer"),
        ("families:\n  gcn: {num_layers: [2], hidden_channels: [8.5]}\nmethods: {none: {}}\n",
         "families.gcn.hidden_channels", "expected a positive integer"),
        ("families:\n  gat: {num_layers: [2], hidden_channels: [8], heads: {low: 1, high: 4}}\nmethods: {none: {}}\n",
         "families.gat.heads", "must be a list of choices or one value"),
        ("families:\n  gcn: {num_layers: [2], hidden_channels: [8]}\nmethods: {none: {}}\ntraining: {lr: [fast]}\n",
         "training.lr", "choice 'fast' is not a number"),
        ("families:\n  gcn: {num_layers: [2], hidden_channels: [8]}\nmethods:\n  softkd: {tau: {low: 4, high: 1}}\n",
         "methods.softkd.tau", "range needs finite low <= high"),
        ("families: [gcn]\nmethods: {none: {}}\n", "families", "expected a mapping"),
    ],
)
def test_space_errors_name_file_and_key(tmp_path, gkd_registry, text, key, message):
    path = write_space(tmp_path, text)
    with pytest.raises(SpaceError) as info:
        load(path, gkd_registry)
    text = str(info.value)
    assert text.startswith(f"{path}: "), text
    assert key in text, text
    assert message in text, text


def test_malformed_yaml_names_file_and_line(tmp_path, gkd_registry):
    path = write_space(tmp_path, "families:\n  gcn: {num_layers: [1, 2\nmethods: {none: {}}\n")
    with pytest.raises(SpaceError, match=re.escape(str(path)) + r": line \d+ is not valid YAML"):
        load(path, gkd_registry)


def test_space_without_family_or_method(tmp_path, gkd_registry):
    path = write_space(tmp_path, "methods: {none: {}}\n")
    with pytest.raises(SpaceError, match=re.escape(str(path)) + ": the space has no student family"):
        load(path, gkd_registry)
    path = write_space(tmp_path, "families:\n  gcn: {num_layers: [1], hidden_channels: [8]}\n", "b.yaml")
    with pytest.raises(SpaceError, match=re.escape(str(path)) + ": the space has no method"):
        load(path, gkd_registry)


def test_space_where_no_method_fits_any_family(tmp_path, gkd_registry):
    path = write_space(tmp_path, "families:\n  gcn: {num_layers: [2], hidden_channels: [8]}\nmethods: {glnn: {}}\n")
    with pytest.raises(SpaceError, match=r"no method in \(glnn\) can train any family in \(gcn\)"):
        load(path, gkd_registry)


def test_family_without_usable_method_is_dropped(tmp_path, gkd_registry):
    space = load(write_space(tmp_path, SMALL_SPACE), gkd_registry, only_methods=["glnn"])
    assert set(space.families) == {"mlp"}


# ------------------------------------------------------------------------------ only_* filters


def test_only_methods_filters_and_adds_defaults(tmp_path, gkd_registry):
    path = write_space(tmp_path, "families:\n  gcn: {num_layers: [2], hidden_channels: [8]}\n"
                                 "methods:\n  none: {}\n  softkd: {tau: [2.0]}\n")
    space = load(path, gkd_registry, only_methods=["softkd"])
    assert list(space.methods) == ["softkd"]
    assert space.methods["softkd"]["tau"] == Choice((2.0,))  # the file's narrowing is kept
    # a method absent from the file joins with its default ranges
    space = load(path, gkd_registry, only_methods=["none", "glnn"])
    assert list(space.methods) == ["none", "glnn"]
    assert space.methods["glnn"] == {"lambda": FloatRange(0.0, 1.0)}


def test_only_families_filters(tmp_path, gkd_registry):
    space = load(write_space(tmp_path, SMALL_SPACE), gkd_registry, only_families=["gat", "mlp"])
    assert set(space.families) == {"gat", "mlp"}
    assert {a.family for a in space.architectures(gkd_registry.families)} == {"gat", "mlp"}


def test_only_methods_unknown_name(tmp_path, gkd_registry):
    with pytest.raises(UnknownComponentError, match="unknown method 'magic'.*glnn, .*, none, softkd, stride") as info:
        load(write_space(tmp_path, SMALL_SPACE), gkd_registry, only_methods=["none", "magic"])
    assert info.value.kind == "method" and info.value.name == "magic"
    assert sorted(info.value.known) == sorted(gkd_registry.methods)


def test_only_families_unknown_name(tmp_path, gkd_registry):
    with pytest.raises(UnknownComponentError, match="unknown family 'transformer'.*appnp, gat, gcn, gcnii, mlp, rgcn, sage, sgc"):
        load(write_space(tmp_path, SMALL_SPACE), gkd_registry, only_families=["transformer"])


def test_only_families_known_but_absent_from_file_joins_with_the_family_defaults(tmp_path, gkd_registry):
    """``--families sage`` on a space without sage (a plugin's family, typically) searches the
    family's own default depths and widths, and its declared parameters."""
    space = load(write_space(tmp_path, SMALL_SPACE), gkd_registry, only_families=["sage", "gat"])
    sage = gkd_registry.families["sage"]
    assert space.families["sage"].num_layers == sage.default_num_layers == (1, 2, 3)
    assert space.families["sage"].hidden_channels == sage.default_hidden_channels
    assert space.families["gat"].params["heads"] == (1, 2)  # from the file, not the defaults
    keys = {a.key for a in space.architectures(gkd_registry.families)}
    assert {"sage-1L", "sage-3L-128"} <= keys
    sgc = load(write_space(tmp_path, SMALL_SPACE), gkd_registry, only_families=["sgc"])
    assert sgc.families["sgc"].hidden_channels == (0,)  # SGC has no hidden width


# ------------------------------------------------------------------------------ architectures


def test_architectures_by_hand(tmp_path, gkd_registry):
    space = load(write_space(tmp_path, SMALL_SPACE), gkd_registry)
    archs = space.architectures(gkd_registry.families)
    keys = [a.key for a in archs]
    assert len(keys) == len(set(keys))
    assert set(keys) == {
        # gcn: the two 1-layer models (hidden 16 and 32) are the same model
        "gcn-1L", "gcn-2L-16", "gcn-2L-32",
        # gat: heads are dropped for a 1-layer model, so 4 one-layer combinations collapse to one
        "gat-1L", "gat-2L-8-heads=1", "gat-2L-8-heads=2", "gat-2L-16-heads=1", "gat-2L-16-heads=2",
        # mlp
        "mlp-1L", "mlp-2L-32", "mlp-3L-32",
    }
    assert len(archs) == 11
    one_layer = [a for a in archs if a.num_layers == 1]
    assert all(a.hidden_channels == 0 and a.family_params == () for a in one_layer)
    gat2 = next(a for a in archs if a.key == "gat-2L-16-heads=2")
    assert gat2 == Architecture("gat", 2, 16, (("heads", 2),))


def test_duplicate_depths_collapse(tmp_path, gkd_registry):
    path = write_space(tmp_path, "families:\n  gcn: {num_layers: [2, 2, 1], hidden_channels: [8, 8]}\n"
                                 "methods: {none: {}}\n")
    space = load(path, gkd_registry)
    assert space.families["gcn"].num_layers == (2, 1)
    assert sorted(a.key for a in space.architectures(gkd_registry.families)) == ["gcn-1L", "gcn-2L-8"]


# ------------------------------------------------------------------------------ suggest_spec


def test_suggest_spec_respects_feasible_and_methods(tmp_path, gkd_registry):
    space = load(write_space(tmp_path, SMALL_SPACE), gkd_registry)
    archs = {a.key: a for a in space.architectures(gkd_registry.families)}
    feasible_keys = {"gcn-1L", "gcn-2L-32", "gat-2L-16-heads=2", "gat-2L-8-heads=1", "mlp-2L-32", "mlp-3L-32"}
    feasible = [archs[k] for k in sorted(feasible_keys)]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen_archs, seen_pairs = set(), set()
    for _ in range(80):
        trial = study.ask()
        spec = suggest_spec(trial, space, feasible, gkd_registry.families, gkd_registry.methods, seed=3)
        key = spec.architecture_key()
        assert key in feasible_keys, key
        assert spec.seed == 3
        seen_archs.add(key)
        seen_pairs.add((spec.family, spec.method))
        if spec.method == "glnn":
            assert spec.family == "mlp"
        assert spec.method in space.methods
        # only the chosen method's hyperparameters exist, in the spec and in the Optuna trial
        assert set(spec.method_params) == set(space.methods[spec.method])
        for other in space.methods:
            if other != spec.method:
                assert not any(name.startswith(f"{other}.") for name in trial.params), trial.params
        if spec.method == "softkd":
            assert 1.0 <= spec.method_params["tau"] <= 4.0
            assert 0.1 <= spec.method_params["alpha"] <= 0.95
        if spec.method == "glnn":
            assert spec.method_params["lambda"] in (0.3, 0.7)
        assert 0.005 <= spec.training["lr"] <= 0.02
        assert spec.training["dropout"] in (0.0, 0.5)
        assert spec.training["patience"] == 20 and spec.training["epochs"] == 200
        study.tell(trial, 0.0)
    # the sampler reached every feasible architecture and every legal (family kind, method) pair
    assert seen_archs == feasible_keys
    assert ("mlp", "glnn") in seen_pairs
    assert {m for f, m in seen_pairs if f != "mlp"} == {"none", "softkd"}


def test_suggest_spec_single_feasible_architecture(tmp_path, gkd_registry):
    space = load(write_space(tmp_path, SMALL_SPACE), gkd_registry)
    arch = next(a for a in space.architectures(gkd_registry.families) if a.key == "gat-2L-8-heads=2")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(5):
        spec = suggest_spec(study.ask(), space, [arch], gkd_registry.families, gkd_registry.methods, seed=0)
        assert (spec.family, spec.num_layers, spec.hidden_channels, spec.family_params) == ("gat", 2, 8, {"heads": 2})
        assert spec.method in ("none", "softkd")


def test_deep_gcnii_space_is_the_abkd_setting(gkd_registry):
    from gkd_search.teacher import TeacherConfig

    space = load("deep-gcnii", gkd_registry)
    teacher = TeacherConfig.parse(space.teacher)
    assert (teacher.family, teacher.num_layers, teacher.hidden_channels) == ("gcnii", 64, 64)
    assert teacher.conv_weight_decay == 0.01 and teacher.weight_decay == 5e-4
    assert set(space.families) == {"gcnii"} and {"abkd", "stride"} <= set(space.methods)
    archs = space.architectures(gkd_registry.families)
    # 1-4 layers x widths 4-64; a 1-layer GCNII keeps its width (its convolution runs at it)
    assert sorted((a.num_layers, a.hidden_channels) for a in archs) == [
        (layers, width) for layers in (1, 2, 3, 4) for width in (4, 8, 16, 32, 64)]
    assert "conv_weight_decay" in space.training


def test_mlp_students_space(gkd_registry):
    space = load("mlp-students", gkd_registry)
    assert set(space.families) == {"mlp"}
    assert {"glnn", "infgrand", "softkd", "none"} <= set(space.methods)
    for method in space.methods:
        assert gkd_registry.methods[method].accepts(gkd_registry.families["mlp"])


def test_sgc_needs_no_width_and_a_space_teacher_must_be_text(tmp_path, gkd_registry):
    path = tmp_path / "s.yaml"
    path.write_text("families:\n  sgc: {num_layers: [1, 2]}\nmethods: {none: {}}\n")
    space = load_space(str(path), gkd_registry.families, gkd_registry.methods)
    assert [(a.num_layers, a.hidden_channels) for a in space.architectures(gkd_registry.families)] == [(1, 0), (2, 0)]
    path.write_text("teacher: {family: gcn}\nfamilies:\n  gcn: {num_layers: [1], hidden_channels: [8]}\nmethods: {none: {}}\n")
    with pytest.raises(SpaceError, match="teacher: expected FAMILY:LAYERS:HIDDEN"):
        load_space(str(path), gkd_registry.families, gkd_registry.methods)


@pytest.mark.parametrize("body, message", [
    ("abkd: {distance: manhattan}", "methods.abkd.distance: 'manhattan' is not one of 'euclidean', 'cosine'"),
    ("stride: {variant: [stride, x-stride]}", "methods.stride.variant: 'x-stride' is not one of 'stride', 'e-stride', 's-stride'"),
    ("abkd: {node_sample: many}", "methods.abkd.node_sample: 'many' is not an integer (the default is 0)"),
    ("abkd: {last_layer_only: 1}", "methods.abkd.last_layer_only: 1 is not a boolean (the default is False)"),
    ("abkd: {distance: {low: 1, high: 2}}", "methods.abkd.distance: this option takes one value or a list of values"),
    ("infgrand: {teacher_nodes: both}", "methods.infgrand.teacher_nodes: 'both' is not one of 'neighbours', 'self'"),
])
def test_method_options_are_checked_when_the_space_loads(tmp_path, gkd_registry, body, message):
    """A bad value for a method's fixed option stops the search at load time with the file and
    key, instead of failing every trial that draws the method."""
    path = tmp_path / "s.yaml"
    path.write_text(f"families:\n  gcn: {{num_layers: [2], hidden_channels: [8]}}\nmethods:\n  {body}\n")
    with pytest.raises(SpaceError, match=re.escape(message)):
        load_space(str(path), gkd_registry.families, gkd_registry.methods)


def test_method_options_accept_listed_values(tmp_path, gkd_registry):
    path = tmp_path / "s.yaml"
    path.write_text("families:\n  gcn: {num_layers: [2], hidden_channels: [8]}\nmethods:\n"
                    "  abkd: {distance: cosine, last_layer_only: [false, true], node_sample: 0}\n"
                    "  stride: {variant: [e-stride, s-stride], node_sample: {low: 64, high: 256, type: int}}\n"
                    "  infgrand: {teacher_nodes: self}\n")
    space = load_space(str(path), gkd_registry.families, gkd_registry.methods)
    assert space.methods["abkd"]["distance"] == Fixed("cosine")
    assert space.methods["stride"]["variant"] == Choice(("e-stride", "s-stride"))
    assert space.methods["infgrand"]["teacher_nodes"] == Fixed("self")


def test_stride_structure_must_name_a_registered_structural_loss(tmp_path, gkd_registry):
    """STRIDE's ``structure`` takes any registered structural loss (a plugin's too), and a name no
    plugin registers stops the load instead of failing every trial that draws it."""
    text = SMALL_SPACE.replace("      none: {}\n", "      none: {}\n      stride: {structure: [gcrd, rkd]}\n")
    path = write_space(tmp_path, text)
    losses = gkd_registry.names("loss")
    with pytest.raises(SpaceError, match=re.escape(f"{path}: methods.stride.structure: 'rkd' is not a registered "
                                                   "structural loss (known: gcrd, gsp, lsp;")):
        load(path, gkd_registry, structural_losses=losses)
    space = load(path, gkd_registry, structural_losses=[*losses, "rkd"])
    assert space.methods["stride"]["structure"] == Choice(("gcrd", "rkd"))
    # a blocked built-in loss is caught for the declared default choices too
    with pytest.raises(SpaceError, match="methods.stride.structure: 'gsp' is not a registered structural loss"):
        load(write_space(tmp_path, SMALL_SPACE), gkd_registry, only_methods=["stride"], structural_losses=["gcrd", "lsp"])


def test_a_space_can_turn_the_training_guard_off_and_only_with_a_boolean(gkd_registry, tmp_path):
    from gkd_search.errors import SpaceError
    from gkd_search.params import Fixed
    from gkd_search.space import load_space

    path = tmp_path / "unguarded.yaml"
    path.write_text("families:\n  gcn:\n    num_layers: [1]\n    hidden_channels: [16]\nmethods:\n  none: {}\n"
                    "training:\n  guard: false\n")
    space = load_space(str(path), gkd_registry.families, gkd_registry.methods)
    assert space.training["guard"] == Fixed(False)
    path.write_text(path.read_text().replace("guard: false", "guard: 0.5"))
    with pytest.raises(SpaceError, match="training.guard"):
        load_space(str(path), gkd_registry.families, gkd_registry.methods)
