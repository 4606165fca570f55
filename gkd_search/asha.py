"""The ``--pruner asha`` scheduler for Ray Tune: one ``ASHAScheduler`` per latency bracket
(see :mod:`gkd_search.pruning`). Imported only when a search runs (Ray is a heavy import)."""

from __future__ import annotations

from typing import Any, Mapping, Optional

from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

from .pruning import PRUNE_METRIC, TIME_ATTR, AshaSettings, check_pruner
from .types import architecture_key


def make_scheduler(pruner: str, bracket_of_architecture: Mapping[str, int], max_epochs: int,
                   settings: Optional[AshaSettings] = None):
    """The Ray Tune scheduler for ``--pruner`` (``None`` for ``none``: Tune's FIFO)."""
    settings = settings or AshaSettings()
    if check_pruner(pruner) == "none" or not settings.rungs(max_epochs):
        return None
    return LatencyBracketASHA(dict(bracket_of_architecture), max_epochs, settings)


class LatencyBracketASHA(FIFOScheduler):
    """One Ray Tune ``ASHAScheduler`` per latency bracket; a trial is routed by its
    architecture (``config["gkd_spec"]``) to its bracket's scheduler."""

    def __init__(self, bracket_of_architecture: dict[str, int], max_epochs: int, settings: AshaSettings) -> None:
        super().__init__()
        self._metric = PRUNE_METRIC  # what Tune reads; each bracket's ASHA maximises it
        self.bracket_of_architecture = bracket_of_architecture
        self.max_epochs = int(max_epochs)
        self.settings = settings
        self._schedulers: dict[int, Any] = {}
        self._of_trial: dict[str, Any] = {}

    def bracket(self, config: Mapping[str, Any]) -> int:
        spec = config.get("gkd_spec") or {}
        key = architecture_key(spec.get("family", ""), int(spec.get("num_layers", 0)),
                               int(spec.get("hidden_channels", 0)), spec.get("family_params") or {})
        return self.bracket_of_architecture.get(key, 0)

    def _scheduler_for(self, trial) -> Any:
        scheduler = self._of_trial.get(trial.trial_id)
        if scheduler is None:
            bracket = self.bracket(trial.config)
            if bracket not in self._schedulers:
                self._schedulers[bracket] = ASHAScheduler(
                    time_attr=TIME_ATTR, metric=PRUNE_METRIC, mode="max", max_t=self.max_epochs,
                    grace_period=self.settings.grace_period, reduction_factor=self.settings.reduction_factor,
                    stop_last_trials=False)
            scheduler = self._of_trial[trial.trial_id] = self._schedulers[bracket]
        return scheduler

    def on_trial_add(self, tune_controller, trial) -> None:
        self._scheduler_for(trial).on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if result.get("gkd_status") != "running":  # the final report: nothing left to decide
            return self.CONTINUE
        decision = self._scheduler_for(trial).on_trial_result(tune_controller, trial, result)
        # a space's start point (start_points.py) sets the bar at each rung but is never stopped:
        # the students a space asks for first, such as GLNN's MLPs, often learn slowly at first
        return self.CONTINUE if trial.config.get("gkd_start_point") else decision

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        scheduler = self._of_trial.pop(trial.trial_id, None)
        if scheduler is not None:
            scheduler.on_trial_remove(tune_controller, trial)

    def on_trial_error(self, tune_controller, trial) -> None:
        self.on_trial_complete(tune_controller, trial, {})

    def on_trial_remove(self, tune_controller, trial) -> None:
        self.on_trial_complete(tune_controller, trial, {})

    def debug_string(self) -> str:
        return "gkd-search ASHA per latency bracket: " + "; ".join(
            f"bracket {b}: {s.debug_string()}" for b, s in sorted(self._schedulers.items()))
