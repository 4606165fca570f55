"""Every bad input the CLI promises to reject: one line on stderr, exit code 2, no traceback,
no MLflow run and no teacher trained."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gkd_search.cli import EXIT_USAGE, main

SHARED_DATA = Path(os.environ.get("GKD_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """A working folder whose MLflow store and cache are private to the test."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GKD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("GKD_DATA", str(SHARED_DATA))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


def run_cli(args, capsys):
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_clean_failure(code, out, err, *fragments, sandbox: Path):
    assert code == EXIT_USAGE
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("gkd-search: error: ")
    assert "Traceback" not in err + out
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert_nothing_written(sandbox)


def assert_nothing_written(sandbox: Path):
    """No MLflow run anywhere, and no teacher was trained."""
    db = sandbox / "mlruns" / "mlflow.db"
    if db.exists():
        from mlflow.tracking import MlflowClient

        client = MlflowClient(f"sqlite:///{db}")
        experiments = [e.experiment_id for e in client.search_experiments()]
        assert client.search_runs(experiments) == []
    assert not (sandbox / "cache" / "teachers").exists()


def test_unknown_dataset_lists_known(sandbox, capsys):
    code, out, err = run_cli(["--dataset", "citeseerx"], capsys)
    assert_clean_failure(code, out, err, "unknown dataset 'citeseerx'", "cora", "pubmed", "photo", sandbox=sandbox)


def test_unknown_family_lists_known(sandbox, capsys):
    code, out, err = run_cli(["--families", "gcn,transformer"], capsys)
    assert_clean_failure(code, out, err, "unknown family 'transformer'", "gat", "mlp", "sage", sandbox=sandbox)


def test_unknown_method_lists_known(sandbox, capsys):
    code, out, err = run_cli(["--methods", "softkd,magic"], capsys)
    assert_clean_failure(code, out, err, "unknown method 'magic'", "glnn", "none", "softkd", sandbox=sandbox)


def test_unknown_teacher_family(sandbox, capsys):
    code, out, err = run_cli(["--teacher", "transformer:2:64"], capsys)
    assert_clean_failure(code, out, err, "unknown family 'transformer'", sandbox=sandbox)


@pytest.mark.parametrize("budget", ["0", "-5", "inf", "nan"])
def test_budget_must_be_positive(sandbox, capsys, budget):
    code, out, err = run_cli([f"--budget-ms={budget}"], capsys)
    assert_clean_failure(code, out, err, "--budget-ms must be a positive", sandbox=sandbox)


