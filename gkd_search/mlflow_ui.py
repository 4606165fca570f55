"""What makes the MLflow UI (MLflow 3) the comparison tool: the experiment's kind, a shared view of
the trials, the search run's Markdown description, and the URL that opens it all.

MLflow 3 opens an experiment on its GenAI pages unless the "Model training" workflow is chosen:
by the browser's last choice, or by ``?workflowType=machine_learning`` in the URL. Its runs table
shows a search as one collapsed parent row with a few attribute columns; child runs and metric
columns appear only after expanding the row and picking columns. What MLflow lets a tool do:

* the experiment tag ``mlflow.experimentKind=custom_model_development`` (the experiment is model
  training, for MLflow versions that read it);
* a *shared view* (experiment tag ``mlflow.sharedViewState.<key>``, a JSON of search facets and
  table state that ``?viewStateShareKey=<key>`` applies): ours filters the runs to the trials (so
  they are listed flat, not under their parent), sorts them by validation score and shows the
  columns that compare them (selected, status, method, scores, p50, parameters, compression,
  speed-up);
* the run description (tag ``mlflow.note.content``, Markdown), which the run page shows first.

:func:`trials_url` is the link the CLI prints.
"""

from __future__ import annotations

import json
from typing import Optional

from .types import SearchSummary, TrialResult

EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
VIEW_KEY = "gkd-trials"
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_KEY}"
NOTE_TAG = "mlflow.note.content"

#: the trials view's columns, in order
TRIAL_COLUMNS = (
    "tags.`gkd.selected`", "tags.`gkd.status`", "tags.`gkd.degenerate`", "params.`family`", "params.`method`",
    "metrics.`val_score`", "metrics.`test_score`", "metrics.`val_acc`", "metrics.`test_acc`",
    "metrics.`latency_ms_p50`", "metrics.`params`", "metrics.`compression_ratio`", "metrics.`speedup`",
    "attributes.`Dataset`",
)


def trials_view() -> str:
    """The shared view's JSON: the trials of every search, best validation score first."""
    return json.dumps({
        "searchFilter": "tags.`gkd.role` = 'trial'",
        "orderByKey": "metrics.`val_score`",
        "orderByAsc": False,
        "selectedColumns": list(TRIAL_COLUMNS),
        "columnOrder": list(TRIAL_COLUMNS),
    })


def trials_url(server: str, experiment_id: str) -> str:
    """The runs page of ``experiment_id`` on ``server`` in the Model-training workflow, with the
    trials view applied."""
    return (f"{server.rstrip('/')}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"
            f"&viewStateShareKey={VIEW_KEY}")


def run_url(server: str, experiment_id: str, run_id: str) -> str:
    return f"{server.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}?workflowType=machine_learning"


def _row(r: TrialResult, teacher_params: int, teacher_p50: Optional[float], mark: str) -> str:
    val = r.val_score if r.val_score is not None else r.val_acc
    test = r.test_score if r.test_score is not None else r.test_acc
    speedup = f"{teacher_p50 / r.latency_ms_p50:.1f}x" if teacher_p50 and r.latency_ms_p50 else "-"
    return (f"| {mark} | {r.spec.architecture_key()} | {r.spec.method} | {val:.3f} | {test:.3f} | "
            f"{r.latency_ms_p50:.2f} | {r.params:,} | {teacher_params / r.params:.1f}x | {speedup} |")


def search_description(summary: SearchSummary, experiment_id: str) -> str:
    """The search run's description (Markdown): the selected student and how it was chosen, the
    best-scoring trial, the teacher, the registered model, the Pareto front, and where to compare."""
    t = summary.teacher
    t_p50 = summary.teacher_latency_ms_p50
    metric = summary.metric
    lines = [f"## gkd-search on `{summary.dataset}`, budget {summary.budget_ms:g} ms", ""]
    s = summary.selected
    if s is None:
        lines.append(f"No trial finished within {summary.budget_ms:g} ms: nothing was selected.")
    else:
        rule = ("the fewest parameters among trials within one standard error "
                f"({summary.tolerance:.3f}) of the best val {metric}" if summary.select == "one-se"
                else f"the best val {metric}")
        speedup = f", {t_p50 / s.latency_ms_p50:.1f}x faster" if t_p50 else ""
        lines += [
            f"**Selected student**: [{s.spec.architecture_key()} {s.spec.method}](#/experiments/{experiment_id}/runs/"
            f"{s.run_id}) (`--select {summary.select}`: {rule}): val {metric} {s.val_score:.3f}, test "
            f"{s.test_score:.3f}, p50 {s.latency_ms_p50:.2f} ms, {s.params:,} parameters, "
            f"{t.num_params / s.params:.1f}x smaller{speedup} than the teacher.", ""]
        b = summary.best
        if b is not None and b is not s:
            lines += [f"**Best-scoring trial**: [{b.spec.architecture_key()} {b.spec.method}](#/experiments/"
                      f"{experiment_id}/runs/{b.run_id}): val {b.val_score:.3f}, test {b.test_score:.3f}, "
                      f"{b.params:,} parameters.", ""]
        if summary.model_uri:
            lines += [f"**Model**: `{summary.model_uri}`; serve it with `mlflow models serve -m {summary.model_uri} "
                      "--env-manager local`.", ""]
    t_val = t.val_score if t.val_score is not None else t.val_acc
    t_test = t.test_score if t.test_score is not None else t.test_acc
    teacher_p50 = f", p50 {t_p50:.2f} ms" if t_p50 is not None else ""
    lines += [f"**Teacher** `{t.spec}`: val {t_val:.3f}, test {t_test:.3f}{teacher_p50}, {t.num_params:,} "
              "parameters.", "",
              f"### Pareto front ({len(summary.pareto)} of {len(summary.results)} trials; val {metric} up, "
              "p50 down, parameters down)", "",
              "| | student | method | val | test | p50 ms | parameters | smaller | faster |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(summary.pareto, key=lambda r: r.latency_ms_p50):
        mark = "selected" if r.selected else ("best" if r is summary.best else "")
        lines.append(_row(r, t.num_params, t_p50, mark))
    collapsed = sum(1 for r in summary.results if r.degenerate)
    lines += ["", f"{len(summary.results)} trials, {collapsed} collapsed (tag `gkd.degenerate`). Compare every trial: "
              f"[the trials view](#/experiments/{experiment_id}/runs?workflowType=machine_learning&viewStateShareKey="
              f"{VIEW_KEY}); `pareto.png` and `trials.csv` are among this run's artifacts."]
    return "\n".join(lines)
