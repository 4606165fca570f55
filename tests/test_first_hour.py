"""What got in a new user's way in the first hour (issue 15, "Seen while running"), one test each:
live progress on a terminal, the teacher that fits the budget, students bigger than the teacher,
collapsed trials, names that need a decoder, defaults shown twice in --help, a read that created a
store, nothing public to load a dataset, a stray print in the quiet test output."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest
import torch

import gkd_search
from gkd_search.cli import ConsoleReporter, build_parser, print_summary
from gkd_search.errors import TrackingError
from gkd_search.pareto import degenerate_reason
from gkd_search.types import SearchSummary, TeacherOutputs, TrialResult, TrialSpec, architecture_key

ROOT = Path(__file__).resolve().parents[1]


def run_in_terminal(command: list[str], env: dict, cwd: Path, columns: int = 140) -> tuple[int, str]:
    """Run ``command`` with a pseudo-terminal (``columns`` wide) as stdin, stdout and stderr."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    proc = subprocess.Popen(command, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd, close_fds=True)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    return proc.wait(timeout=600), b"".join(chunks).decode(errors="replace").replace("\r", "\n")


@pytest.mark.slow
def test_a_search_on_a_terminal_shows_live_progress_of_every_long_phase(tmp_path):
    command = [sys.executable, "-m", "gkd_search", "--dataset", "synthetic:nodes=600,edges=3000,features=16,classes=3",
               "--teacher", "gcn:2:16:epochs=40:patience=40", "--trials", "2", "--epochs", "8", "--budget-ms", "50",
               "--families", "gcn,mlp", "--methods", "none", "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db",
               "--cache-dir", str(tmp_path / "cache")]
    code, text = run_in_terminal(command, {**os.environ, "PYTHONUNBUFFERED": "1"}, tmp_path)
    assert code == 0, text[-3000:]
    assert re.search(r"dataset synthetic:\S+: loading", text)
    assert re.search(r"teacher gcn:2:16:epochs=40:patience=40: +\d+%\|.*\| \d+/40 .*val accuracy=0\.\d+", text)
    assert re.search(r"latency table: +\d+%\|.*architecture.*last=", text)
    assert re.search(r"trials: +\d+%\|.*\d/2", text)
    # the teacher is tiny and fast: the tool says so, and leaves out students bigger than it
    assert "note: the teacher itself answers within the budget" in text
    assert "architectures with at least as many parameters as the teacher (323) left out" in text
    assert "gcn-2L-128" not in text.split("left out")[1].split("Pareto front")[1]
    # --quiet: no bars, only the final table
    code, quiet = run_in_terminal(command + ["--quiet"], {**os.environ, "PYTHONUNBUFFERED": "1"}, tmp_path)
    assert code == 0 and "%|" not in quiet and "Pareto front" in quiet


def test_no_live_progress_when_quiet_or_not_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    assert ConsoleReporter(stream=Terminal()).live
    assert not ConsoleReporter(stream=Terminal(), quiet=True).live
    assert not ConsoleReporter(stream=io.StringIO()).live
    with ConsoleReporter(stream=io.StringIO()).progress("teacher", total=10) as bar:
        bar.update(1, val=0.5)  # the silent default


def _result(trial_id, family, layers, hidden, method, val, params, p50=0.5, selected=False, degenerate=None):
    spec = TrialSpec(family, layers, hidden, method=method)
    return TrialResult(trial_id, spec, "ok", latency_ms_p50=p50, latency_ms_p95=p50, params=params, val_acc=val,
                       test_acc=val, val_score=val, test_score=val, pareto=True, selected=selected,
                       run_id=f"run-{trial_id}", degenerate=degenerate)


def _summary(results, selected, teacher_val=0.80, teacher_p50=0.8, budget=10.0):
    teacher = TeacherOutputs(logits=None, hidden=[], spec="gcn:2:256", num_params=131_000, val_acc=teacher_val,
                             test_acc=teacher_val, val_score=teacher_val, test_score=teacher_val)
    return SearchSummary(dataset="pubmed", budget_ms=budget, teacher=teacher, results=results, pareto=results,
                         selected=selected, parent_run_id="p", tracking_uri="sqlite:///x.db", best=selected,
                         teacher_latency_ms_p50=teacher_p50)


def printed(summary) -> str:
    stream = io.StringIO()
    print_summary(summary, ConsoleReporter(stream=stream))
    return stream.getvalue()


def test_the_table_says_when_the_teacher_fits_the_budget_and_scores_higher():
    student = _result("s", "gcn", 2, 16, "softkd", 0.78, 8_000, selected=True)
    text = printed(_summary([student], student, teacher_val=0.80, teacher_p50=0.8))
    assert "note: the teacher fits the budget too (p50 0.80 ms) and scores higher on validation (0.800 > 0.780)" in text
    assert "note: the teacher" not in printed(_summary([student], student, teacher_val=0.80, teacher_p50=12.0))


