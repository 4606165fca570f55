#!/usr/bin/env python
"""Each method's loss at initialisation against the cross-entropy, over the default space.

Draws ``--samples`` trial configurations from the default space with Optuna's seeded random
sampler (the define-by-run sampling a search uses), builds each student and its loss exactly as
``run_trial`` does, and evaluates the objective once, in training mode, before any step; the
ratio ``loss / CE`` (CE: the cross-entropy on the labelled nodes of the same forward pass) says
how much the distillation terms outweigh the label term when training starts. Nothing is trained.

Usage::

    python bench/loss_scale.py --dataset photo --label after      # bench/results/loss_scale.json
    PYTHONPATH=<worktree of a70d36b> python bench/loss_scale.py --dataset photo --label before
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "loss_scale.json"


def measure(dataset: str, samples: int, seed: int, data_root: str) -> list[dict[str, Any]]:
    import optuna
    import torch

    import gkd_search.trial as trial_module
    from gkd_search.distill.loop import TrainOutcome
    from gkd_search.methods._common import supervised_cross_entropy
    from gkd_search.search import SearchConfig, prepare
    from gkd_search.types import run_model

    prepared = prepare(SearchConfig(dataset=dataset, data_root=data_root, seed=seed), check_tracking=False)
    seen: dict[str, float] = {}

    def first_step_only(model, objective, data, settings, *args, **kwargs):
        model.train()
        out = run_model(model, data.x, data.edge_index)
        with torch.no_grad():
            seen["loss"] = float(objective(out))
            seen["ce"] = float(supervised_cross_entropy(out.logits, data.y, data.train_mask))
        return TrainOutcome(0.0, 0.0, 0, 0, 0.0)

    trial_module.train_model = first_step_only  # evaluate the objective, do not train
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed), directions=["maximize"])
    context, rows = prepared.context(), []
    for _ in range(samples):
        ask = study.ask()
        spec = prepared.suggest(ask)
        study.tell(ask, 0.0)
        seen.clear()
        result = trial_module.run_trial(spec, context, "scale")
        if "ce" in seen:
            rows.append({"method": spec.method, "arch": spec.architecture_key(), "params": spec.method_params,
                         "loss": seen["loss"], "ce": seen["ce"], "ratio": seen["loss"] / seen["ce"]})
            print(f"{spec.method:9s} {spec.architecture_key():18s} loss/CE {rows[-1]['ratio']:10.3g}", flush=True)
        else:
            print(f"{spec.method:9s} {spec.architecture_key():18s} {result.status} {result.error}", flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="photo")
    parser.add_argument("--label", required=True, help="before | after")
    parser.add_argument("--samples", type=int, default=120)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-root", default=os.environ.get("GKD_DATA", str(ROOT.parent / "shared" / "data")))
    args = parser.parse_args()
    rows = measure(args.dataset, args.samples, args.seed, args.data_root)
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    per_method: dict[str, dict[str, float]] = {}
    for row in rows:
        cell = per_method.setdefault(row["method"], {"n": 0, "max_ratio": 0.0})
        cell["n"] += 1
        cell["max_ratio"] = max(cell["max_ratio"], row["ratio"])
    results[f"{args.dataset}/{args.label}"] = {"per_method": per_method, "rows": rows}
    RESULTS.write_text(json.dumps(results, indent=1))
    for method, cell in sorted(per_method.items()):
        print(f"{method:9s} n={cell['n']:3d} max loss/CE {cell['max_ratio']:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
