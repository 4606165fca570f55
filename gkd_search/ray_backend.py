"""Ray Tune + Optuna: the trainable, the searcher and the driver-side callback.

Imported only when a search runs (Ray is a heavy import). The searcher is pickled into Ray's
experiment checkpoints, so everything here is module-level and holds no dataset.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import tempfile
import threading
import time
import uuid
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import optuna
import torch
from optuna.trial import TrialState
from ray import tune
from ray.tune.search.optuna import OptunaSearch

from .asha import make_scheduler
from .errors import PluginWarning
from .pruning import PRUNE_METRIC, TIME_ATTR, AshaSettings, RungReporter, latency_bracket
from .pruning import max_epochs as space_max_epochs
from .space import Architecture, SearchSpace, suggest_spec
from .trial import TrialContext, run_trial
from .types import DistillationMethod, ModelFamily, TrialResult, TrialSpec

METRICS = ["val_score", "latency_ms_p50"]
MODES = ["max", "min"]


def init_ray(config) -> bool:
    """Start Ray in-process bound to 127.0.0.1, or join ``--ray-address``; True if we started it."""
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    import ray

    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = dict(include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    if config.ray_address:
        ray.init(address=config.ray_address, **kwargs)
    else:
        gpus = torch.cuda.device_count() if config.device.startswith("cuda") else 0
        ray.init(num_cpus=os.cpu_count() or 1, num_gpus=gpus, _node_ip_address="127.0.0.1", **kwargs)
    return True


class DefineByRunSpace:
    """The define-by-run function Ray's OptunaSearch calls: samples one :class:`TrialSpec`."""

    def __init__(self, space: SearchSpace, feasible: Sequence[Architecture], families: Mapping[str, ModelFamily],
                 methods: Mapping[str, DistillationMethod], seed: int) -> None:
        self.space, self.feasible, self.families, self.methods, self.seed = space, list(feasible), dict(families), dict(methods), seed

    def __call__(self, trial) -> dict:
        spec = suggest_spec(trial, self.space, self.feasible, self.families, self.methods, self.seed)
        return {"gkd_spec": asdict(spec)}


class GkdOptunaSearch(OptunaSearch):
    """Tells Optuna FAIL for failed trials and PRUNED for over-budget ones and for trials the
    scheduler stopped (their last result is an intermediate one, ``gkd_status=running``), rather
    than passing it missing or partial objective values."""

    def on_trial_complete(self, trial_id: str, result: Optional[dict] = None, error: bool = False) -> None:
        status = (result or {}).get("gkd_status")
        if status in ("failed", "over_budget", "running") and trial_id not in self._completed_trials:
            state = TrialState.FAIL if status == "failed" else TrialState.PRUNED
            self._ot_study.tell(self._ot_trials[trial_id], state=state)
            self._completed_trials.add(trial_id)
            return
        super().on_trial_complete(trial_id, result, error)


