"""The plugin manager and the component registry: built-ins, duplicates, blocking, entry points."""

from __future__ import annotations

import re
import sys
import uuid

import pytest

from gkd_search import __version__, hookimpl
from gkd_search.cli import main
from gkd_search.errors import PluginError, PluginWarning, UnknownComponentError
from gkd_search.params import FloatRange
from gkd_search.registry import (
    BLOCK_ENV,
    BUILTIN_PLUGINS,
    DISABLE_AUTOLOAD_ENV,
    build_registry,
    get_plugin_manager,
)
from gkd_search.types import DistillationMethod

BUILTIN_NAMES = {
    "method": ["abkd", "at", "fitnets", "gcrd", "glnn", "graphakd", "gsp", "infgrand", "lsp", "none", "softkd", "stride"],
    "family": ["appnp", "gat", "gcn", "gcnii", "mlp", "rgcn", "sage", "sgc"],
    "dataset": ["citeseer", "computers", "cora", "cs", "file", "ogbn-arxiv", "ogbn-mag", "ogbn-products", "photo",
                "physics", "pubmed", "pyg", "synthetic", "synthetic-hetero"],
    "loss": ["gcrd", "gsp", "lsp"],
}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    monkeypatch.delenv(BLOCK_ENV, raising=False)
    monkeypatch.delenv(DISABLE_AUTOLOAD_ENV, raising=False)


def test_builtins_registered():
    pm = get_plugin_manager(autoload=False)
    for module_name in BUILTIN_PLUGINS:
        assert pm.get_plugin(module_name) is not None, module_name
    registry = build_registry(pm)
    for kind, names in BUILTIN_NAMES.items():
        assert registry.names(kind) == names
    assert registry.get("family", "gcn").name == "gcn"
    assert registry.get("method", "softkd").name == "softkd"
    provided = {(p.kind, p.name): p for p in registry.provided()}
    assert provided[("method", "glnn")].plugin == "gkd_search.methods.glnn"
    assert provided[("dataset", "cora")].plugin == "gkd_search.datasets.planetoid"
    assert provided[("family", "sage")].distribution == f"gkd-search {__version__}"


def test_unknown_component_lists_known():
    registry = build_registry(get_plugin_manager(autoload=False))
    with pytest.raises(UnknownComponentError, match="unknown method 'magic'; known methods: abkd, at, fitnets, .*, none, softkd, stride$"):
        registry.get("method", "magic")
    with pytest.raises(UnknownComponentError, match="unknown family 'gin'; known families: appnp, gat, gcn, gcnii, mlp, rgcn, sage, sgc"):
        registry.get("family", "gin")


class _ExtraSoftKD(DistillationMethod):
    name = "softkd"
    hyperparameters = {"tau": FloatRange(1.0, 2.0)}

    def build_loss(self, params, context):  # pragma: no cover - never trained
        raise NotImplementedError


class _DuplicatePlugin:
    @hookimpl
    def gkd_methods(self):
        return [_ExtraSoftKD()]


def test_duplicate_component_names_both_plugins():
    pm = get_plugin_manager(autoload=False)
    pm.register(_DuplicatePlugin(), name="my-duplicate-plugin")
    with pytest.raises(PluginError, match=r"method 'softkd' is provided twice") as info:
        build_registry(pm)
    message = str(info.value)
    assert "'gkd_search.methods.softkd'" in message
    assert "'my-duplicate-plugin'" in message
    assert "--block-plugin" in message


def test_duplicate_resolved_by_blocking_the_builtin():
    pm = get_plugin_manager(autoload=False, blocked=["gkd_search.methods.softkd"])
    pm.register(_DuplicatePlugin(), name="my-duplicate-plugin")
    registry = build_registry(pm)
    assert isinstance(registry.get("method", "softkd"), _ExtraSoftKD)
    assert registry.components["method"]["softkd"].plugin == "my-duplicate-plugin"


class _NamelessPlugin:
    @hookimpl
    def gkd_families(self):
        return [object()]


def test_component_without_name_is_rejected():
    pm = get_plugin_manager(autoload=False)
    pm.register(_NamelessPlugin(), name="nameless")
    with pytest.raises(PluginError, match="plugin 'nameless' returned a family without a 'name'"):
        build_registry(pm)