def test_budget_not_a_number(sandbox, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--budget-ms", "ten"])
    err = capsys.readouterr().err
    assert exc.value.code == EXIT_USAGE
    assert err.count("\n") == 1 and "invalid float value: 'ten'" in err


@pytest.mark.parametrize("trials", ["0", "-1"])
def test_trials_at_least_one(sandbox, capsys, trials):
    code, out, err = run_cli([f"--trials={trials}"], capsys)
    assert_clean_failure(code, out, err, "--trials must be at least 1", sandbox=sandbox)


@pytest.mark.parametrize("grace", ["0", "-2"])
def test_asha_grace_epochs_at_least_one(sandbox, capsys, grace):
    code, out, err = run_cli([f"--asha-grace-epochs={grace}"], capsys)
    assert_clean_failure(code, out, err, f"--asha-grace-epochs {grace} is not a number of epochs",
                         "at least 1", sandbox=sandbox)


@pytest.mark.parametrize(
    "content, fragments",
    [
        pytest.param("families:\n  gcn: {num_layers: [1, 2\n", ["not valid YAML"], id="malformed-yaml"),
        pytest.param(
            "families:\n  gcn: {num_layers: [2], hidden_channels: [16]}\nmethods:\n  softkd: {temperature: 2}\n",
            ["methods.softkd.temperature", "known: tau, alpha"], id="unknown-method-key",
        ),
        pytest.param("familes:\n  gcn: {num_layers: [2], hidden_channels: [16]}\n", ["unknown key 'familes'"],
                     id="unknown-top-level-key"),
        pytest.param(
            "families:\n  gcn: {num_layers: [2], hidden_channels: [16]}\nmethods:\n  none: {}\n"
            "start_with:\n  - {family: gcn, num_layers: 3, hidden_channels: 16, method: none}\n",
            ["start_with[0]: gcn-3L-16 is not an architecture of this space"], id="start-point-not-in-space",
        ),
    ],
)
def test_bad_space_file_names_file_and_key(sandbox, capsys, content, fragments):
    space = sandbox / "space.yaml"
    space.write_text(content)
    code, out, err = run_cli(["--space", str(space)], capsys)
    assert_clean_failure(code, out, err, str(space), *fragments, sandbox=sandbox)


def test_missing_space_file(sandbox, capsys):
    code, out, err = run_cli(["--space", "nope.yaml"], capsys)
    assert_clean_failure(code, out, err, "'nope.yaml' not found", "default", sandbox=sandbox)


def test_data_missing_says_which_files_where(sandbox, capsys):
    empty = sandbox / "empty-data"
    empty.mkdir()
    code, out, err = run_cli(["--data-root", str(empty)], capsys)
    assert_clean_failure(code, out, err, "ind.cora.x", str(empty / "Cora" / "raw"), "--data-root", sandbox=sandbox)
    assert not (sandbox / "mlruns").exists()


def test_unreachable_tracking_server_is_checked_before_training(sandbox, capsys):
    code, out, err = run_cli(["--tracking-uri", "http://127.0.0.1:9"], capsys)
    assert_clean_failure(code, out, err, "cannot reach the MLflow tracking server at http://127.0.0.1:9", sandbox=sandbox)
    assert not (sandbox / "mlruns").exists()


def test_unreachable_tracking_server_after_an_earlier_search_fails_at_once(sandbox, capsys):
    """With an earlier search in the cache, the check for a resumable twin queries the store;
    an unreachable server is named first instead of waiting out MLflow's HTTP retries."""
    (sandbox / "cache" / "searches").mkdir(parents=True)
    code, out, err = run_cli(["--tracking-uri", "http://127.0.0.1:9"], capsys)
    assert_clean_failure(code, out, err, "cannot reach the MLflow tracking server at http://127.0.0.1:9", sandbox=sandbox)


@pytest.mark.parametrize("seed", ["-1", str(2**32)])
def test_seed_out_of_range(sandbox, capsys, seed):
    code, out, err = run_cli(["--seed", seed], capsys)
    assert_clean_failure(code, out, err, "--seed must be between 0 and 2**32 - 1", f"got {seed}", sandbox=sandbox)


@pytest.mark.parametrize("args, fragment", [
    (["--cpus-per-trial", "nan"], "--cpus-per-trial must be > 0"),
    (["--gpus-per-trial", "inf"], "--gpus-per-trial >= 0"),
    (["--trial-timeout", "inf"], "--trial-timeout must be a positive number of seconds, got inf"),
    (["--families="], "--families names nothing"),
    (["--methods", ","], "--methods names nothing"),
    (["--experiment", " "], "--experiment must be a non-empty MLflow experiment name"),
])
def test_non_finite_numbers_and_empty_names_are_rejected(sandbox, capsys, args, fragment):
    code, out, err = run_cli(args, capsys)
    assert_clean_failure(code, out, err, fragment, sandbox=sandbox)


@pytest.mark.parametrize("option", ["--cache-dir", "--storage-path"])
def test_a_folder_that_cannot_be_created_is_named(sandbox, capsys, option):
    blocker = sandbox / "a-file"
    blocker.write_text("not a folder")
    code, out, err = run_cli([option, str(blocker / "cache")], capsys)
    assert_clean_failure(code, out, err, f"{option} '{blocker / 'cache'}' cannot be created", sandbox=sandbox)


def test_a_missing_graph_file_is_named_as_missing(sandbox, capsys):
    code, out, err = run_cli(["--dataset", "./mygraph.npz"], capsys)
    assert_clean_failure(code, out, err, "mygraph.npz: no such file", sandbox=sandbox)


def test_unusable_tracking_uri_scheme(sandbox, capsys):
    code, out, err = run_cli(["--tracking-uri", "ftp://example.invalid/store"], capsys)
    assert_clean_failure(code, out, err, "unsupported tracking URI", sandbox=sandbox)


def test_budget_below_every_architecture(sandbox, capsys, tmp_path):
    space = Path(__file__).parent / "spaces" / "tiny.yaml"
    args = ["--dataset", "synthetic:nodes=600,edges=3000,features=16,classes=3", "--space", str(space),
            "--budget-ms", "0.000001", "--teacher", "gcn:1:8:epochs=5"]
    code, out, err = run_cli(args, capsys)
    assert code == EXIT_USAGE
    assert "no architecture of the space meets --budget-ms 1e-06" in err and "the fastest" in err
    db = sandbox / "mlruns" / "mlflow.db"
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{db}")
    assert client.search_runs([e.experiment_id for e in client.search_experiments()]) == []


def test_console_script_exit_code_and_single_line(tmp_path):
    """The installed entry point, as a user runs it: exit status 2 and one line."""
    env = {**os.environ, "GKD_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "gkd_search", "--budget-ms", "-1"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "--budget-ms must be a positive number of milliseconds, got -1" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("args, fragment", [
    (["--fanout", "10,0"], "--fanout '10,0' is not a comma-separated list"),
    (["--fanout", "ten"], "--fanout 'ten'"),
    (["--batch-size", "0"], "--batch-size must be at least 1, got 0"),
    (["--max-full-batch-gb", "-1"], "--max-full-batch-gb must be positive"),
    (["--max-full-batch-gb", "nan"], "--max-full-batch-gb must be positive, got nan"),
    (["--inference-chunk", "0"], "--inference-chunk must be at least 1"),
    (["--dataset", "cora:normalize_features=maybe"], "normalize_features='maybe' is not true or false"),
    (["--dataset", "synthetic-hetero:papers=10"], "synthetic-hetero"),
    (["--dataset", "synthetic:nodes=lots"], "synthetic: nodes='lots' is not an integer"),
    (["--dataset", "synthetic:homophily=high"], "synthetic: homophily='high' is not a number"),
    (["--dataset", "synthetic:colour=red"],
     "synthetic: unknown option 'colour' (known: nodes, edges, features, classes, homophily, order)"),
    (["--dataset", "photo:scale=2"], "photo: unknown option 'scale' (known: none)"),
    (["--dataset", "cora:split=geom-gcn,split_index=12"], "cora: split_index=12 is out of range"),
    (["--dataset", "pubmed:split=geom-gcn,split_index=x"], "pubmed: split_index='x' is not an integer"),
    (["--dataset", "cora:split=full"], "cora: split='full' is not one of public, geom-gcn"),
])
def test_large_graph_options_are_checked(sandbox, capsys, args, fragment):
    code, out, err = run_cli(args, capsys)
    assert_clean_failure(code, out, err, fragment, sandbox=sandbox)
