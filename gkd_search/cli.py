"""``gkd-search``: argument parsing, progress and the final table; no ML logic here.

``gkd-search [OPTIONS]`` runs a search; ``gkd-search plugins`` lists what every plugin provides.
User mistakes print one line on stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

from .pruning import GRACE_EPOCHS

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Each default shown once: ``(default: X)`` is added only where the help text does not
    already say what the default is, and never for ``None`` or switches."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default is None or action.default is argparse.SUPPRESS or action.nargs == 0:
            return text
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, no usage block
        self.exit(EXIT_USAGE, f"gkd-search: error: {message} (see gkd-search --help)\n")


def _csv(text: str) -> list[str]:
    return [item.strip().lower() for item in text.split(",") if item.strip()]


#: the installed distributions ``--version`` names besides gkd-search (what a bug report needs)
VERSION_DEPENDENCIES = ("torch", "torch_geometric", "ray", "optuna", "mlflow")


def version_text() -> str:
    """``gkd-search 0.1.0 (torch 2.13.0, torch_geometric 2.7.0, ...)``, from the installed
    distributions' metadata (nothing heavy is imported)."""
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    return f"gkd-search {installed('gkd-search')} ({', '.join(f'{d} {installed(d)}' for d in VERSION_DEPENDENCIES)})"


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="gkd-search",
        description="Find the best distilled GNN student within a latency budget. "
        "'gkd-search plugins' lists methods, families, losses and datasets.",
        formatter_class=_HelpFormatter,
    )
    p.add_argument("--version", action="version", version=version_text(),
                   help="print the versions of gkd-search and of the libraries it runs on, and exit")
    g = p.add_argument_group("search")
    g.add_argument("--dataset", default="cora", help="dataset name, e.g. cora, pubmed, photo, synthetic:nodes=5000,edges=20000")
    g.add_argument("--data-root", default=None, help="read-only folder with DATASET/raw/ files (default: $GKD_DATA; else download)")
    g.add_argument("--budget-ms", type=float, default=10.0, help="latency budget: p50 per request, milliseconds")
    g.add_argument("--trials", type=int, default=30, help="number of trials")
    g.add_argument("--epochs", type=int, default=None, help="max training epochs per trial (default: the space's, 200)")
    g.add_argument("--seed", type=int, default=0, help="seed of the sampler, the teacher, the splits and every student")
    g.add_argument("--space", default="default", help="search-space YAML file, or a name in search_spaces/")
    g.add_argument("--methods", type=_csv, default=None, help="comma-separated methods to search (default: the space's)")
    g.add_argument("--families", type=_csv, default=None, help="comma-separated student families (default: the space's)")
    g.add_argument("--teacher", default=None,
                   help="FAMILY:LAYERS:HIDDEN[:key=value], or auto: the best of six standard teachers by validation "
                        "(default: the space's, else per dataset, else auto)")
    g.add_argument("--teacher-checkpoint", default=None, help="a teacher checkpoint file instead of training one")
    g.add_argument("--metric", default=None, choices=["accuracy", "macro-f1", "roc-auc"],
                   help="validation score the search maximises, selects and reports (default: the dataset's own: "
                        "OGB's evaluator, else accuracy); roc-auc: binary, or one-vs-rest macro average")
    g.add_argument("--pruner", default="asha", choices=["asha", "none"],
                   help="asha: stop hopeless trials early (ASHA's rungs, trials compared within latency brackets); "
                        "none: every trial trains to its epoch limit or patience")
    g.add_argument("--asha-grace-epochs", type=int, default=GRACE_EPOCHS, metavar="N",
                   help="epochs a trial trains before --pruner asha may stop it; rungs at N, 3N, 9N, ... below "
                        "the epoch limit (default %(default)s; see docs/benchmarks.md#rung-fidelity)")
    g.add_argument("--label-shift", default="adapt", choices=["adapt", "off"],
                   help="adapt (accuracy only): calibrate the teacher's outputs on the validation nodes and move "
                        "them to the class shares estimated on the unlabelled nodes before distilling (a split "
                        "with the same number of labels per class otherwise teaches the students a balanced "
                        "class mix the graph does not have); off: the teacher's outputs as trained")
    g.add_argument("--select", default="one-se", choices=["one-se", "best"],
                   help="one-se: the smallest student within one standard error of the best validation score; "
                        "best: the best validation score")
    r = p.add_argument_group("resources")
    r.add_argument("--device", default="cpu", help="cpu or cuda[:N], for trials and latency")
    r.add_argument("--max-concurrent", type=int, default=None, help="trials at once (default: CPUs / cpus-per-trial)")
    r.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs Ray gives each trial")
    r.add_argument("--gpus-per-trial", type=float, default=0.0, help="GPUs (fractions allowed) Ray gives each trial")
    r.add_argument("--ray-address", default=None, metavar="HOST:PORT",
                   help="join the Ray cluster `ray start --head` started (with its RAY_AUTH_TOKEN exported)")
    r.add_argument("--storage-path", default=None,
                   help="where Ray keeps trial checkpoints: a folder every node shares, or a URI (s3://...); "
                        "needed on a multi-node cluster")
    r.add_argument("--latency-on", default="driver", choices=["driver", "worker"],
                   help="time architectures here (driver), or once per node type of the Ray cluster (worker)")
    r.add_argument("--trial-timeout", type=float, default=None, metavar="SECONDS",
                   help="stop a trial after this many seconds and record it failed (timeout)")
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
    lat.add_argument("--latency-repeats", type=int, default=50, help="timed requests per architecture (at least 30)")
    lat.add_argument("--latency-threads", type=int, default=1, help="torch threads while timing")
    t = p.add_argument_group("tracking and plugins")
    t.add_argument("--tracking-uri", default=None, help="MLflow URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlruns/mlflow.db)")
    t.add_argument("--experiment", default="gkd-search", help="MLflow experiment name")
    t.add_argument("--register-model", default=None, metavar="NAME",
                   help="MLflow registered model the selected student becomes a new version of (default: gkd-DATASET)")
    t.add_argument("--no-register-model", action="store_true",
                   help="log the selected student as an MLflow Model but do not register it")
    t.add_argument("--block-plugin", action="append", default=[], metavar="NAME", help="do not load this plugin (repeatable)")
    t.add_argument("--strict-plugins", action="store_true", help="fail when a plugin fails to import")
    t.add_argument("-q", "--quiet", action="store_true", help="print only the final table")
    s = p.add_argument_group("resume")
    s.add_argument("--resume", default=None, metavar="SEARCH_RUN_ID",
                   help="continue an interrupted search with the options it was started with (give --tracking-uri "
                        "if it was not the default)")
    s.add_argument("--fresh", action="store_true",
                   help="start a new search even if one with the same options was interrupted and could be resumed")
    return p