def test_block_builtin_by_argument():
    registry = build_registry(get_plugin_manager(autoload=False,
                                                 blocked=["gkd_search.methods.glnn", "gkd_search.families.gat"]))
    assert "glnn" not in registry.names("method") and "softkd" in registry.names("method")
    assert registry.names("family") == ["appnp", "gcn", "gcnii", "mlp", "rgcn", "sage", "sgc"]
    with pytest.raises(UnknownComponentError):
        registry.get("method", "glnn")


def test_block_builtin_by_env(monkeypatch):
    monkeypatch.setenv(BLOCK_ENV, " gkd_search.datasets.amazon , gkd_search.methods.none")
    registry = build_registry(get_plugin_manager(autoload=False))
    assert registry.names("dataset") == [d for d in BUILTIN_NAMES["dataset"] if d not in ("photo", "computers")]
    assert registry.names("method") == [m for m in BUILTIN_NAMES["method"] if m != "none"]


# ------------------------------------------------------------------------------ entry points


PLUGIN_SOURCE = '''
from gkd_search import hookimpl
from gkd_search.methods.none import CrossEntropyOnly
from gkd_search.types import DistillationMethod


class DemoMethod(DistillationMethod):
    name = "{method}"
    description = "a demo method from an installed distribution"

    def build_loss(self, params, context):
        return CrossEntropyOnly()


@hookimpl
def gkd_methods():
    return [DemoMethod()]


@hookimpl
def gkd_trial_finished(result):
    pass
'''


def install_fake_distribution(root, monkeypatch, *, dist: str, version: str, ep_name: str, source: str):
    """Write ``<dist>-<version>.dist-info`` and a plugin module into ``root`` and put ``root``
    on ``sys.path``, as pip would for an installed plugin package. Returns the module name."""
    module = f"gkd_test_plugin_{uuid.uuid4().hex[:10]}"
    (root / f"{module}.py").write_text(source)
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[gkd_search]\n{ep_name} = {module}\n")
    monkeypatch.syspath_prepend(str(root))
    return module


@pytest.fixture
def demo_plugin(tmp_path, monkeypatch):
    module = install_fake_distribution(
        tmp_path, monkeypatch, dist="gkd-demo-plugin", version="1.2.3", ep_name="demo",
        source=PLUGIN_SOURCE.format(method="demo_kd"),
    )
    yield module
    sys.modules.pop(module, None)


def test_entry_point_plugin_registered_with_distribution(demo_plugin):
    pm = get_plugin_manager()
    assert pm.get_plugin("demo") is not None
    registry = build_registry(pm)
    assert "demo_kd" in registry.names("method")
    provided = registry.components["method"]["demo_kd"]
    assert provided.plugin == "demo"
    assert provided.distribution == "gkd-demo-plugin 1.2.3"
    # the built-ins are still there, attributed to gkd-search itself
    assert registry.components["method"]["softkd"].distribution == f"gkd-search {__version__}"


def test_autoload_disabled_by_env(demo_plugin, monkeypatch):
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")
    pm = get_plugin_manager()
    assert pm.get_plugin("demo") is None
    assert "demo_kd" not in build_registry(pm).names("method")
    assert demo_plugin not in sys.modules  # not even imported
    # an explicit autoload=True still loads it
    assert "demo_kd" in build_registry(get_plugin_manager(autoload=True)).names("method")


def test_entry_point_blocked_by_name(demo_plugin, monkeypatch):
    assert "demo_kd" not in build_registry(get_plugin_manager(blocked=["demo"])).names("method")
    monkeypatch.setenv(BLOCK_ENV, "demo")
    assert "demo_kd" not in build_registry(get_plugin_manager()).names("method")


def test_entry_point_duplicate_of_builtin_names_distribution_plugin(tmp_path, monkeypatch):
    module = install_fake_distribution(
        tmp_path, monkeypatch, dist="gkd-clash", version="0.3", ep_name="clash",
        source=PLUGIN_SOURCE.format(method="glnn"),
    )
    try:
        with pytest.raises(PluginError, match="'gkd_search.methods.glnn' and by plugin 'clash'"):
            build_registry(get_plugin_manager())
    finally:
        sys.modules.pop(module, None)


@pytest.fixture
def broken_plugin(tmp_path, monkeypatch):
    module = install_fake_distribution(
        tmp_path, monkeypatch, dist="gkd-broken-plugin", version="0.0.1", ep_name="broken",
        source="import a_module_that_does_not_exist_anywhere\n",
    )
    yield module
    sys.modules.pop(module, None)


