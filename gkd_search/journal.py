"""The local state of one search, under ``<cache>/searches/<search run id>/``, what ``--resume``
continues from:

- ``events.jsonl``: one JSON line per event, appended and flushed as it happens: ``started``
  (a trial began on a worker: its Ray trial id and spec), ``finished`` (its whole
  :class:`~gkd_search.types.TrialResult`, written *before* it is logged to MLflow, so a record
  the tracking server did not take is never lost: this is the journal ``--resume`` replays),
  ``logged`` (its MLflow run id);
- ``students/<trial id>/``: each trained student (``config.json`` + ``weights.pt``), copied from
  Ray's checkpoint storage when the trial finishes, so the selected one can be logged even after
  a resume;
- ``study.db``: the Optuna study (RDB storage): the sampler's history;
- ``lock``: held (``flock``) by the process running the search; the kernel releases it when that
  process dies, even by ``kill -9``.

The folder is removed when the search finishes.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional

from .errors import UsageError
from .types import TrialResult, TrialSpec

STATE_FOLDER = "searches"


class SearchBusy(UsageError):
    """Another live process holds the search's lock."""


def state_root(cache_dir: Path, parent_run_id: str) -> Path:
    return Path(cache_dir) / STATE_FOLDER / parent_run_id


def result_to_json(result: TrialResult) -> dict[str, Any]:
    return asdict(result)


def result_from_json(payload: dict[str, Any]) -> TrialResult:
    payload = dict(payload)
    payload["spec"] = TrialSpec(**payload["spec"])
    return TrialResult(**payload)


class SearchState:
    """Reads and appends the journal of one search (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._lock_handle = None

    @classmethod
    def create(cls, cache_dir: Path, parent_run_id: str, config: dict[str, Any]) -> SearchState:
        root = state_root(cache_dir, parent_run_id)
        (root / "students").mkdir(parents=True, exist_ok=True)
        (root / "config.json").write_text(json.dumps(config, indent=1, sort_keys=True))
        return cls(root)

    @classmethod
    def open(cls, cache_dir: Path, parent_run_id: str) -> SearchState:
        root = state_root(cache_dir, parent_run_id)
        if not (root / "config.json").is_file():
            raise UsageError(
                f"search run {parent_run_id} has no resume state under {root}: resume it on the machine it ran on, "
                "with the --cache-dir it used")
        return cls(root)

    @classmethod
    def exists(cls, cache_dir: Path, parent_run_id: str) -> bool:
        return (state_root(cache_dir, parent_run_id) / "config.json").is_file()

    # ------------------------------------------------------------------ the lock

    def lock(self) -> None:
        """Hold the search's lock for the life of this process (or until :meth:`unlock`).

        Raises:
            SearchBusy: another live process runs this search.
        """
        handle = open(self.root / "lock", "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            owner = handle.read().strip() or "?"
            handle.close()
            raise SearchBusy(f"search run {self.root.name} is running in process {owner}; wait for it to end "
                             "(or stop it) before resuming it") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._lock_handle = handle

    def is_locked(self) -> bool:
        """True if a live process holds the lock."""
        if not (self.root / "lock").exists():
            return False
        with open(self.root / "lock", "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
            return False

    def unlock(self) -> None:
        if self._lock_handle is not None:
            fcntl.flock(self._lock_handle, fcntl.LOCK_UN)
            self._lock_handle.close()
            self._lock_handle = None

    # ------------------------------------------------------------------ events

    def _append(self, event: dict[str, Any]) -> None:
        with open(self.root / "events.jsonl", "a") as handle:
            handle.write(json.dumps(event) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def events(self) -> list[dict[str, Any]]:
        path = self.root / "events.jsonl"
        if not path.is_file():
            return []
        out = []
        for line in path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:  # a line cut off by kill -9: that event did not happen
                continue
        return out

    def started(self, trial_id: str, spec: dict[str, Any], attempt: int = 1) -> None:
        self._append({"event": "started", "trial_id": trial_id, "spec": spec, "attempt": attempt})

    def finished(self, result: TrialResult) -> None:
        self._append({"event": "finished", "result": result_to_json(result)})

    def logged(self, trial_id: str, run_id: str) -> None:
        self._append({"event": "logged", "trial_id": trial_id, "run_id": run_id})

    def experiment(self, name: str) -> None:
        """A Ray Tune experiment folder of this search (removed when the search finishes)."""
        self._append({"event": "experiment", "name": name})

    def finished_results(self) -> list[TrialResult]:
        """Every finished trial, in the order they finished (one per trial id)."""
        seen: dict[str, TrialResult] = {}
        for e in self.events():
            if e.get("event") == "finished":
                result = result_from_json(e["result"])
                seen.setdefault(result.trial_id, result)
        return list(seen.values())

    def logged_runs(self) -> dict[str, str]:
        return {e["trial_id"]: e["run_id"] for e in self.events() if e.get("event") == "logged"}

    def started_trials(self) -> list[dict[str, Any]]:
        return [e for e in self.events() if e.get("event") == "started"]

    def experiments(self) -> list[str]:
        return [e["name"] for e in self.events() if e.get("event") == "experiment"]

    # ------------------------------------------------------------------ files

    @property
    def study_url(self) -> str:
        return f"sqlite:///{(self.root / 'study.db').resolve()}"

    def student_dir(self, trial_id: str) -> Path:
        return self.root / "students" / trial_id

    def config(self) -> dict[str, Any]:
        return json.loads((self.root / "config.json").read_text())

    def remove(self) -> None:
        self.unlock()
        shutil.rmtree(self.root, ignore_errors=True)


def pending(results: list[TrialResult]) -> list[TrialResult]:
    """The results without an MLflow run (not yet logged)."""
    return [r for r in results if not r.run_id]


def find(results: list[TrialResult], trial_id: str) -> Optional[TrialResult]:
    return next((r for r in results if r.trial_id == trial_id), None)