#: what may be given with --resume (where and how fast it runs, not what it finds)
RESUME_OPTIONS = ("resume", "tracking_uri", "cache_dir", "ray_address", "storage_path", "max_concurrent",
                  "cpus_per_trial", "gpus_per_trial", "trial_timeout", "quiet", "block_plugin", "strict_plugins")


class LiveProgress:
    """A tqdm bar for one phase, redrawn twice a second even while nothing advances (a dataset
    being processed, an epoch of a slow teacher), so the terminal never looks stuck."""

    def __init__(self, label: str, total: Optional[int], unit: str, stream) -> None:
        import threading

        from tqdm import tqdm

        try:  # a terminal that reports no size (some ptys) gets a fixed width
            sized = os.get_terminal_size(stream.fileno()).columns > 0
        except (OSError, AttributeError, ValueError):
            sized = False
        self.bar = tqdm(total=total, desc=label, unit=f" {unit}" if unit else "it", file=stream, leave=False,
                        dynamic_ncols=sized, ncols=None if sized else 100,
                        bar_format=None if total else "{desc}: {elapsed}")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._refresh, daemon=True)
        self._thread.start()

    def _refresh(self) -> None:
        while not self._stop.wait(0.5):
            self.bar.refresh()

    def __getstate__(self) -> dict:
        """Ray Tune pickles its callbacks (ours record trials through this bar) into the experiment
        state; a copy of the bar is inert."""
        return {}

    def __setstate__(self, state: dict) -> None:
        self.bar = None

    def update(self, advance: int = 1, **status) -> None:
        if self.bar is None:
            return
        if status:
            self.bar.set_postfix({k: (f"{v:.3f}" if isinstance(v, float) else v) for k, v in status.items()},
                                 refresh=False)
        self.bar.update(advance)

    def close(self) -> None:
        if self.bar is None:
            return
        self._stop.set()
        self._thread.join()
        self.bar.refresh()  # the final state is drawn once even when the phase ended within tqdm's mininterval
        self.bar.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ConsoleReporter:
    """Prints progress lines and the final table; on a terminal (and without ``--quiet``) a live
    progress bar for each long phase: dataset loading, teacher epochs with the validation score,
    the latency table, the trials."""

    def __init__(self, quiet: bool = False, stream=None, live: Optional[bool] = None) -> None:
        self.quiet = quiet
        self.stream = stream or sys.stdout
        interactive = bool(getattr(self.stream, "isatty", lambda: False)())
        self.live = (interactive if live is None else live) and not quiet

    def _print(self, text: str) -> None:
        if self.live:
            from tqdm import tqdm

            tqdm.write(text, file=self.stream)
            self.stream.flush()
        else:
            print(text, file=self.stream, flush=True)

    def message(self, text: str) -> None:
        if not self.quiet:
            self._print(text)

    def progress(self, label: str, total: Optional[int] = None, unit: str = ""):
        from .search import Progress

        return LiveProgress(label, total, unit, self.stream) if self.live else Progress()

    def trial(self, result, done, total, feasible, best) -> None:
        if self.quiet:
            return
        arch = f"{result.spec.architecture_key()} {result.spec.method}"
        if result.status == "ok":
            what = f"val {_val(result):.3f} test {_test(result):.3f} p50 {result.latency_ms_p50:.2f} ms"
            if result.degenerate:
                what += " COLLAPSED"
        elif result.status == "over_budget":
            what = f"p50 {result.latency_ms_p50:.2f} ms over budget, not trained"
        elif result.status == "pruned":
            last = "-" if result.last_val_score is None else f"{result.last_val_score:.3f}"
            what = f"pruned at epoch {result.epochs_run} (best val {last} then)"
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
        key = (r.spec.architecture_key(), r.spec.method, _val(r), _test(r), r.latency_ms_p50, r.params)
        groups.setdefault(key, []).append(r)
    return [(next((r for r in g if r.selected), g[0]), len(g)) for g in groups.values()]


