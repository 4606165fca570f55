"""``docs/plugins.md`` is the whole plugin contract: every hook has an exact signature there and a
test here; every field of every type a hook passes, every attribute and method of every base
class, every building block and every contract check is documented; and the worked example,
taken verbatim from the page, installs, passes its own tests and is searched like a built-in."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from gkd_search import hookspecs, nn, testing, types

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "plugins.md").read_text()
HOOKS = sorted(name for name, f in vars(hookspecs).items()
               if callable(f) and hasattr(f, f"{hookspecs.PROJECT}_spec"))
TEST_FILES = sorted([*ROOT.glob("tests/test_*.py"), *ROOT.glob("plugins/*/tests/test_*.py")])


def section(title: str) -> str:
    """The text under the heading whose text is ``title`` (up to the next heading of that level)."""
    match = re.search(rf"^(#+) {re.escape(title)}\n(.*?)(?=^\1 |\Z)", DOC, flags=re.M | re.S)
    assert match, f"docs/plugins.md has no section {title!r}"
    return match.group(2)


def plain(annotation: object) -> str:
    return str(annotation).strip("'")


def signature_line(name: str, function) -> str:
    sig = inspect.signature(function)
    args = ", ".join(f"{p.name}: {plain(p.annotation)}" for p in sig.parameters.values())
    return f"def {name}({args}) -> {plain(sig.return_annotation)}"


def test_the_hooks_are_the_ones_we_know():
    assert HOOKS == ["gkd_datasets", "gkd_families", "gkd_methods", "gkd_search_finished",
                     "gkd_structural_losses", "gkd_trial_finished"]


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented_with_its_exact_signature(hook):
    text = section(f"`{hook}`")
    expected = signature_line(hook, getattr(hookspecs, hook))
    blocks = re.findall(r"```python\n(.*?)\n```", text, flags=re.S)
    assert expected in blocks, f"docs/plugins.md, section `{hook}`: expected the block {expected!r}, found {blocks}"


def hookimpls_in(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names = {d.id if isinstance(d, ast.Name) else getattr(d, "attr", None) for d in node.decorator_list}
            if "hookimpl" in names:
                found.add(node.name)
    return found


def names_of_tests_in(path: Path) -> set[str]:
    return {node.name for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")}


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_test(hook):
    """A test module implements the hook with ``@hookimpl`` and has a test named ``test_hook_<hook>...``."""
    covering = [p for p in TEST_FILES if hook in hookimpls_in(p)
                and any(t.startswith(f"test_hook_{hook}") for t in names_of_tests_in(p))]
    assert covering, f"no test module implements {hook!r} and has a test_hook_{hook}... test"


def test_the_meta_test_can_fail(tmp_path):
    """A hook without a test would be caught: a file with only a hookimpl does not count."""
    lonely = tmp_path / "test_lonely.py"
    lonely.write_text("from gkd_search import hookimpl\n\n@hookimpl\ndef gkd_datasets():\n    return []\n")
    assert hookimpls_in(lonely) == {"gkd_datasets"} and not names_of_tests_in(lonely)


DATACLASSES = [types.ModelOutput, types.DistillationBatch, types.DistillationContext, types.GraphDataset,
               types.TrialSpec, types.TrialResult, types.SearchSummary, types.TeacherOutputs]


@pytest.mark.parametrize("cls", DATACLASSES, ids=lambda c: c.__name__)
def test_every_field_of_every_type_a_hook_passes_is_documented(cls):
    text = section(f"`{cls.__name__}`")
    for f in dataclasses.fields(cls):
        assert f"| `{f.name}` |" in text, f"docs/plugins.md, `{cls.__name__}`: field {f.name!r} is not in the table"


@pytest.mark.parametrize("cls", DATACLASSES, ids=lambda c: c.__name__)
def test_every_type_lists_exactly_its_required_fields(cls):
    required = [f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    line = "Required fields: " + ", ".join(f"`{n}`" for n in required) + "."
    assert line in section(f"`{cls.__name__}`"), f"docs/plugins.md, `{cls.__name__}`: expected {line!r}"


BASES = [types.DistillationMethod, types.DistillationLoss, types.ModelFamily, types.GraphModel, types.StructuralLoss,
         types.StructuralLossModule, types.DatasetSpec]


@pytest.mark.parametrize("cls", BASES, ids=lambda c: c.__name__)
def test_every_attribute_and_method_of_every_base_class_is_documented(cls):
    text = section(f"`{cls.__name__}`")
    own = {n: v for n, v in vars(cls).items() if not n.startswith("_")}
    own.update({n: None for n in getattr(cls, "__annotations__", {}) if not n.startswith("_")})
    for name, value in own.items():
        if callable(value) or isinstance(value, property):
            sig = inspect.signature(value)
            params = []
            for p in sig.parameters.values():
                text_p = p.name if p.name == "self" else f"{p.name}: {plain(p.annotation)}"
                if p.kind is p.VAR_KEYWORD:
                    text_p = f"**{text_p}"
                if p.default is not p.empty:
                    text_p += f" = {p.default!r}"
                params.append(text_p)
            kw_only = [p for p in sig.parameters.values() if p.kind is p.KEYWORD_ONLY]
            if kw_only:
                params.insert(list(sig.parameters.values()).index(kw_only[0]), "*")
            line = f"{name}({', '.join(params)}) -> {plain(sig.return_annotation)}"
            assert line in text, f"docs/plugins.md, `{cls.__name__}`: expected the signature {line!r}"
        else:
            assert f"`{name}`" in text, f"docs/plugins.md, `{cls.__name__}`: attribute {name!r} is not documented"


def test_every_building_block_and_contract_check_is_documented():
    blocks = section("Building blocks (`gkd_search.nn`)")
    for name in nn.__all__:
        assert f"`{name}" in blocks, f"gkd_search.nn.{name} is not in docs/plugins.md"
    kit = section("Testing a plugin (`gkd_search.testing`)")
    public = [n for n in testing.__all__ if callable(getattr(testing, n))]
    assert {"check_method", "check_family", "check_structural_loss", "check_dataset", "family_cases"} <= set(public)
    for name in public:
        assert f"`{name}(" in kit or f"`{name}." in kit or f"`{name}`" in kit, \
            f"gkd_search.testing.{name} is not in docs/plugins.md"
    from gkd_search.testing import pytest_plugin

    for name in ("family_contract", "method_contract", "structural_loss_contract", "dataset_contract",
                 "gkd_registry", "gkd_contract_graph"):
        assert hasattr(pytest_plugin, name) and f"`{name}" in kit + section("Testing a plugin (`gkd_search.testing`)"), name
        assert name in kit, f"gkd_search.testing.pytest_plugin.{name} is not in docs/plugins.md"


# ----------------------------------------------------------------------- the worked example, run


def example_files() -> dict[str, str]:
    files = dict(re.findall(r"<!-- file: (\S+) -->\n```\w+\n(.*?)```", DOC, flags=re.S))
    assert {"pyproject.toml", "tests/test_mse_logits.py"} <= set(files)
    return files


@pytest.fixture(scope="module")
def installed_example(tmp_path_factory):
    """The page's example package written out and installed the way pip leaves it: the package
    on the path and ``<name>-<version>.dist-info`` with its entry points."""
    tomllib = pytest.importorskip("tomllib")
    root = tmp_path_factory.mktemp("docs-example")
    package = root / "gkd-mse-logits"
    for name, text in example_files().items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(text)
    project = tomllib.loads((package / "pyproject.toml").read_text())["project"]
    info = package / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    entry_points = project["entry-points"]["gkd_search"]
    (info / "entry_points.txt").write_text("[gkd_search]\n" + "".join(f"{k} = {v}\n" for k, v in entry_points.items()))
    env = {k: v for k, v in os.environ.items() if not k.startswith("GKD_SEARCH_")}
    env["PYTHONPATH"] = os.pathsep.join([str(package), env.get("PYTHONPATH", "")])
    return package, env


def run(args: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_the_worked_example_passes_its_own_contract_tests(installed_example):
    package, env = installed_example
    proc = run(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], package, env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "2 passed" in proc.stdout


def test_the_worked_example_is_listed_and_searched_like_a_builtin(installed_example, tmp_path):
    package, env = installed_example
    listed = run(["-m", "gkd_search", "plugins"], tmp_path, env)
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if line.split()[:2] == ["method", "mse-logits"])
    assert row.split()[2:] == ["mse_logits", "gkd-mse-logits", "0.1.0"]

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    proc = run(["-m", "gkd_search", "--dataset", "synthetic:nodes=600,edges=3000,features=16,classes=3",
                "--methods", "mse-logits", "--families", "gcn", "--trials", "2", "--epochs", "60", "--pruner", "none",
                "--teacher", "gcn:2:16:epochs=30", "--budget-ms", "50", "--latency-repeats", "30",
                "--tracking-uri", uri, "--cache-dir", str(tmp_path / "cache"), "--quiet"], tmp_path, env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    client = MlflowClient(uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    trials = [r for r in runs if r.data.tags.get("gkd.role") == "trial"]
    assert len(trials) == 2
    for trial in trials:
        assert trial.data.params["method"] == "mse-logits" and "beta" in trial.data.params
        assert trial.data.tags["gkd.status"] == "ok" and trial.data.metrics["val_acc"] > 0.5, trial.data
