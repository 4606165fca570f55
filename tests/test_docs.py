"""The docs agree with the code: the README's option table and the CLI parser, the README's commands
(the ones CI and users run), and the method tables."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gkd_search.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
DOCS = ROOT / "docs"


def parser_flags() -> set[str]:
    return {flag for action in build_parser()._actions for flag in action.option_strings}


def test_every_option_in_the_readme_table_exists():
    documented = set()
    for line in README.splitlines():
        if line.startswith("| `--"):
            documented |= set(re.findall(r"`(--[a-z-]+)", line.split("|")[1]))
    assert documented, "the README lost its option table"
    assert documented <= parser_flags(), documented - parser_flags()


def test_every_search_option_is_documented():
    undocumented = {f for f in parser_flags() if f.startswith("--")} - {"--help"}
    missing = {f for f in undocumented if f"`{f}" not in README}
    assert not missing, f"options missing from README.md: {sorted(missing)}"


def test_readme_opens_with_the_run_and_test_commands():
    blocks = re.findall(r"```bash\n(.*?)\n```", README, flags=re.S)
    assert blocks[0].endswith("gkd-search --budget-ms 10")
    assert "pip install torch==2.13.0" in blocks[0] and "pip install torch==2.13.0" in blocks[1]
    assert blocks[1].endswith("python -m pytest -q")
    assert README.index("<!-- test-command -->") < README.index(blocks[1])
    assert "<!-- test-command -->" in (ROOT / ".ci" / "run").read_text()


def _method_rows(text: str) -> dict[str, str]:
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| `") and cells:
            rows[cells[0].strip("`")] = line
    return rows


def test_every_method_and_hyperparameter_is_in_the_search_space_table(gkd_registry):
    rows = _method_rows((DOCS / "search-spaces.md").read_text())
    for name, method in gkd_registry.methods.items():
        assert name in rows, f"docs/search-spaces.md has no row for method {name!r}"
        for param in method.hyperparameters:
            assert f"`{param}`" in rows[name], f"docs/search-spaces.md: {name} row misses {param!r}"
        assert rows[name].rstrip(" |").endswith("yes" if method.combines_with_softkd else "no")


def test_every_method_is_described_in_docs_methods(gkd_registry):
    text = (DOCS / "methods.md").read_text()
    headings = [line for line in text.splitlines() if line.startswith("### ")]
    for name in gkd_registry.methods:
        assert any(f"`{name}`" in h for h in headings), f"docs/methods.md has no section for method {name!r}"
    for name in gkd_registry.losses:
        assert f"`{name}`" in text


def test_every_package_and_data_file_is_declared():
    """A non-editable install carries only the listed packages, their ``.py`` files and declared
    package data: a package left out of ``pyproject.toml``'s list, or a data file not declared,
    is missing after ``pip install .``."""
    import fnmatch

    import pytest

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {"gkd_search": ROOT / "gkd_search",
               **{name: ROOT / path for name, path in setuptools["package-dir"].items()}}
    packages = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "gkd_search").rglob("__init__.py")}
    packages |= set(setuptools["package-dir"])
    assert packages == set(setuptools["packages"]), set(setuptools["packages"]) ^ packages
    for package in setuptools["packages"]:
        folder = folders.get(package) or ROOT / package.replace(".", "/")
        data = [p.name for p in folder.iterdir() if p.is_file() and p.suffix not in (".py", ".pyc")]
        declared = setuptools["package-data"].get(package, [])
        missing = [f for f in data if not any(fnmatch.fnmatch(f, pattern) for pattern in declared)]
        assert not missing, f"{package}: files a wheel would leave out: {missing}"
    assert "default.yaml" in [p.name for p in (ROOT / "search_spaces").iterdir()]


def test_a_wheel_ships_the_search_spaces_and_a_non_editable_install_finds_them(tmp_path):
    """Build the wheel (what ``pip install .`` installs), install it into a folder of its own and
    load ``--space default`` from there, away from the repository."""
    import subprocess
    import sys
    import zipfile

    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                            str(tmp_path / "dist"), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("gkd_search-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for space in ("default", "deep-gcnii", "mlp-students"):
        assert f"gkd_search/search_spaces/{space}.yaml" in names
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                              str(tmp_path / "site"), str(wheel)], capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr[-2000:]
    code = ("import gkd_search, gkd_search.space as s; from gkd_search.registry import build_registry; "
            "r = build_registry(); sp = s.load_space('deep-gcnii', r.families, r.methods); "
            "print(gkd_search.__file__); print(s.SPACES_DIR); print(sorted(sp.families))")
    env = {**__import__("os").environ, "PYTHONPATH": str(tmp_path / "site")}
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    module, spaces, families = run.stdout.strip().splitlines()[-3:]
    assert module.startswith(str(tmp_path / "site")) and spaces == str(tmp_path / "site" / "gkd_search" / "search_spaces")
    assert families == "['gcnii']"


def test_the_own_graph_example_writes_a_graph_gkd_search_reads(gkd_registry, tmp_path, monkeypatch):
    """docs/datasets.md's five-line example, run as written: it writes ``mygraph.npz``, which
    ``--dataset mygraph.npz`` reads (the searches themselves: tests/test_search_own_graph.py)."""
    from gkd_search.loading import parse_dataset, typed_dataset_options

    section = (DOCS / "datasets.md").read_text().split("## Your own graph", 1)[1]
    code = re.findall(r"```python\n(.*?)\n```", section, flags=re.S)[0]
    assert "gkd-search --dataset mygraph.npz" in code
    assert len([line for line in code.splitlines() if line.strip() and not line.startswith("#")]) <= 5
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "docs/datasets.md", "exec"), {})
    name, options = parse_dataset("mygraph.npz")
    spec = gkd_registry.get("dataset", name)
    dataset = spec.load(None, tmp_path / "cache", 0, **typed_dataset_options(spec, options))
    assert dataset.name.startswith("mygraph-") and dataset.num_nodes == 1000 and dataset.num_classes == 4


def test_readme_links_every_doc():
    for doc in sorted(DOCS.glob("*.md")):
        assert f"docs/{doc.name}" in README, f"README.md does not link docs/{doc.name}"


@pytest.mark.parametrize("script, results", [("reproduce_abkd", "reproduce_abkd.json"),
                                             ("reproduce_claims", "reproduce_claims.json")])
def test_the_generated_reproduction_tables_are_the_committed_results(script, results, monkeypatch):
    # the blocks of docs/reproduction.md are rendered from bench/results; they were once committed empty
    import importlib
    import json
    import sys

    bench = ROOT / "bench"
    monkeypatch.syspath_prepend(str(bench))
    module = importlib.import_module(script)
    path = bench / "results" / results
    report = module.read_results(path) if hasattr(module, "read_results") else json.loads(path.read_text())
    block = module.render(report)
    doc = (ROOT / "docs" / "reproduction.md").read_text()
    assert block in doc, f"docs/reproduction.md is stale: run `python bench/{script}.py --render`"
    assert block.count("\n|") > 2  # a table, not empty markers
    sys.modules.pop(script, None)


def test_the_pooled_geom_gcn_table_pairs_runs_by_split_and_seed(monkeypatch):
    import importlib
    import statistics
    import sys

    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    module = importlib.import_module("reproduce_abkd")

    def row(split, seed, method, acc):
        return {"dataset": "cora", "split": "full", "split_index": split, "seed": seed, "method": method,
                "status": "ok", "test_acc": acc, "teacher_test_acc": 0.86 + 0.02 * split, "student_dropout": 0.0}

    base = {(0, 0): 0.80, (0, 1): 0.78, (1, 0): 0.84, (1, 1): 0.82}
    gcrd = {(0, 0): 0.83, (0, 1): 0.82, (1, 0): 0.85, (1, 1): 0.86}
    rows = [row(k[0], k[1], "none", v) for k, v in base.items()] + [row(k[0], k[1], "gcrd", v) for k, v in gcrd.items()]
    rows.append(row(1, 2, "gcrd", 0.90))  # no `none` run to pair with: counted in the mean, not in the gain
    lines = module.pooled_tables(rows)
    assert lines[0] == "### cora, Geom-GCN splits 0, 1 pooled, student dropout 0"
    diffs = [100 * (gcrd[k] - base[k]) for k in base]
    gain, two_se = statistics.fmean(diffs), 2 * statistics.stdev(diffs) / 2
    line = next(text for text in lines if text.startswith("| gcrd |"))
    assert f"| 5 | {gain:+.2f} ± {two_se:.2f} |" in line and line.endswith("| helps |")
    assert "**87.00 ± 1.41**" in lines[2]
    assert module.pooled_tables([r for r in rows if r["split_index"] == 0]) == []  # one split: nothing pooled
    sys.modules.pop("reproduce_abkd", None)


def test_latency_drift_separates_the_host_from_the_model(monkeypatch):
    # the host slows every model down together in round 2: each p50 moves 2x, their ratio does not
    import importlib
    import sys

    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    module = importlib.import_module("latency_drift")
    rounds = [{"at_s": 0, "p50_ms": {"a": 1.0, "b": 2.0}}, {"at_s": 4, "p50_ms": {"a": 2.0, "b": 4.1}},
              {"at_s": 8, "p50_ms": {"a": 1.0, "b": 2.1}}]
    report = {"dataset": "cora", "seconds": 10, "interval": 4, "architectures": ["a", "b"], "rounds": rounds,
              "date": "2026-12-01T10:00:00", "machine": {"cpu": "cpu", "cores": 2},
              "protocol": {"name": "request", "batch": 1, "warmup": 10, "repeats": 50, "threads": 1}}
    text = module.render(report)
    assert "| a | 1.000 / 1.000 / 2.000 | 2.00 | 67% | (reference) | - |" in text
    assert "| b | 2.000 / 2.100 / 4.100 | 2.05 | 67% | 2.00 / 2.05 / 2.10 | 100% |" in text
    committed = module.render(__import__("json").loads((ROOT / "bench" / "results" / "latency_drift.json").read_text()))
    assert committed in (ROOT / "docs" / "benchmarks.md").read_text(), \
        "docs/benchmarks.md is stale: run `python bench/latency_drift.py --render`"
    sys.modules.pop("latency_drift", None)


def test_propagation_growth_is_taken_per_round(monkeypatch):
    # round 2 runs on a host twice as slow: per-round growth stays 4x, a ratio of medians would not
    import importlib
    import json
    import sys

    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    module = importlib.import_module("propagation_growth")
    order = {"order": "random", "nodes": {"0.25": 10, "1.0": 40}, "edges": {"0.25": 100, "1.0": 400},
             "step_ms": {"gcn-2L-64": {"0.25": [10.0, 20.0, 10.0], "1.0": [40.0, 80.0, 44.0]}}}
    report = {"date": "2026-12-01T10:00:00", "machine": {"cpu": "cpu", "cores": 2}, "rounds": 3,
              "scales": [0.25, 1.0], "orders": [order]}
    text = module.render(report)
    assert "| random | gcn-2L-64 | 10 / 44 | 4.00x | 4.00x (4.00-4.40) | met |" in text
    assert "- 1 of 1 (order, family) pairs grow no faster than the edges" in text
    committed = module.render(json.loads((ROOT / "bench" / "results" / "propagation_growth.json").read_text()))
    assert committed in (ROOT / "docs" / "benchmarks.md").read_text(), \
        "docs/benchmarks.md is stale: run `python bench/propagation_growth.py --render`"
    sys.modules.pop("propagation_growth", None)
    sys.modules.pop("propagation", None)


def test_rung_fidelity_replays_the_decisions_of_rays_asha(monkeypatch):
    # bench/rung_fidelity.py replays ASHA on recorded curves: its decisions must be the ones the
    # search's scheduler (Ray's ASHAScheduler per latency bracket) takes on the same reports
    import importlib
    import json
    import random
    import sys

    from ray.tune.experiment import Trial
    from ray.tune.schedulers import TrialScheduler

    from gkd_search.asha import make_scheduler
    from gkd_search.pruning import PRUNE_METRIC, TIME_ATTR, AshaSettings
    from gkd_search.types import architecture_key

    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    module = importlib.import_module("rung_fidelity")
    rng = random.Random(0)
    shapes = {0: ("gcn", 2, 64), 2: ("mlp", 1, 0)}
    trials = []
    for index in range(80):
        bracket = rng.choice(sorted(shapes))
        length = rng.choice([8, 10, 25, 30, 60, 120, 200])  # some stop (patience) before or at a rung
        scores = sorted(rng.random() for _ in range(length))  # the best score so far never falls
        trials.append({"bracket": bracket, "curve": scores, "index": index})
    settings = AshaSettings(grace_period=10)
    replayed = module.simulate(trials, lambda bracket: settings.rungs(200), settings.reduction_factor)

    keys = {b: architecture_key(f, layers, hidden, {}) for b, (f, layers, hidden) in shapes.items()}
    scheduler = make_scheduler("asha", {keys[b]: b for b in keys}, 200, settings)
    decided = []
    for t in trials:
        family, layers, hidden = shapes[t["bracket"]]
        spec = {"family": family, "num_layers": layers, "hidden_channels": hidden, "family_params": {}}
        trial = Trial("trainable", config={"gkd_spec": spec}, stub=True)
        scheduler.on_trial_add(None, trial)
        stop_at = None
        for rung in settings.rungs(200):
            if rung > len(t["curve"]):
                break
            report = {"gkd_status": "running", TIME_ATTR: rung, PRUNE_METRIC: t["curve"][rung - 1]}
            if scheduler.on_trial_result(None, trial, report) == TrialScheduler.STOP:
                stop_at = rung
                break
        decided.append(stop_at)
        scheduler.on_trial_complete(None, trial, {})
    assert replayed == decided
    assert any(s is not None for s in decided) and any(s is None for s in decided)
    assert module._spearman([1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0, 9.0]) == 1.0
    assert module._spearman([1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0]) == -1.0
    committed = module.render(json.loads((ROOT / "bench" / "results" / "rung_fidelity.json").read_text()))
    assert committed in (ROOT / "docs" / "benchmarks.md").read_text(), \
        "docs/benchmarks.md is stale: run `python bench/rung_fidelity.py --render`"
    sys.modules.pop("rung_fidelity", None)
