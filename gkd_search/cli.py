"""``gkd-search``: argument parsing, progress and the final table; no ML logic here.

``gkd-search [OPTIONS]`` runs a search; ``gkd-search plugins`` lists what every plugin provides.
User mistakes print one line on stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, no usage block
        self.exit(EXIT_USAGE, f"gkd-search: error: {message} (see gkd-search --help)\n")


def _csv(text: str) -> list[str]:
    return [item.strip().lower() for item in text.split(",") if item.strip()]


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="gkd-search",
        description="Find the best distilled GNN student within a latency budget. "
        "'gkd-search plugins' lists methods, families, losses and datasets.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    g = p.add_argument_group("search")
    g.add_argument("--dataset", default="cora", help="dataset name, e.g. cora, pubmed, photo, synthetic:nodes=5000,edges=20000")
    g.add_argument("--data-root", default=None, help="read-only folder with DATASET/raw/ files (default: $GKD_DATA; else download)")
    g.add_argument("--budget-ms", type=float, default=10.0, help="latency budget: p50 per request, milliseconds")
    g.add_argument("--trials", type=int, default=30, help="number of trials")
    g.add_argument("--epochs", type=int, default=None, help="max training epochs per trial (default: the space's, 200)")
    g.add_argument("--seed", type=int, default=0, help="seed of the sampler, the teacher, the splits and every student")
    g.add_argument("--space", default="default", help="search-space YAML file, or a name in gkd_search/search_spaces/")
    g.add_argument("--methods", type=_csv, default=None, help="comma-separated methods to search (default: the space's)")
    g.add_argument("--families", type=_csv, default=None, help="comma-separated student families (default: the space's)")
    g.add_argument("--teacher", default=None,
                   help="FAMILY:LAYERS:HIDDEN[:key=value], or auto: the best of six standard teachers by validation "
                        "(default: the space's, else per dataset, else auto)")
    g.add_argument("--teacher-checkpoint", default=None, help="a teacher checkpoint file instead of training one")
    r = p.add_argument_group("resources")
    r.add_argument("--device", default="cpu", help="cpu or cuda[:N], for trials and latency")
    r.add_argument("--max-concurrent", type=int, default=None, help="trials at once (default: CPUs / cpus-per-trial)")
    r.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs Ray gives each trial")
    r.add_argument("--gpus-per-trial", type=float, default=0.0, help="GPUs (fractions allowed) Ray gives each trial")
    r.add_argument("--ray-address", default=None, help="join an existing Ray cluster (ray start --head)")
    r.add_argument("--cache-dir", default=None, help="teacher, latency and dataset cache (default: $GKD_CACHE or ~/.cache/gkd-search)")
    mb = p.add_argument_group("large graphs")
    mb.add_argument("--mini-batch", default="auto", choices=["auto", "on", "off"],
                    help="train on neighbour-sampled mini-batches: auto = when a trial's full-batch memory estimate "
                         "exceeds --max-full-batch-gb")
    mb.add_argument("--batch-size", type=int, default=1024, help="seed nodes per mini-batch step")
    mb.add_argument("--fanout", default=None,
                    help="neighbours sampled per hop, e.g. 10,5 (default 10,10); when given, requests are timed with "
                         "it too")
    mb.add_argument("--max-full-batch-gb", type=float, default=4.0, help="the auto threshold per trial")
    mb.add_argument("--inference-chunk", type=int, default=32768,
                    help="nodes per chunk of layer-wise inference (teacher outputs, evaluation)")
    lat = p.add_argument_group("latency")
    lat.add_argument("--latency-protocol", default="request", choices=["request", "full"],
                     help="request: k-hop extraction + forward for a batch of target nodes; full: whole graph")
    lat.add_argument("--latency-batch", type=int, default=1, help="target nodes per request")
    lat.add_argument("--latency-repeats", type=int, default=50, help="timed requests per architecture (>= 30)")
    lat.add_argument("--latency-threads", type=int, default=1, help="torch threads while timing")
    t = p.add_argument_group("tracking and plugins")
    t.add_argument("--tracking-uri", default=None, help="MLflow URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlruns/mlflow.db)")
    t.add_argument("--experiment", default="gkd-search", help="MLflow experiment name")
    t.add_argument("--block-plugin", action="append", default=[], metavar="NAME", help="do not load this plugin (repeatable)")
    t.add_argument("--strict-plugins", action="store_true", help="fail when a plugin fails to import")
    t.add_argument("-q", "--quiet", action="store_true", help="print only the final table")
    return p


class ConsoleReporter:
    """Prints progress lines and the final table."""

    def __init__(self, quiet: bool = False, stream=None) -> None:
        self.quiet = quiet
        self.stream = stream or sys.stdout

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def message(self, text: str) -> None:
        if not self.quiet:
            self._print(text)

    def trial(self, result, done, total, feasible, best) -> None:
        if self.quiet:
            return
        arch = f"{result.spec.architecture_key()} {result.spec.method}"
        if result.status == "ok":
            what = f"val {result.val_acc:.3f} test {result.test_acc:.3f} p50 {result.latency_ms_p50:.2f} ms"
        elif result.status == "over_budget":
            what = f"p50 {result.latency_ms_p50:.2f} ms over budget, not trained"
        else:
            detail = f" ({result.error_detail})" if result.error_detail else ""
            what = f"FAILED: {((result.error or '') + detail)[:120]}"
        best_text = f"{best:.3f}" if best is not None else "-"
        self._print(f"[{done:>3}/{total}] {arch:<28} {what} | in budget {feasible}, best val {best_text}")


def _collapse_identical(results):
    """Group front members that are the same student with the same numbers (the sampler can draw
    one configuration twice); the selected one stays visible as its group's representative."""
    groups: dict[tuple, list] = {}
    for r in results:
        key = (r.spec.architecture_key(), r.spec.method, r.val_acc, r.test_acc, r.latency_ms_p50, r.params)
        groups.setdefault(key, []).append(r)
    return [(next((r for r in g if r.selected), g[0]), len(g)) for g in groups.values()]


