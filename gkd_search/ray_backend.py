"""Ray Tune + Optuna: the trainable, the searcher and the driver-side callback.

Imported only when a search runs (Ray is a heavy import). The searcher is pickled into Ray's
experiment checkpoints, so everything here is module-level and holds no dataset.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
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

from .allocator import keep_freed_memory
from .asha import make_scheduler
from .distill.guard import REASONS as GUARD_REASONS
from .errors import PluginWarning
from .pruning import PRUNE_METRIC, TIME_ATTR, AshaSettings, RungReporter, latency_bracket
from .pruning import max_epochs as space_max_epochs
from .space import Architecture, SearchSpace, suggest_spec
from .trial import TrialContext, run_trial
from .types import DistillationMethod, ModelFamily, TrialResult, TrialSpec

METRICS = ["val_score", "latency_ms_p50"]
MODES = ["max", "min"]


#: Ray restarts a trial once when its worker process dies (killed, out of memory); an exception
#: inside a trial never reaches Ray (the trial reports ``failed``), so it is never retried
MAX_FAILURES = 1
#: Ray's errors for a worker process that died rather than a trial that raised
WORKER_DIED = ("RayActorError", "ActorDiedError", "WorkerCrashedError", "ActorUnavailableError", "OutOfMemoryError",
               "NodeDiedError", "ObjectLostError")


def init_ray(config) -> bool:
    """Start Ray in-process on 127.0.0.1, or join ``--ray-address``; True if we started it
    (:func:`gkd_search.cluster.start_or_join`)."""
    from .cluster import start_or_join

    return start_or_join(config.ray_address, config.device)


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
    training guard stopped (``diverged``, ``degenerate``) or the scheduler stopped (their last
    result is an intermediate one, ``gkd_status=running``), rather than passing it missing or
    partial objective values. TPE ignores FAIL trials but ranks PRUNED ones with its worse group, so a
    stopped trial steers the sampler away from its region; a crash says nothing about it. Notes
    on each Optuna trial its Ray trial id and spec (user attributes ``ray_trial_id``,
    ``gkd_spec``), which ``--resume`` matches with the journal."""

    def suggest(self, trial_id: str) -> Optional[dict]:
        config = super().suggest(trial_id)
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is not None and config is not None:
            ot_trial.set_user_attr("ray_trial_id", trial_id)
            ot_trial.set_user_attr("gkd_spec", json.dumps(config.get("gkd_spec")))
            rerun_of = ot_trial.user_attrs.get("rerun_of")  # enqueued by settle_study
            if rerun_of:
                config["gkd_rerun_of"] = rerun_of
            if ot_trial.user_attrs.get("start_point"):  # enqueued by start_with: never pruned (asha.py)
                config["gkd_start_point"] = True
        return config

    def start_with(self, points: Sequence[Mapping[str, Any]]) -> int:
        """Enqueue the space's start points (:mod:`gkd_search.start_points`) as the study's first
        trials, unless the study already has trials (a resumed search ran them); returns how many."""
        if not points or self._ot_study.get_trials(deepcopy=False):
            return 0
        for params in points:
            self._ot_study.enqueue_trial(dict(params), user_attrs={"start_point": True}, skip_if_exists=True)
        return len(points)

    def on_trial_complete(self, trial_id: str, result: Optional[dict] = None, error: bool = False) -> None:
        status = (result or {}).get("gkd_status")
        if status in ("failed", "over_budget", "running") and trial_id not in self._completed_trials:
            stopped = (result or {}).get("gkd_error") in GUARD_REASONS
            state = TrialState.FAIL if status == "failed" and not stopped else TrialState.PRUNED
            self._ot_study.tell(self._ot_trials[trial_id], state=state)
            self._completed_trials.add(trial_id)
            return
        super().on_trial_complete(trial_id, result, error)


STUDY_NAME = "gkd-search"