def _val(r) -> float:
    """A trial's or the teacher's validation score (accuracy where no score was recorded)."""
    return r.val_score if r.val_score is not None else r.val_acc


def _test(r) -> float:
    return r.test_score if r.test_score is not None else r.test_acc


def _ratio(numerator, denominator) -> str:
    return f"{numerator / denominator:.1f}x" if numerator and denominator else "-"


def print_summary(summary, reporter: ConsoleReporter) -> None:
    out = reporter._print
    t = summary.teacher
    t_p50 = summary.teacher_latency_ms_p50
    metric = summary.metric
    out("")
    out(f"Pareto front ({len(summary.pareto)} of {len(summary.results)} trials; val {metric} up, p50 down, params down; "
        f"val/test: {metric}):")
    out(f"  {'':1} {'architecture':<24} {'method':<8} {'val':>6} {'test':>6} {'p50 ms':>8} {'params':>9} "
        f"{'smaller':>8} {'faster':>7}")
    not_smaller = False
    for r, count in _collapse_identical(sorted(summary.pareto, key=lambda r: r.latency_ms_p50)):
        mark = "*" if r.selected else ("b" if summary.best is r and not r.selected else " ")
        repeat = f"  (x{count} identical trials)" if count > 1 else ""
        flags = ("  ! not smaller than the teacher" if r.params >= t.num_params else "") + (
            "  ~ collapsed" if r.degenerate else "")
        not_smaller |= r.params >= t.num_params
        out(f"  {mark} {r.spec.architecture_key():<24} {r.spec.method:<8} {_val(r):>6.3f} {_test(r):>6.3f} "
            f"{r.latency_ms_p50:>8.2f} {r.params:>9,} {_ratio(t.num_params, r.params):>8} "
            f"{_ratio(t_p50, r.latency_ms_p50):>7}{repeat}{flags}")
    teacher_p50 = f", p50 {t_p50:.2f} ms" if t_p50 is not None else ""
    out(f"  teacher {t.spec}: val {_val(t):.3f} test {_test(t):.3f}{teacher_p50}, {t.num_params:,} parameters")
    collapsed = [r for r in summary.results if r.degenerate]
    if collapsed:
        names = ", ".join(f"{r.spec.architecture_key()} {r.spec.method}" for r in collapsed[:5])
        out(f"  {len(collapsed)} of {len(summary.results)} trials collapsed (val below the chance level, or 20 points "
            f"below their architecture without distillation; MLflow tag gkd.degenerate): {names}"
            f"{', ...' if len(collapsed) > 5 else ''}")
    s = summary.selected
    if s is None:
        out(f"No trial finished within {summary.budget_ms:g} ms: nothing selected.")
    else:
        b = summary.best
        if summary.select == "one-se":
            rule = (f"--select one-se: the fewest parameters among trials within one standard error "
                    f"({summary.tolerance:.3f}) of the best val {metric}")
        else:
            rule = f"--select best: the best val {metric}"
        out(f"Selected (*, {rule}, p50 within {summary.budget_ms:g} ms):")
        out(f"  {s.spec.architecture_key()} {s.spec.method}: val {_val(s):.3f}, test {_test(s):.3f}, "
            f"p50 {s.latency_ms_p50:.2f} ms, {s.params:,} parameters: {_ratio(t.num_params, s.params)} smaller and "
            f"{_ratio(t_p50, s.latency_ms_p50)} faster than the teacher")
        if b is not None and b is not s:
            out(f"Best-scoring trial (b): {b.spec.architecture_key()} {b.spec.method}: val {_val(b):.3f}, "
                f"test {_test(b):.3f}, p50 {b.latency_ms_p50:.2f} ms, {b.params:,} parameters "
                f"({_ratio(t.num_params, b.params)} smaller)")
        elif b is s:
            out("  it is also the best-scoring trial")
        if t_p50 is not None and t_p50 <= summary.budget_ms and _val(t) > _val(s):
            out(f"  note: the teacher fits the budget too (p50 {t_p50:.2f} ms) and scores higher on validation "
                f"({_val(t):.3f} > {_val(s):.3f}): deploy the student for its size or speed, else the teacher")
        out(f"  run {s.run_id}; load it with gkd_search.load_student({s.run_id!r})")
        if summary.model_uri:
            where = "registered as" if summary.registered_version else "logged as"
            out(f"  {where} {summary.model_uri}; serve it with: mlflow models serve -m {summary.model_uri} "
                f"--env-manager local --host 127.0.0.1 --port 5001")
    out(f"Search run {summary.parent_run_id} finished in {summary.seconds:.0f} s. Compare runs:")
    uri = summary.tracking_uri
    from .mlflow_ui import trials_url

    if uri.startswith("http"):
        server = uri
    else:
        out(f"  mlflow ui --backend-store-uri {uri}")
        server = "http://127.0.0.1:5000"
    if summary.experiment_id is not None:
        out(f"  open {trials_url(server, summary.experiment_id)}")
    else:
        out(f"  open {server}")


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
        return _search(args, argv)
    except GkdError as exc:
        print(f"gkd-search: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as exc:
        print("gkd-search: interrupted; the search run was marked KILLED", file=sys.stderr)
        command = getattr(exc, "resume_command", None)
        if command:
            print(f"gkd-search: continue it with: {command}", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        warnings.showwarning = showwarning


def _given_options(argv: Sequence[str]) -> set[str]:
    """The options written on the command line (whatever their value)."""
    parser = build_parser()
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    return set(vars(parser.parse_args(list(argv))))


def _search(args: argparse.Namespace, argv: Sequence[str] = ()) -> int:
    import logging
    import os
    import warnings

    warnings.filterwarnings("ignore")
    show_plugin_warnings()
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # mlflow resets its logger on import
    for noisy in ("mlflow", "alembic", "ray", "optuna"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from .errors import UsageError
    from .registry import build_registry, get_plugin_manager
    from .search import SearchConfig, run_search

    if args.resume:
        return _resume(args, _given_options(argv))
    config = SearchConfig(
        dataset=args.dataset, data_root=args.data_root, budget_ms=args.budget_ms, trials=args.trials,
        epochs=args.epochs, max_concurrent=args.max_concurrent, cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial, seed=args.seed, space=args.space, methods=args.methods,
        families=args.families, tracking_uri=args.tracking_uri, experiment=args.experiment, device=args.device,
        latency_protocol=args.latency_protocol, latency_batch=args.latency_batch,
        latency_repeats=args.latency_repeats, latency_threads=args.latency_threads, teacher=args.teacher,
        teacher_checkpoint=args.teacher_checkpoint, cache_dir=args.cache_dir, ray_address=args.ray_address,
        mini_batch=args.mini_batch, batch_size=args.batch_size, fanout=args.fanout,
        max_full_batch_gb=args.max_full_batch_gb, inference_chunk=args.inference_chunk, metric=args.metric,
        select=args.select, register_model=args.register_model, register=not args.no_register_model,
        storage_path=args.storage_path, latency_on=args.latency_on, trial_timeout=args.trial_timeout,
        pruner=args.pruner, asha_grace_epochs=args.asha_grace_epochs, label_shift=args.label_shift,
    )
    if args.register_model and args.no_register_model:
        raise UsageError("give either --register-model or --no-register-model, not both")
    config.validate()
    registry = build_registry(get_plugin_manager(blocked=args.block_plugin, strict=args.strict_plugins))
    reporter = ConsoleReporter(quiet=args.quiet)
    summary = run_search(config, registry, reporter, fresh=args.fresh)
    print_summary(summary, reporter)
    return 0


def _resume(args: argparse.Namespace, given: set[str]) -> int:
    """``--resume ID``: the options come from the search run; only those of
    :data:`RESUME_OPTIONS` may be given again."""
    from .errors import UsageError
    from .registry import build_registry, get_plugin_manager
    from .resume import load_resume_point
    from .search import run_search

    wrong = sorted(given - set(RESUME_OPTIONS))
    if wrong:
        flags = ", ".join("--" + k.replace("_", "-") for k in wrong)
        raise UsageError(f"--resume takes the search's options from its run; do not give {flags} with it (only "
                         "--tracking-uri, --cache-dir, --ray-address, --storage-path, --max-concurrent, "
                         "--cpus-per-trial, --gpus-per-trial, --trial-timeout, -q)")
    overrides = {k: getattr(args, k) for k in ("ray_address", "storage_path", "max_concurrent", "cpus_per_trial",
                                               "gpus_per_trial", "trial_timeout") if k in given}
    point = load_resume_point(args.resume, args.tracking_uri, args.cache_dir, overrides)
    registry = build_registry(get_plugin_manager(blocked=args.block_plugin, strict=args.strict_plugins))
    reporter = ConsoleReporter(quiet=args.quiet)
    summary = run_search(point.config, registry, reporter, resume=point)
    print_summary(summary, reporter)
    return 0
