"""``gkd-search --resume SEARCH_RUN_ID``: continue an interrupted search (Ctrl-C, ``kill -9`` of
the driver, a reboot, a tracking server that stayed down).

What a search leaves to resume from: its options (tag ``gkd.search_config`` on the search run)
and its journal under ``<cache>/searches/<run id>/`` (:mod:`gkd_search.journal`): every
finished trial's result and student, and the Optuna study with the sampler's history. A resume

1. reads the options from the search run and refuses a search that finished
   (``gkd.status=finished``) or is still running in a live process (the journal's lock);
2. matches the journal with the store: results the store lacks are logged now (the journal's
   replay), child runs an interruption cut off (left RUNNING) are deleted and logged again;
3. settles the study: trials that were running when the search died are marked failed and their
   specs asked for again first (:func:`gkd_search.ray_backend.settle_study`); nothing that
   finished runs again;
4. runs the missing trials so the search ends with exactly ``--trials`` trial runs, then selects,
   logs and registers as a search that was never interrupted.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlparse

from .errors import UsageError
from .journal import SearchState

CONFIG_TAG = "gkd.search_config"
OPTIONS_HASH_TAG = "gkd.options_hash"
#: options that say where and how fast a search runs, not what it finds: ``--resume`` accepts
#: them again, and two searches differing only in them have "the same options"
EXECUTION_OPTIONS = ("max_concurrent", "cpus_per_trial", "gpus_per_trial", "ray_address", "storage_path", "cache_dir",
                     "tracking_uri", "trial_timeout")


def config_to_json(config) -> dict[str, Any]:
    """The search's options as the search run stores them, with the paths made absolute so a
    resume from another folder finds the same files."""
    values = asdict(config)
    for key in ("data_root", "teacher_checkpoint", "cache_dir", "space", "dataset"):
        value = values.get(key)
        if isinstance(value, str) and value and Path(value).expanduser().exists():
            values[key] = str(Path(value).expanduser().resolve())
    return values


def config_from_json(payload: dict[str, Any]):
    from .search import SearchConfig

    known = {f.name for f in fields(SearchConfig)}
    payload = {"label_shift": "off", **payload}  # a search stored before the option existed did not adapt
    return SearchConfig(**{k: v for k, v in payload.items() if k in known})


def options_hash(config) -> str:
    """What makes two searches "the same": every option but :data:`EXECUTION_OPTIONS`."""
    values = {k: v for k, v in config_to_json(config).items() if k not in EXECUTION_OPTIONS}
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:16]


def search_tags(config) -> dict[str, str]:
    return {CONFIG_TAG: json.dumps(config_to_json(config), sort_keys=True), OPTIONS_HASH_TAG: options_hash(config)}


def resume_command(run_id: str, tracking_uri: Optional[str], cache_dir: Optional[Path]) -> str:
    """The command that continues search ``run_id`` (printed when a search is interrupted)."""
    from .tracking import DEFAULT_TRACKING_URI

    words = ["gkd-search", "--resume", run_id]
    if tracking_uri and tracking_uri != DEFAULT_TRACKING_URI:
        words += ["--tracking-uri", tracking_uri]
    if cache_dir is not None:
        from .search import default_cache_dir

        if Path(cache_dir).resolve() != default_cache_dir().resolve():
            words += ["--cache-dir", str(cache_dir)]
    return " ".join(shlex.quote(w) for w in words)


@dataclass
class ResumePoint:
    """An interrupted search about to continue."""

    run_id: str
    config: Any  # SearchConfig
    state: SearchState


def load_resume_point(run_id: str, tracking_uri: Optional[str], cache_dir: Optional[str],
                      overrides: dict[str, Any]) -> ResumePoint:
    """Find search run ``run_id`` in the store and its journal in the cache.

    Raises:
        UsageError: no such run, not a search run, a finished search, or no journal here.
    """
    from mlflow.tracking import MlflowClient

    from .retry import first_line
    from .tracking import check_tracking_uri, resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri)
    check_tracking_uri(uri)
    try:
        run = MlflowClient(uri).get_run(run_id)
    except Exception as exc:
        raise UsageError(f"--resume {run_id}: no such run in the MLflow store {uri} ({first_line(exc, 120)}); give "
                         "the id printed as 'search run ...' and the --tracking-uri the search used") from None
    tags = run.data.tags
    if tags.get("gkd.role") != "search" or CONFIG_TAG not in tags:
        raise UsageError(f"--resume {run_id}: run {run_id} is not a gkd-search search run (tag gkd.role=search); "
                         "give the search run's id, not a trial's")
    if tags.get("gkd.status") == "finished":
        raise UsageError(f"--resume {run_id}: that search finished ({tags.get('gkd.model_uri') or 'nothing selected'}); "
                         "there is nothing to resume")
    payload = json.loads(tags[CONFIG_TAG])
    payload["tracking_uri"] = uri
    payload.update({k: v for k, v in overrides.items() if v is not None})
    if cache_dir is not None:
        payload["cache_dir"] = cache_dir
    config = config_from_json(payload)
    from .search import default_cache_dir

    cache = Path(config.cache_dir).expanduser() if config.cache_dir else default_cache_dir()
    state = SearchState.open(cache, run_id)
    return ResumePoint(run_id, config, state)


def check_no_resumable_twin(uri: str, experiment: str, config, cache_dir: Path) -> None:
    """A new search with the same options (:func:`options_hash`) as one that is still running,
    or was interrupted and can be resumed from this cache, is a one-line error naming it; an
    http(s) store that does not answer is a :class:`~gkd_search.tracking.TrackingError` at once."""
    from mlflow.tracking import MlflowClient

    from .search import default_cache_dir
    from .tracking import _sqlite_path, check_tracking_uri

    if not (Path(cache_dir) / "searches").is_dir():
        return  # nothing could be resumed from this cache
    if urlparse(uri).scheme in ("http", "https"):
        check_tracking_uri(uri, open_it=False)  # a server that does not answer: its one line, not MLflow's retries
    db = _sqlite_path(uri)
    if db is not None and not db.is_file():
        return  # a new store: no twin, and nothing is created before the options are checked
    try:
        client = MlflowClient(uri)
        found = client.get_experiment_by_name(experiment)
        if found is None:
            return
        digest = options_hash(config)
        runs = client.search_runs([found.experiment_id], f"tags.`{OPTIONS_HASH_TAG}` = '{digest}'", max_results=100)
    except Exception:  # an unusable store: the tracking check reports it, in its turn
        return
    for run in runs:
        status = run.data.tags.get("gkd.status")
        if status == "finished" or not SearchState.exists(cache_dir, run.info.run_id):
            continue
        state = SearchState.open(cache_dir, run.info.run_id)
        if state.is_locked():
            raise UsageError(
                f"a search with the same options is running (search run {run.info.run_id}); wait for it to finish, "
                "or change --seed or --experiment")
        done = len(state.finished_results())
        command = resume_command(run.info.run_id, uri, None if Path(cache_dir) == default_cache_dir() else cache_dir)
        how = {"killed": "by Ctrl-C", "failed": "by an error"}.get(status, "(its process died)")
        raise UsageError(
            f"search run {run.info.run_id} with the same options was interrupted {how} after {done} of "
            f"{config.trials} trials: continue it with `{command}`, or give --fresh to start a new search")