def make_searcher(prepared) -> GkdOptunaSearch:
    """Optuna's TPE sampler, seeded, multi-objective (validation score up, latency down)."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    trials = prepared.config.trials
    sampler = optuna.samplers.TPESampler(seed=prepared.config.seed, n_startup_trials=min(10, max(2, trials // 3)))
    space = DefineByRunSpace(prepared.space, prepared.feasible, prepared.registry.families,
                             prepared.registry.methods, prepared.config.seed)
    return GkdOptunaSearch(space=space, metric=METRICS, mode=MODES, sampler=sampler)


def trainable(config: dict, context: TrialContext, rungs: Sequence[int] = ()) -> None:
    """The Ray Tune function trainable: one :func:`run_trial`, reporting its best validation
    score at the scheduler's ``rungs`` (:mod:`gkd_search.pruning`), then its result (with the
    student as a Ray checkpoint, so it reaches the driver from any node of a cluster)."""
    started = time.perf_counter()
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    spec = TrialSpec(**config["gkd_spec"])
    trial_id = tune.get_context().get_trial_id() or uuid.uuid4().hex[:8]
    workdir = Path(tempfile.mkdtemp(prefix="gkd-trial-"))
    measured = context.latency.get(spec.architecture_key())
    nan = float("nan")

    def so_far() -> dict[str, Any]:
        return {"latency_ms_p50": measured.p50_ms if measured is not None else nan,
                "gkd_seconds": time.perf_counter() - started}

    try:
        on_epoch = RungReporter(list(rungs), tune.report, so_far) if rungs else None
        result = run_trial(spec, context, trial_id, save_dir=workdir, on_epoch=on_epoch)
        result.trial_seconds = time.perf_counter() - started
        payload = asdict(result)
        payload.pop("checkpoint", None)
        # Ray Tune stops the whole experiment on a result without the objectives, so a failed or
        # over-budget trial reports NaN; GkdOptunaSearch tells Optuna FAIL/PRUNED for it instead.
        metrics: dict[str, Any] = {
            "gkd_status": result.status,
            "gkd_result": json.dumps(payload),
            "val_score": result.val_score if result.status == "ok" else nan,
            "latency_ms_p50": result.latency_ms_p50 if result.latency_ms_p50 is not None else nan,
            TIME_ATTR: result.epochs_run or 0,
            PRUNE_METRIC: result.val_score if result.status == "ok" else nan,
        }
        if result.status == "ok":
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(workdir)))
        else:
            tune.report(metrics)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _result_from_json(text: str) -> TrialResult:
    payload = json.loads(text)
    payload["spec"] = TrialSpec(**payload["spec"])
    return TrialResult(**payload)


class ReportToDriver(tune.Callback):
    """Runs in the driver: turns each finished (or crashed) Ray trial into a :class:`TrialResult`."""

    def __init__(self, record: Callable[[TrialResult], None]) -> None:
        self.record = record

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        last = trial.last_result or {}
        if last.get("gkd_status") == "running":  # stopped by the scheduler at a rung
            self.record(pruned_result(trial.trial_id, TrialSpec(**trial.config["gkd_spec"]), last))
            return
        if "gkd_result" not in last:
            self.on_trial_error(iteration, trials, trial, **info)
            return
        result = _result_from_json(last["gkd_result"])
        if result.status == "ok" and trial.checkpoint is not None:
            result.checkpoint = trial.checkpoint.path
        self.record(result)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        spec = TrialSpec(**trial.config["gkd_spec"])
        message = (getattr(trial, "error_message", None) or "the trial's Ray worker raised").strip()
        self.record(TrialResult(trial_id=trial.trial_id, spec=spec, status="failed",
                                error=message.splitlines()[-1][:2000]))


def pruned_result(trial_id: str, spec: TrialSpec, last: dict) -> TrialResult:
    """A trial the scheduler stopped, from its last (rung) report: where it stopped
    (``epochs_run``), its best validation score then (``last_val_score``)."""
    def number(key: str) -> Optional[float]:
        value = last.get(key)
        return None if value is None or value != value else float(value)

    return TrialResult(trial_id=trial_id, spec=spec, status="pruned", latency_ms_p50=number("latency_ms_p50"),
                       last_val_score=number("val_score"), epochs_run=int(last.get(TIME_ATTR) or 0),
                       trial_seconds=number("gkd_seconds"), latency_complete=True)


def run_tune(prepared, record: Callable[[TrialResult], None], *, max_concurrent: int, experiment_dir: Path) -> None:
    """Run ``config.trials`` trials through Ray Tune; ``record`` sees each as it finishes.

    With ``--pruner asha`` trials report at the rungs of :func:`gkd_search.asha.make_scheduler`,
    which stops hopeless ones. Ray keeps its experiment state and every trial's checkpoint (the
    trained student) under ``experiment_dir``; the caller removes it once the selected student
    is logged.
    """
    config = prepared.config
    max_epochs = space_max_epochs(prepared.space.training["epochs"])
    brackets = {a.key: latency_bracket(prepared.latency[a.key].p50_ms, config.budget_ms) for a in prepared.feasible}
    scheduler = make_scheduler(config.pruner, brackets, max_epochs)
    rungs = AshaSettings().rungs(max_epochs) if scheduler is not None else []
    runnable = tune.with_resources(
        tune.with_parameters(trainable, context=prepared.context(), rungs=rungs),
        {"cpu": config.cpus_per_trial, "gpu": config.gpus_per_trial},
    )
    tuner = tune.Tuner(
        runnable,
        tune_config=tune.TuneConfig(search_alg=make_searcher(prepared), num_samples=config.trials,
                                    max_concurrent_trials=max_concurrent, reuse_actors=True, scheduler=scheduler),
        run_config=tune.RunConfig(name=experiment_dir.name, storage_path=str(experiment_dir.parent), verbose=0,
                                  callbacks=[ReportToDriver(record)],
                                  failure_config=tune.FailureConfig(max_failures=0)),
    )
    with warnings.catch_warnings(), _interrupt_always_propagates():
        warnings.simplefilter("ignore")
        warnings.filterwarnings("always", category=PluginWarning)  # an observer hook that raised
        tuner.fit()


@contextlib.contextmanager
def _interrupt_always_propagates():
    """Ctrl-C raises ``KeyboardInterrupt`` after ``tuner.fit()`` even when it lands inside a Tune
    callback (our MLflow logging), where Tune would swallow it and end the experiment as if it
    had finished: the search must then be marked KILLED, not selected and saved."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    interrupted = threading.Event()
    previous = signal.getsignal(signal.SIGINT)

    def on_sigint(signum, frame):
        interrupted.set()
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if interrupted.is_set():
        raise KeyboardInterrupt