def print_summary(summary, reporter: ConsoleReporter) -> None:
    out = reporter._print
    out("")
    out(f"Pareto front ({len(summary.pareto)} of {len(summary.results)} trials; val acc up, p50 down, params down):")
    out(f"  {'':1} {'architecture':<24} {'method':<8} {'val':>6} {'test':>6} {'p50 ms':>8} {'params':>9} {'compress':>9}")
    for r, count in _collapse_identical(sorted(summary.pareto, key=lambda r: r.latency_ms_p50)):
        mark = "*" if r.selected else " "
        ratio = summary.teacher.num_params / r.params
        repeat = f"  (x{count} identical trials)" if count > 1 else ""
        out(f"  {mark} {r.spec.architecture_key():<24} {r.spec.method:<8} {r.val_acc:>6.3f} {r.test_acc:>6.3f} "
            f"{r.latency_ms_p50:>8.2f} {r.params:>9,} {ratio:>8.1f}x{repeat}")
    t = summary.teacher
    out(f"  teacher {t.spec}: val {t.val_acc:.3f} test {t.test_acc:.3f}, {t.num_params:,} parameters")
    s = summary.selected
    if s is None:
        out(f"No trial finished within {summary.budget_ms:g} ms: nothing selected.")
    else:
        out(f"Selected (* best val acc within {summary.budget_ms:g} ms): {s.spec.architecture_key()} {s.spec.method}, "
            f"val {s.val_acc:.3f}, test {s.test_acc:.3f}, p50 {s.latency_ms_p50:.2f} ms, "
            f"{t.num_params / s.params:.1f}x smaller than the teacher")
        out(f"  run {s.run_id}; load it with gkd_search.load_student({s.run_id!r})")
    out(f"Search run {summary.parent_run_id} finished in {summary.seconds:.0f} s. Compare runs:")
    uri = summary.tracking_uri
    if uri.startswith("http"):
        out(f"  open {uri}")
    else:
        out(f"  mlflow ui --backend-store-uri {uri}")


def show_plugin_warnings() -> None:
    """Print each :class:`~gkd_search.errors.PluginWarning` (a plugin skipped because it failed to
    import, an observer hook that raised) as one line on stderr, even where every other warning
    is silenced; call it after any ``warnings.filterwarnings("ignore")``. :func:`main` restores
    the previous ``warnings.showwarning``."""
    import warnings

    from .errors import PluginWarning

    warnings.filterwarnings("always", category=PluginWarning)
    previous = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, PluginWarning):
            print(f"gkd-search: warning: {message}", file=sys.stderr, flush=True)
        else:
            previous(message, category, filename, lineno, file, line)

    warnings.showwarning = show


def plugins_command(argv: Sequence[str]) -> int:
    from .registry import build_registry, get_plugin_manager

    parser = _Parser(prog="gkd-search plugins", description="List every component and the plugin providing it.")
    parser.add_argument("--block-plugin", action="append", default=[], metavar="NAME")
    parser.add_argument("--strict-plugins", action="store_true", help="fail when a plugin fails to import")
    args = parser.parse_args(argv)
    show_plugin_warnings()
    registry = build_registry(get_plugin_manager(blocked=args.block_plugin, strict=args.strict_plugins))
    rows = [(p.kind, p.name, p.plugin, p.distribution) for p in [*registry.provided(), *registry.observers()]]
    widths = [max(len(r[i]) for r in rows + [("kind", "name", "plugin", "distribution")]) for i in range(4)]
    header = ("kind", "name", "plugin", "distribution")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    import warnings

    argv = list(sys.argv[1:] if argv is None else argv)
    from .errors import GkdError

    showwarning = warnings.showwarning
    try:
        if argv[:1] == ["plugins"]:
            return plugins_command(argv[1:])
        args = build_parser().parse_args(argv)
        return _search(args)
    except GkdError as exc:
        print(f"gkd-search: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("gkd-search: interrupted; the search run was marked KILLED", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        warnings.showwarning = showwarning


def _search(args: argparse.Namespace) -> int:
    import logging
    import os
    import warnings

    warnings.filterwarnings("ignore")
    show_plugin_warnings()
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # mlflow resets its logger on import
    for noisy in ("mlflow", "alembic", "ray", "optuna"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from .registry import build_registry, get_plugin_manager
    from .search import SearchConfig, run_search

    config = SearchConfig(
        dataset=args.dataset, data_root=args.data_root, budget_ms=args.budget_ms, trials=args.trials,
        epochs=args.epochs, max_concurrent=args.max_concurrent, cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial, seed=args.seed, space=args.space, methods=args.methods,
        families=args.families, tracking_uri=args.tracking_uri, experiment=args.experiment, device=args.device,
        latency_protocol=args.latency_protocol, latency_batch=args.latency_batch,
        latency_repeats=args.latency_repeats, latency_threads=args.latency_threads, teacher=args.teacher,
        teacher_checkpoint=args.teacher_checkpoint, cache_dir=args.cache_dir, ray_address=args.ray_address,
        mini_batch=args.mini_batch, batch_size=args.batch_size, fanout=args.fanout,
        max_full_batch_gb=args.max_full_batch_gb, inference_chunk=args.inference_chunk,
    )
    config.validate()
    registry = build_registry(get_plugin_manager(blocked=args.block_plugin, strict=args.strict_plugins))
    reporter = ConsoleReporter(quiet=args.quiet)
    summary = run_search(config, registry, reporter)
    print_summary(summary, reporter)
    return 0
