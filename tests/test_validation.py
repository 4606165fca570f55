"""A component that breaks the plugin contract is rejected when the registry is built, with one
line that names the plugin, its distribution, the component and the field."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

from gkd_search import hookimpl
from gkd_search.errors import PluginError
from gkd_search.params import Choice, FloatRange
from gkd_search.registry import build_registry, get_plugin_manager
from gkd_search.types import DatasetSpec, DistillationMethod, GraphModel, ModelFamily, ModelOutput


class _Method(DistillationMethod):
    name = "mymethod"

    def build_loss(self, params, context):  # pragma: no cover - never trained here
        raise NotImplementedError


class _Linear(GraphModel):
    def __init__(self, returns: str):
        super().__init__()
        self.lin1, self.lin2 = nn.Linear(5, 8), nn.Linear(8, 3)
        self.returns = returns

    def forward(self, x, edge_index):
        h = self.lin1(x)
        logits = self.lin2(torch.relu(h))
        if self.returns == "tensor":
            return logits
        if self.returns == "logits-only":
            return ModelOutput(logits, [logits])
        if self.returns == "wrong-classes":
            return ModelOutput(h, [h, h])
        return ModelOutput(logits, [h, logits])


class _Family(ModelFamily):
    name = "myfamily"

    def __init__(self, returns="ok"):
        self.returns = returns

    def build(self, in_channels, num_classes, num_layers, hidden_channels, dropout=0.0, **params):
        return _Linear(self.returns)


def registry_with(kind: str, component):
    hook = {"method": "gkd_methods", "family": "gkd_families", "dataset": "gkd_datasets",
            "loss": "gkd_structural_losses"}[kind]
    plugin = type("Plugin", (), {hook: hookimpl(lambda self: [component])})()
    pm = get_plugin_manager(autoload=False)
    pm.register(plugin, name="my-plugin")
    return build_registry(pm)


def test_a_valid_third_party_family_and_method_register():
    registry = registry_with("family", _Family())
    assert "myfamily" in registry.families
    assert "mymethod" in registry_with("method", _Method()).methods


def bad(cls_name, base, **attrs):
    return type(cls_name, (base,), attrs)


@pytest.mark.parametrize("kind, component, fragment", [
    ("method", type("NotAMethod", (), {"name": "mymethod"})(),
     "method 'mymethod': is a NotAMethod, not a gkd_search.types.DistillationMethod"),
    ("method", bad("M1", _Method, requires=frozenset({"logitz"}))(),
     "method 'mymethod': 'requires' names 'logitz', which a teacher does not provide (known: hidden, logits)"),
    ("method", bad("M2", _Method, student_kinds=frozenset())(), "method 'mymethod': 'student_kinds' is []"),
    ("method", bad("M3", _Method, student_kinds=frozenset({"gnn"}))(), "'student_kinds' is ['gnn']"),
    ("method", bad("M4", _Method, hyperparameters={"tau": (1, 8)})(),
     "method 'mymethod': hyperparameter 'tau' is (1, 8); declare it with gkd_search.params"),
    ("method", bad("M5", _Method, hyperparameters={"tau": FloatRange(8.0, 1.0)})(), "method 'mymethod': hyperparameter 'tau'"),
    ("method", bad("M6", _Method, hyperparameters={"mode": Choice(())})(), "a choice list must not be empty"),
    ("family", bad("F1", _Family, hyperparameters={"width": FloatRange(0.1, 1.0)})(),
     "family 'myfamily': family parameter 'width' is a FloatRange; an architecture parameter must be a Choice or Fixed"),
    ("family", _Family("tensor"), "family 'myfamily': the model's forward returned Tensor; it must return "
                                  "gkd_search.types.ModelOutput"),
    ("family", _Family("logits-only"), "family 'myfamily': 'hidden' must list every layer's output"),
    ("family", _Family("wrong-classes"), "the logits have shape (4, 8), expected (num_nodes, num_classes) = (4, 3)"),
    ("dataset", bad("D1", DatasetSpec, name="MyData", load=lambda self, *a, **k: None)(),
     "dataset 'MyData': the name must be lower case"),
    ("dataset", bad("D2", DatasetSpec, name="mydata", default_teacher="gcn-2-64", load=lambda self, *a, **k: None)(),
     "dataset 'mydata': 'default_teacher': --teacher 'gcn-2-64' is not FAMILY:LAYERS:HIDDEN"),
])
def test_contract_violations_name_plugin_component_and_field(kind, component, fragment):
    with pytest.raises(PluginError) as info:
        registry_with(kind, component)
    message = str(info.value)
    assert message.startswith("plugin 'my-plugin' (gkd-search "), message
    assert fragment in message, message
    assert "\n" not in message


def test_a_family_whose_build_fails_is_named():
    class Broken(_Family):
        def build(self, *args, **kwargs):
            raise RuntimeError("no weights")

    with pytest.raises(PluginError, match=r"family 'myfamily': building and running a 2-layer, 8-wide model on a "
                                          r"4-node graph failed: RuntimeError: no weights"):
        registry_with("family", Broken())


def test_the_cli_reports_a_broken_plugin_on_one_line(tmp_path):
    """Through the real CLI: a plugin registered with --block-plugin absent would break the
    contract; gkd-search exits 2 with the one-line message and no traceback."""
    script = tmp_path / "run.py"
    script.write_text(
        "import sys\n"
        "from gkd_search import cli, hookimpl, registry\n"
        "from gkd_search.types import DistillationMethod\n"
        "class M(DistillationMethod):\n"
        "    name = 'broken'\n"
        "    requires = frozenset({'attention'})\n"
        "    def build_loss(self, params, context): raise NotImplementedError\n"
        "class P:\n"
        "    @hookimpl\n"
        "    def gkd_methods(self): return [M()]\n"
        "original = registry.get_plugin_manager\n"
        "def patched(**kwargs):\n"
        "    pm = original(**kwargs)\n"
        "    pm.register(P(), name='broken-plugin')\n"
        "    return pm\n"
        "registry.get_plugin_manager = patched\n"
        "sys.exit(cli.main(['plugins']))\n"
    )
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "plugin 'broken-plugin'" in lines[0] and "'requires' names 'attention'" in lines[0]


class _Abstract(DistillationMethod):
    name = "half-done"  # no build_loss: the class cannot be instantiated


def test_a_hook_that_raises_names_the_plugin_and_the_error():
    plugin = type("Plugin", (), {"gkd_methods": hookimpl(lambda self: [_Abstract()])})()
    pm = get_plugin_manager(autoload=False)
    pm.register(plugin, name="my-plugin")
    with pytest.raises(PluginError, match=r"^plugin 'my-plugin' \(gkd-search [0-9.]+\): gkd_methods\(\) raised TypeError: "
                                          r"Can't instantiate abstract class _Abstract .*build_loss"):
        build_registry(pm)


def test_a_hook_that_returns_one_component_instead_of_a_list():
    plugin = type("Plugin", (), {"gkd_families": hookimpl(lambda self: _Family())})()
    pm = get_plugin_manager(autoload=False)
    pm.register(plugin, name="my-plugin")
    with pytest.raises(PluginError, match=r"gkd_families\(\) must return a list, got _Family"):
        build_registry(pm)
