"""Every built-in KD method and student family trained on the GPU and on the CPU, side by side.

The GPU check of the search (``bench/gpu_check.sh``) samples a few trials; a method whose loss
builds a tensor on the wrong device (or a family whose propagation does) fails only when it is
drawn. This script trains, on Cora, every method of the default search space with a GCN student
(and the graph-free methods with an MLP student) and every family with soft-label KD, each once
with ``device="cpu"`` and once with ``device="cuda"``, through :func:`gkd_search.trial.run_trial`
(the code path of a search trial), and reports status, validation and test accuracy and training
seconds per device. The method's hyperparameters are the middle of its default-space range (the
first choice of a categorical), the same on both devices.

It exits 1 when any trial fails on the GPU but not on the CPU, or when a GPU trial's validation
accuracy is more than ``--tolerance`` below the CPU trial's (GPU kernels are not bitwise equal to
CPU ones, so scores differ a little); it exits 0 with a note when no CUDA GPU is visible.

    python bench/gpu_methods.py --data-root ../shared/data --epochs 100 --out gpu_methods.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping

import torch

from gkd_search.latency import LatencyProtocol
from gkd_search.loading import load_dataset
from gkd_search.registry import build_registry
from gkd_search.space import load_space, suggest_spec
from gkd_search.teacher import TeacherConfig, get_teacher
from gkd_search.trial import TrialContext, run_trial
from gkd_search.types import TrialSpec


class MiddleOfRange:
    """An Optuna-like suggester that takes forced values by name, else the middle of each range."""

    def __init__(self, forced: Mapping[str, Any]):
        self.forced = dict(forced)

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float:
        return math.sqrt(low * high) if log else (low + high) / 2

    def suggest_int(self, name: str, low: int, high: int, *, log: bool = False) -> int:
        return (low + high) // 2

    def suggest_categorical(self, name: str, choices):
        for key, value in self.forced.items():
            if (name == key or name.startswith(f"{key}[") or name.endswith(f".{key}")) and value in choices:
                return value
        return choices[0]


def trial_specs(space, registry, epochs: int) -> list[TrialSpec]:
    """Every method of the default space with a GCN and with an MLP student, every family of the
    space with softkd (all sampled as the search samples), then the registered families and methods
    the default space leaves out (GCNII, APPNP, SGC, GIN, TAG; RKD) at 2x32 with their declared
    defaults' middle values."""
    pairs = [(family, method) for family in ("gcn", "mlp")
             for method in space.methods_for(registry.families[family], registry.methods)]
    pairs += [(family, "softkd") for family in space.families if (family, "softkd") not in pairs]
    specs = []
    for family, method in pairs:
        spec = suggest_spec(MiddleOfRange({"family": family, "method": method}), space,
                            space.architectures(registry.families), registry.families, registry.methods, seed=0)
        specs.append(spec)
    training = {k: p.suggest(MiddleOfRange({}), k) for k, p in space.training.items()}
    extra = [(family, "softkd") for family in sorted(registry.families)
             if family not in space.families and not registry.families[family].relational]
    extra += [("gcn", method) for method in sorted(registry.methods) if method not in space.methods]
    for family, method in extra:
        params = {k: p.suggest(MiddleOfRange({}), f"{method}.{k}")
                  for k, p in registry.methods[method].hyperparameters.items()}
        family_params = {k: p.suggest(MiddleOfRange({}), f"{family}.{k}")
                         for k, p in registry.families[family].hyperparameters.items()}
        specs.append(TrialSpec(family=family, num_layers=2, hidden_channels=32, family_params=family_params,
                               method=method, method_params=params, training=dict(training), seed=0))
    for spec in specs:
        spec.training.update(epochs=epochs, patience=epochs)
    return specs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--dataset", default="cora")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--teacher", default="gcn:2:256", help="FAMILY:LAYERS:HIDDEN[:key=value], as --teacher")
    parser.add_argument("--tolerance", type=float, default=0.05, help="largest val-accuracy drop on the GPU")
    parser.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    parser.add_argument("--devices", default="cpu,cuda", help="the reference device, then the one checked")
    args = parser.parse_args(argv)
    devices = args.devices.split(",")
    if "cuda" in devices and not torch.cuda.is_available():
        print("gpu_methods: no CUDA GPU visible to torch (torch.cuda.is_available() is False); nothing to check")
        return 0

    registry = build_registry()
    cache = Path(tempfile.mkdtemp(prefix="gkd-gpu-methods-"))
    dataset = load_dataset(args.dataset, args.data_root, cache_dir=cache, registry=registry)
    space = load_space("default", registry.families, registry.methods)
    teacher_config = TeacherConfig.parse(args.teacher)
    _, teacher = get_teacher(dataset, teacher_config, registry.families[teacher_config.family], seed=0,
                             cache_dir=cache)
    device_name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    print(f"gpu_methods: {device_name}, torch {torch.__version__}, dataset {dataset.name}, "
          f"teacher {teacher_config.spec} test {teacher.test_acc:.3f}")
    protocol = LatencyProtocol(warmup=2, repeats=30)
    contexts = {
        device: TrialContext(dataset=dataset, teacher=teacher, families=registry.families, methods=registry.methods,
                             latency={}, budget_ms=1e9, protocol=protocol, device=device,
                             structural_losses=registry.losses, cache_dir=cache / "methods" / device)
        for device in devices
    }
    rows: list[dict[str, Any]] = []
    failures: list[str] = []
    header = f"{'family':<6} {'method':<9} " + " ".join(
        f"{d + ' ' + k:>{w}}" for d in devices for k, w in (("status", 11), ("val", 8), ("test", 9), ("s", 6)))
    print(header)
    for spec in trial_specs(space, registry, args.epochs):
        family, method = spec.family, spec.method
        row: dict[str, Any] = {"family": family, "method": method, "architecture": spec.architecture_key(),
                               "method_params": spec.method_params}
        for device, ctx in contexts.items():
            start = time.perf_counter()
            result = run_trial(spec, ctx, trial_id=f"{family}-{method}-{device}")
            if device == "cuda":
                torch.cuda.synchronize()
            row[device] = {"status": result.status, "error": result.error, "val_acc": result.val_acc,
                           "test_acc": result.test_acc, "seconds": round(time.perf_counter() - start, 2),
                           "epochs_run": result.epochs_run}
        cpu, gpu = row[devices[0]], row[devices[-1]]
        if gpu["status"] != cpu["status"]:
            failures.append(f"{family}/{method}: cuda {gpu['status']} ({gpu['error']}) but cpu {cpu['status']}")
        elif cpu["val_acc"] is not None and gpu["val_acc"] is not None and gpu["val_acc"] < cpu["val_acc"] - args.tolerance:
            failures.append(f"{family}/{method}: cuda val {gpu['val_acc']:.3f} < cpu val {cpu['val_acc']:.3f} - {args.tolerance}")
        rows.append(row)
        cells = []
        for d in devices:
            r = row[d]
            fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
            cells.append(f"{r['status']:>15} {fmt(r['val_acc']):>12} {fmt(r['test_acc']):>13} {r['seconds']:>10.1f}")
        print(f"{family:<6} {method:<9} " + " ".join(cells), flush=True)
        if gpu["error"]:
            print(f"    cuda error: {gpu['error']}")
    peak = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else 0.0
    print(f"gpu_methods: {len(rows)} pairs, peak CUDA memory {peak:.0f} MiB, "
          f"{len(failures)} GPU-only failure(s) or drop(s) beyond {args.tolerance}")
    for failure in failures:
        print(f"  FAIL {failure}")
    if args.out:
        args.out.write_text(json.dumps({"device": device_name, "devices": devices, "torch": torch.__version__,
                                        "epochs": args.epochs, "rows": rows, "failures": failures}, indent=1))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