def make_searcher(prepared, storage: Optional[str] = None, sampler_seed: Optional[int] = None) -> GkdOptunaSearch:
    """Optuna's TPE sampler, seeded, multi-objective (validation score up, latency down);
    ``storage`` (an RDB URL, the search's ``study.db``) keeps the sampler's history on disk for
    ``--resume``, which reseeds the sampler (``sampler_seed``) so that it does not draw the
    start-up trials it drew before the interruption again."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    trials = prepared.config.trials
    seed = prepared.config.seed if sampler_seed is None else sampler_seed
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(2, trials // 3)))
    space = DefineByRunSpace(prepared.space, prepared.feasible, prepared.registry.families,
                             prepared.registry.methods, prepared.config.seed)
    kwargs: dict[str, Any] = {}
    if storage:
        kwargs = dict(storage=optuna.storages.RDBStorage(storage), study_name=STUDY_NAME)
    searcher = GkdOptunaSearch(space=space, metric=METRICS, mode=MODES, sampler=sampler, **kwargs)
    searcher.start_with(prepared.start_params)
    return searcher


def optuna_state(result: TrialResult) -> tuple[TrialState, Optional[list[float]]]:
    """How a finished trial is told to Optuna (as :class:`GkdOptunaSearch` does)."""
    if result.status == "ok":
        return TrialState.COMPLETE, [float(result.val_score), float(result.latency_ms_p50)]
    return (TrialState.FAIL if result.status == "failed" else TrialState.PRUNED), None


def settle_study(storage: str, finished: Mapping[str, TrialResult]) -> int:
    """``--resume``: the study's trials left RUNNING (or WAITING) by the interruption. One whose
    Ray trial finished (in the journal) is told its outcome; any other was running: it is
    marked FAIL and its parameters are enqueued, so the next trial the sampler asks for is the
    same spec again. Returns the number of specs enqueued to run again."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    rdb = optuna.storages.RDBStorage(storage)
    try:
        study = optuna.load_study(study_name=STUDY_NAME, storage=rdb)
    except KeyError:  # interrupted before the first trial was asked for
        return 0
    again = 0
    for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        result = finished.get(frozen.user_attrs.get("ray_trial_id", ""))
        if result is not None:
            state, values = optuna_state(result)
            rdb.set_trial_state_values(frozen._trial_id, state, values)
            continue
        rdb.set_trial_state_values(frozen._trial_id, TrialState.FAIL)
        again_attrs = {"rerun_of": frozen.user_attrs.get("ray_trial_id", "")}
        if frozen.user_attrs.get("start_point"):  # a start point runs again as one
            again_attrs["start_point"] = True
        study.enqueue_trial(frozen.params, user_attrs=again_attrs)
        again += 1
    return again


def _run_guarded(spec: TrialSpec, context: TrialContext, trial_id: str, workdir: Path,
                 timeout_s: Optional[float], on_epoch: Optional[Callable[[int, float], Any]] = None) -> TrialResult:
    """:func:`run_trial` under ``--trial-timeout``, on the device Ray assigned; whatever goes
    wrong inside the process is a ``failed`` result (reported, so Ray never retries it)."""
    from .cluster import trial_device, where_am_i
    from .deadline import TrialTimeout, deadline

    placement = where_am_i()
    device = trial_device(context.device)
    if device != context.device:
        context = dataclasses.replace(context, device=device)
    on_gpu = device.startswith("cuda")
    try:
        if on_gpu:
            # a fresh Ray worker has not initialised CUDA yet, and the caching allocator whose peak
            # is reset exists only after that ("Invalid device argument" otherwise)
            torch.cuda.init()
            torch.cuda.reset_peak_memory_stats(device)
        with deadline(timeout_s):
            result = run_trial(spec, context, trial_id, save_dir=workdir, on_epoch=on_epoch)
    except TrialTimeout:
        result = TrialResult(trial_id=trial_id, spec=spec, status="failed", failure="timeout",
                             error=f"timeout: stopped after --trial-timeout {timeout_s:g} s")
    except Exception as exc:  # outside run_trial's own guard
        result = TrialResult(trial_id=trial_id, spec=spec, status="failed", error=f"{type(exc).__name__}: {exc}")
    if result.status == "failed" and result.failure is None:
        result.failure = "exception"
    if on_gpu and torch.cuda.is_initialized():
        result.peak_gpu_mb = torch.cuda.max_memory_allocated(device) / 2**20
    result.placement = placement
    return result