def test_broken_plugin_skipped_with_warning(broken_plugin):
    with pytest.warns(PluginWarning, match=re.escape("plugin 'broken' from gkd-broken-plugin 0.0.1 failed to import")) as record:
        pm = get_plugin_manager()
    assert any("ModuleNotFoundError" in str(w.message) and "skipped" in str(w.message) for w in record)
    assert pm.get_plugin("broken") is None
    registry = build_registry(pm)  # the others (built-ins and any installed plugin) still work
    assert set(BUILTIN_NAMES["method"]) <= set(registry.names("method"))
    assert all(p.plugin != "broken" for p in registry.provided())


def test_broken_plugin_strict_raises(broken_plugin):
    with pytest.raises(PluginError, match=r"plugin 'broken' from gkd-broken-plugin 0\.0\.1 failed to import: "
                                          r"ModuleNotFoundError"):
        get_plugin_manager(strict=True)


# ------------------------------------------------------------------------------ CLI


def test_cli_plugins_lists_builtins(capsys):
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["kind", "name", "plugin", "distribution"]
    rows = {tuple(line.split()[:2]) for line in lines[1:]}
    for kind, names in BUILTIN_NAMES.items():
        for name in names:
            assert (kind, name) in rows, (kind, name, out)
    for module_name in BUILTIN_PLUGINS:
        assert module_name in out
    assert f"gkd-search {__version__}" in out


def test_cli_plugins_with_block_and_entry_point(demo_plugin, capsys):
    assert main(["plugins", "--block-plugin", "gkd_search.methods.glnn"]) == 0
    out = capsys.readouterr().out
    rows = {tuple(line.split()[:2]): line for line in out.splitlines()[1:]}
    assert ("method", "glnn") not in rows
    assert ("method", "softkd") in rows
    assert "gkd-demo-plugin 1.2.3" in rows[("method", "demo_kd")]
    # observers are listed too: nothing else shows that they are registered
    assert rows[("observer", "gkd_trial_finished")].split()[2:] == ["demo", "gkd-demo-plugin", "1.2.3"]


# ------------------------------------------------------------------ an installed broken plugin, CLI


def _cli(args, site, tmp_path):
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if k not in (BLOCK_ENV, DISABLE_AUTOLOAD_ENV)}
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "gkd_search", *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)


def test_cli_names_the_distribution_of_a_plugin_that_fails_to_import_and_starts_anyway(tmp_path, monkeypatch):
    """A distribution installed with a broken entry point (its dist-info on the path, as pip
    leaves it): gkd-search says which plugin of which distribution was skipped, in one line,
    and works with the others; ``--strict-plugins`` refuses to start."""
    site = tmp_path / "site"
    site.mkdir()
    install_fake_distribution(site, monkeypatch, dist="gkd-broken-plugin", version="0.0.1", ep_name="broken",
                              source="import a_module_that_does_not_exist_anywhere\n")
    proc = _cli(["plugins"], site, tmp_path)
    assert proc.returncode == 0, proc.stderr
    warning = [line for line in proc.stderr.splitlines() if "broken" in line]
    assert warning == ["gkd-search: warning: plugin 'broken' from gkd-broken-plugin 0.0.1 failed to import: "
                       "ModuleNotFoundError: No module named 'a_module_that_does_not_exist_anywhere' (skipped)"]
    assert "Traceback" not in proc.stderr
    rows = {tuple(line.split()[:2]) for line in proc.stdout.splitlines()[1:]}
    assert {("method", m) for m in BUILTIN_NAMES["method"]} <= rows

    strict = _cli(["plugins", "--strict-plugins"], site, tmp_path)
    assert strict.returncode == 2
    assert strict.stderr.strip().splitlines() == [
        "gkd-search: error: plugin 'broken' from gkd-broken-plugin 0.0.1 failed to import: "
        "ModuleNotFoundError: No module named 'a_module_that_does_not_exist_anywhere'"]

    search = _cli(["--strict-plugins", "--dataset", "synthetic", "--trials", "1", "--tracking-uri",
                   f"sqlite:///{tmp_path}/mlflow.db", "--cache-dir", str(tmp_path / "cache")], site, tmp_path)
    assert search.returncode == 2 and "gkd-broken-plugin 0.0.1 failed to import" in search.stderr
    assert not (tmp_path / "mlflow.db").exists()  # stopped before anything was logged