def test_a_student_not_smaller_than_the_teacher_is_flagged_and_spaces_leave_them_out(gkd_registry):
    big = _result("big", "mlp", 3, 512, "none", 0.79, 520_707, p50=0.2)
    small = _result("small", "gcn", 2, 16, "none", 0.80, 8_000, selected=True)
    text = printed(_summary([big, small], small))
    assert re.search(r"mlp-3L-512 .* 0\.3x .*! not smaller than the teacher", text)
    row = next(line for line in text.splitlines() if "gcn-2L-16" in line and "16.4x" in line)
    assert "not smaller" not in row
    from gkd_search.space import load_space

    for name in ("default", "mlp-students", "deep-gcnii"):
        assert load_space(name, gkd_registry.families, gkd_registry.methods).smaller_than_teacher


def test_collapsed_trials_are_told_apart():
    none = _result("n", "sage", 1, 0, "none", 0.87, 6_000)
    lsp = _result("l", "sage", 1, 0, "lsp", 0.147, 6_000)
    ok = _result("o", "sage", 1, 0, "softkd", 0.80, 6_000)
    mlp = _result("m", "mlp", 1, 0, "lsp", 0.120, 10_000)
    results = [none, lsp, ok, mlp]
    assert "below the chance level 0.144" in degenerate_reason(mlp, results, chance=0.144)
    assert "0.723 below sage-1L without distillation (0.870)" in degenerate_reason(lsp, results, chance=0.1)
    assert degenerate_reason(ok, results, chance=0.144) is None and degenerate_reason(none, results, 0.144) is None
    lsp.degenerate = degenerate_reason(lsp, results, 0.1)
    text = printed(_summary(results, ok))
    assert "1 of 4 trials collapsed" in text and "sage-1L lsp" in text


def test_collapsed_trials_are_tagged_in_mlflow(tmp_path):
    from mlflow.tracking import MlflowClient

    from gkd_search.tracking import SearchTracker

    tracker = SearchTracker(f"sqlite:///{tmp_path}/mlflow.db")
    teacher = TeacherOutputs(logits=None, hidden=[], spec="gcn:2:16", num_params=300, val_acc=0.9, test_acc=0.9)
    tracker.start("search", {"dataset": "x"}, teacher)
    bad = _result("bad", "mlp", 1, 0, "lsp", 0.12, 51, degenerate="val 0.120 below the chance level 0.144")
    late = _result("late", "mlp", 1, 0, "gsp", 0.5, 51)
    tracker.log_trial(bad, teacher, "trial-001")
    tracker.log_trial(late, teacher, "trial-002")
    late.degenerate = "val 0.500, 0.300 below mlp-1L without distillation (0.800)"
    tracker.mark_degenerate(late)
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    for result in (bad, late):
        tags = client.get_run(result.run_id).data.tags
        assert tags["gkd.degenerate"] == "true" and tags["gkd.degenerate_reason"] == result.degenerate


def test_chance_levels():
    from gkd_search.metrics import resolve_metric

    y = torch.tensor([0, 0, 0, 1, 2, 2, 0, 1])
    mask = torch.ones(8, dtype=torch.bool)
    assert resolve_metric("accuracy").chance_level(y, mask) == pytest.approx(0.5)
    assert resolve_metric("macro-f1").chance_level(y, mask) == pytest.approx((2 * 0.5 / 1.5) / 3)
    assert resolve_metric("roc-auc").chance_level(y, mask) == 0.5


def test_architecture_names_read_without_a_decoder():
    assert architecture_key("gcn", 1, 0, {}) == "gcn-1L"
    assert architecture_key("mlp", 2, 256, {}) == "mlp-2L-256"
    assert architecture_key("gat", 2, 64, {"heads": 4}) == "gat-2L-64-heads=4"
    assert architecture_key("sgc", 3, 0, {}) == "sgc-3L"


def test_help_shows_each_default_once():
    text = build_parser().format_help()
    assert "(default: None)" not in text
    blocks = re.split(r"\n  (?=-)", text)
    for block in blocks:
        assert block.count("(default") <= 1, block


def test_a_read_never_creates_a_store(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(TrackingError, match="no MLflow store at sqlite:///mlruns/mlflow.db"):
        gkd_search.load_student("0123456789abcdef0123456789abcdef")
    with pytest.raises(TrackingError, match="no MLflow store"):
        gkd_search.load_student("models:/gkd-cora/1")
    assert not (tmp_path / "mlruns").exists()


def test_load_dataset_gives_the_graph_a_search_runs_on(tmp_path):
    from conftest import SHARED_DATA

    dataset = gkd_search.load_dataset("cora", data_root=SHARED_DATA, cache_dir=tmp_path)
    assert dataset.name == "cora" and tuple(dataset.data.x.shape) == (2708, 1433)
    synthetic = gkd_search.load_dataset("synthetic:nodes=600,edges=3000", seed=1, cache_dir=tmp_path)
    assert synthetic.num_nodes == 600
    assert "gkd_search.load_dataset(" in (ROOT / "README.md").read_text()


def test_no_test_prints_past_pytest_s_capture():
    """``capsys.disabled()`` prints into the quiet output (the stray ``[infgrand scaling]`` line)."""
    offenders = [p.name for p in (ROOT / "tests").glob("test_*.py") if "capsys.disabled(" in p.read_text()
                 and p.name != Path(__file__).name]
    assert not offenders