def trainable(config: dict, context: TrialContext, timeout_s: Optional[float] = None,
              rungs: Sequence[int] = ()) -> None:
    """The Ray Tune function trainable: one :func:`run_trial` (under ``--trial-timeout``),
    reporting its best validation score at the scheduler's ``rungs`` (:mod:`gkd_search.pruning`),
    then its result (with the student as a Ray checkpoint, so it reaches the driver from any node
    of a cluster, through ``--storage-path``)."""
    started = time.perf_counter()
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    keep_freed_memory()  # full-batch steps on a large graph stop re-mapping their tensors (allocator.py)
    spec = TrialSpec(**config["gkd_spec"])
    trial_id = tune.get_context().get_trial_id() or uuid.uuid4().hex[:8]
    workdir = Path(tempfile.mkdtemp(prefix="gkd-trial-"))
    measured = context.latency.get(spec.architecture_key())
    nan = float("nan")

    from .cluster import where_am_i

    placement = json.dumps(where_am_i())  # a pruned trial's record comes from its last rung report

    def so_far() -> dict[str, Any]:
        return {"latency_ms_p50": measured.p50_ms if measured is not None else nan,
                "gkd_seconds": time.perf_counter() - started, "gkd_placement": placement}

    try:
        on_epoch = RungReporter(list(rungs), tune.report, so_far) if rungs else None
        result = _run_guarded(spec, context, trial_id, workdir, timeout_s, on_epoch)
        result.trial_seconds = time.perf_counter() - started
        payload = asdict(result)
        payload.pop("checkpoint", None)
        # Ray Tune stops the whole experiment on a result without the objectives, so a failed or
        # over-budget trial reports NaN; GkdOptunaSearch tells Optuna FAIL/PRUNED for it instead.
        metrics: dict[str, Any] = {
            "gkd_status": result.status,
            "gkd_error": result.error or "",
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
    """Runs in the driver: turns each finished (or crashed) Ray trial into a :class:`TrialResult`.

    ``started(trial_id, spec, attempt)`` hears each start (and restart); ``student_dir(trial_id)``
    is where a trained student is copied out of Ray's checkpoint storage (any
    ``--storage-path``); without it the checkpoint is used where Ray keeps it."""

    def __init__(self, record: Callable[[TrialResult], None],
                 started: Optional[Callable[[str, dict, int], None]] = None,
                 student_dir: Optional[Callable[[str], Path]] = None) -> None:
        self.record = record
        self.started = started
        self.student_dir = student_dir

    def __getstate__(self) -> dict:
        """Tune pickles its callbacks into the experiment state (for ``Tuner.restore``, which
        gkd-search does not use: ``--resume`` starts from the journal); the driver's
        functions, which hold the tracker, the journal and observer plugins, stay out."""
        return {"record": None, "started": None, "student_dir": None}

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        if self.started is not None:  # also when Ray restarts it after its worker died
            self.started(trial.trial_id, trial.config["gkd_spec"], trial.num_failures + 1)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        last = trial.last_result or {}
        if last.get("gkd_status") == "running":  # stopped by the scheduler at a rung
            result = pruned_result(trial.trial_id, TrialSpec(**trial.config["gkd_spec"]), last)
            result.rerun_of = trial.config.get("gkd_rerun_of")
            self.record(result)
            return
        if "gkd_result" not in last:
            self.on_trial_error(iteration, trials, trial, **info)
            return
        result = _result_from_json(last["gkd_result"])
        result.retries = min(trial.num_failures, MAX_FAILURES)
        result.rerun_of = trial.config.get("gkd_rerun_of")
        if result.status == "ok" and trial.checkpoint is not None:
            if self.student_dir is not None:
                target = self.student_dir(result.trial_id)
                shutil.rmtree(target, ignore_errors=True)
                trial.checkpoint.to_directory(str(target))
                result.checkpoint = str(target)
            else:
                result.checkpoint = trial.checkpoint.path
        self.record(result)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        spec = TrialSpec(**trial.config["gkd_spec"])
        failure, message = _failure_of(trial)
        attempts = trial.num_failures
        if failure == "worker_died":
            message = f"worker died ({attempts} attempt{'s' if attempts != 1 else ''}): {message}"
        self.record(TrialResult(trial_id=trial.trial_id, spec=spec, status="failed", failure=failure,
                                error=message[:2000], retries=min(max(attempts - 1, 0), MAX_FAILURES),
                                rerun_of=trial.config.get("gkd_rerun_of")))


def _failure_of(trial) -> tuple[str, str]:
    """``(failure, one line)`` for a Ray trial that errored: ``worker_died`` when its process
    died (killed, out of memory, its node lost), else ``exception``."""
    error = _local_pickled_error(trial)
    if error is None:
        with contextlib.suppress(Exception):
            error = trial.get_pickled_error()
    text = ""
    if error is None:
        text = _local_error_text(trial)
        if not text:
            with contextlib.suppress(Exception):
                text = trial.get_error() or ""
    else:
        text = f"{type(error).__name__}: {error}"
    names = {cls.__name__ for cls in type(error).__mro__} if error is not None else set()
    died = bool(names & set(WORKER_DIED)) or any(name in text for name in WORKER_DIED)
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    summary = lines[0] if died and lines else (lines[-1] if lines else "the trial's Ray worker raised")
    return ("worker_died" if died else "exception"), summary


def _local_pickled_error(trial) -> Optional[BaseException]:
    """The error Ray's ``Trial.handle_error`` has just written to the trial's *local* folder.

    ``Trial.get_pickled_error`` reads the copy in the run's storage, which newer Ray (2.60) syncs
    there only after ``on_trial_error`` has run: read then, it finds nothing. The file is Ray's own
    (written by this process for this trial), read as Ray reads it."""
    with contextlib.suppress(Exception):
        path = trial.pickled_error_file
        if path and Path(path).is_file():
            import cloudpickle

            return cloudpickle.loads(Path(path).read_bytes())
    return None


def _local_error_text(trial) -> str:
    """The text trace Ray wrote to the trial's local error file (empty if none)."""
    with contextlib.suppress(Exception):
        path = trial.error_file
        if path and Path(path).is_file():
            return Path(path).read_text(errors="replace")
    return ""


def pruned_result(trial_id: str, spec: TrialSpec, last: dict) -> TrialResult:
    """A trial the scheduler stopped, from its last (rung) report: where it stopped
    (``epochs_run``), its best validation score then (``last_val_score``)."""
    def number(key: str) -> Optional[float]:
        value = last.get(key)
        return None if value is None or value != value else float(value)

    return TrialResult(trial_id=trial_id, spec=spec, status="pruned", latency_ms_p50=number("latency_ms_p50"),
                       last_val_score=number("val_score"), epochs_run=int(last.get(TIME_ATTR) or 0),
                       trial_seconds=number("gkd_seconds"), latency_complete=True,
                       placement=json.loads(last.get("gkd_placement") or "{}"))


def run_tune(prepared, record: Callable[[TrialResult], None], *, max_concurrent: int, experiment_dir: Path,
             num_samples: Optional[int] = None, searcher: Optional[GkdOptunaSearch] = None,
             storage_path: Optional[str] = None, started: Optional[Callable[[str, dict, int], None]] = None,
             student_dir: Optional[Callable[[str], Path]] = None) -> None:
    """Run ``num_samples`` (default ``config.trials``) trials through Ray Tune; ``record`` sees
    each as it finishes.

    Ray keeps its experiment state and every trial's checkpoint (the trained student) in the
    folder ``experiment_dir.name`` of ``storage_path`` (``--storage-path``, which every node of a
    cluster reaches), else of ``experiment_dir.parent``; the caller removes it once the
    selected student is logged. A trial whose worker process dies is restarted once
    (:data:`MAX_FAILURES`); ``--trial-timeout`` is enforced inside the trial. With ``--pruner
    asha`` trials report at the rungs of :func:`gkd_search.asha.make_scheduler`, which stops
    hopeless ones (within latency brackets).
    """
    config = prepared.config
    extra = {"timeout_s": config.trial_timeout} if getattr(config, "trial_timeout", None) else {}
    max_epochs = space_max_epochs(prepared.space.training["epochs"])
    brackets = {a.key: latency_bracket(prepared.latency[a.key].p50_ms, config.budget_ms) for a in prepared.feasible}
    settings = AshaSettings(grace_period=config.asha_grace_epochs)
    scheduler = make_scheduler(config.pruner, brackets, max_epochs, settings)
    rungs = settings.rungs(max_epochs) if scheduler is not None else []
    runnable = tune.with_resources(
        tune.with_parameters(trainable, context=prepared.context(), rungs=rungs, **extra),
        {"cpu": config.cpus_per_trial, "gpu": config.gpus_per_trial},
    )
    tuner = tune.Tuner(
        runnable,
        tune_config=tune.TuneConfig(search_alg=searcher or make_searcher(prepared),
                                    num_samples=num_samples or config.trials,
                                    max_concurrent_trials=max_concurrent, reuse_actors=True, scheduler=scheduler),
        run_config=tune.RunConfig(name=experiment_dir.name, storage_path=storage_path or str(experiment_dir.parent),
                                  verbose=0, callbacks=[ReportToDriver(record, started, student_dir)],
                                  failure_config=tune.FailureConfig(max_failures=MAX_FAILURES)),
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
