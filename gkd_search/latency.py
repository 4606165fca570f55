"""Measured inference latency: the protocols, the measuring loop and the architecture-keyed cache.

Latency depends on the architecture, not on the weights, so it is measured on a freshly built
model before any training, one model at a time, and cached by architecture key + protocol +
device. Two protocols:

``request`` (default)
    One request predicts ``batch_size`` target nodes drawn with a fixed seed (from a
    heterogeneous graph's target type), through :func:`gkd_search.serving.answer`, the code
    path the registered MLflow model serves with. For a model that reads the graph the timed
    region includes extracting the targets' k-hop in-neighbourhood (k = the model's number of
    message-passing hops) from a CSR index built once, as a server holds it (with the edge
    weights of a normalising model, GCN's, computed once on the whole graph, so the answer
    equals the full-graph output), then running the model on that subgraph. With a ``fanout`` (``--fanout``, the one mini-batch training
    uses) each hop keeps at most that many sampled neighbours per node, as the model is served. For a graph-free model (MLP)
    it is gathering the targets' feature rows and running the model.
``full``
    Whole-graph inference: every node at once.

Each measurement runs ``warmup`` untimed requests, then ``repeats`` timed ones (at least 30) with
``time.perf_counter``, synchronising the device on GPU, with the thread count fixed; it reports
p50 and p95 in milliseconds.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Container, Iterable, Iterator, Optional

import torch
from torch import Tensor

from . import __version__
from .errors import UsageError
from .latency_stop import OverBudgetRule
from .serving import ServingGraph, answer, normalizer_name
from .types import GraphDataset, GraphModel, count_parameters, run_model

PROTOCOLS = ("request", "full")
MIN_REPEATS = 30
#: Bump when the measuring loop changes so old cache entries are not reused.
LATENCY_FORMAT = 2


@dataclass(frozen=True)
class LatencyProtocol:
    """How latency is measured; every field is logged with the numbers."""

    name: str = "request"
    batch_size: int = 1
    warmup: int = 10
    repeats: int = 50
    threads: int = 1
    device: str = "cpu"
    seed: int = 0
    #: neighbours sampled per hop in a ``request`` (empty: the full neighbourhood), the same
    #: fan-out the model is trained and served with (``--fanout``)
    fanout: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.name not in PROTOCOLS:
            raise UsageError(f"unknown latency protocol {self.name!r}; known: {', '.join(PROTOCOLS)}")
        if self.batch_size < 1:
            raise UsageError(f"--latency-batch must be >= 1, got {self.batch_size}")
        if self.repeats < MIN_REPEATS:
            raise UsageError(f"latency repeats must be >= {MIN_REPEATS}, got {self.repeats}")
        if self.threads < 1:
            raise UsageError(f"--latency-threads must be >= 1, got {self.threads}")

    def cache_key(self, hardware: Optional[str] = None) -> str:
        """Names the cache file; ``hardware`` (default: this machine's label) is where the
        numbers were measured (``--latency-on worker`` measures on another node)."""
        fields = {**asdict(self), "hardware": hardware or hardware_label(self.device), "torch": torch.__version__,
                  "format": LATENCY_FORMAT}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class LatencyMeasurement:
    """Milliseconds per request over ``repeats`` timed requests.

    ``complete`` is False when the measurement stopped early because the architecture was
    certainly over ``stopped_at_budget_ms`` (:mod:`gkd_search.latency_stop`): the numbers are
    then over the timed requests that ran, or over the warm-up's after the first when it stopped
    during the warm-up, ``repeats`` their count, ``min_ms`` the fastest of all; ``p50_ms`` is
    then over that budget too.
    """

    p50_ms: float
    p95_ms: float
    mean_ms: float
    min_ms: float
    repeats: int
    complete: bool = True
    stopped_at_budget_ms: Optional[float] = None

    @classmethod
    def from_samples(cls, seconds: list[float]) -> LatencyMeasurement:
        ms = sorted(s * 1000.0 for s in seconds)
        p95_index = min(len(ms) - 1, max(0, int(round(0.95 * (len(ms) - 1)))))
        return cls(statistics.median(ms), ms[p95_index], statistics.fmean(ms), ms[0], len(ms))


def hardware_label(device: str) -> str:
    """What the numbers were measured on, e.g. ``cpu:AMD EPYC 7B13`` or ``cuda:NVIDIA H100``."""
    if device.startswith("cuda") and torch.cuda.is_available():
        return f"cuda:{torch.cuda.get_device_name(torch.device(device))}"
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"cpu:{model}"


@contextlib.contextmanager
def fixed_threads(threads: int) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(threads)``, then restore."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def request_batches(num_nodes: int, protocol: LatencyProtocol, count: int, candidates: Optional[Tensor] = None) -> list[Tensor]:
    """The fixed, seeded target-node batches every architecture is timed on, drawn from
    ``candidates`` (a heterogeneous graph's target nodes) or from every node."""
    g = torch.Generator().manual_seed(protocol.seed)
    if candidates is None:
        return [torch.randint(0, num_nodes, (protocol.batch_size,), generator=g) for _ in range(count)]
    return [candidates[torch.randint(0, candidates.numel(), (protocol.batch_size,), generator=g)] for _ in range(count)]


class LatencyBench:
    """Holds one dataset on the measuring device and times models on it.

    A ``request`` is :func:`gkd_search.serving.answer` on a :class:`~gkd_search.serving.ServingGraph`
    (one per edge normalisation, built once), the code path the registered model serves with.
    """

    def __init__(self, dataset: GraphDataset, protocol: LatencyProtocol) -> None:
        self.protocol = protocol
        self.device = torch.device(protocol.device)
        data = dataset.data
        self.x = data.x.to(self.device)
        self.edge_index = data.edge_index.to(self.device)
        edge_type = getattr(data, "edge_type", None)
        self.edge_type = None if edge_type is None else edge_type.to(self.device)
        self.num_nodes = dataset.num_nodes
        self._graphs: dict[str, ServingGraph] = {}
        total = protocol.warmup + protocol.repeats
        self.batches = [b.to(self.device) for b in request_batches(self.num_nodes, protocol, total, dataset.target_nodes)]

    def serving_graph(self, model: GraphModel) -> ServingGraph:
        """The graph as a server of ``model`` holds it (built once per normalisation)."""
        key = f"{normalizer_name(getattr(model, 'normalize', None))}|{model.relational}"
        if key not in self._graphs:
            self._graphs[key] = ServingGraph.for_model(model, self.x, self.edge_index, self.edge_type)
        return self._graphs[key]

    def _request(self, model: GraphModel, num_hops: int, targets: Tensor,
                 generator: Optional[torch.Generator] = None) -> Tensor:
        if self.protocol.name == "full":
            return run_model(model, self.x, self.edge_index, self.edge_type).logits
        return answer(model, self.serving_graph(model), targets, num_hops, self.protocol.fanout, generator)

    def measure(self, model: GraphModel, num_hops: int, budget_ms: Optional[float] = None) -> LatencyMeasurement:
        """Time ``model`` (its weights do not matter) under this bench's protocol.

        With ``budget_ms``, stop as soon as the model is certainly over it
        (:class:`~gkd_search.latency_stop.OverBudgetRule`) and return what was measured with
        ``complete=False``.
        """
        model = model.to(self.device).eval()
        if self.protocol.name == "request":
            self.serving_graph(model)  # built once, outside the timed region, as a server holds it
        samples: list[float] = []
        every: list[float] = []
        rule = None if budget_ms is None else OverBudgetRule(budget_ms, self.protocol.repeats)
        generator = torch.Generator().manual_seed(self.protocol.seed)  # the same samples for every model
        with fixed_threads(self.protocol.threads), torch.inference_mode():
            for i, targets in enumerate(self.batches):
                _synchronize(self.device)
                start = time.perf_counter()
                self._request(model, num_hops, targets, generator)
                _synchronize(self.device)
                elapsed = time.perf_counter() - start
                every.append(elapsed)
                if i >= self.protocol.warmup:
                    samples.append(elapsed)
                if rule is not None and rule.over_budget(elapsed, timed=i >= self.protocol.warmup):
                    measured = LatencyMeasurement.from_samples(samples or every[1:] or every)
                    measured.complete, measured.stopped_at_budget_ms = False, float(budget_ms)
                    measured.min_ms = min(every) * 1000.0
                    return measured
        return LatencyMeasurement.from_samples(samples)


class LatencyCache:
    """A JSON file of measurements per (dataset, protocol, device, hardware, code version),
    written atomically; ``hardware`` defaults to this machine's label."""

    def __init__(self, cache_dir: Path, dataset: GraphDataset, protocol: LatencyProtocol,
                 hardware: Optional[str] = None) -> None:
        fingerprint = hashlib.sha256(json.dumps(dataset.fingerprint(), sort_keys=True).encode()).hexdigest()[:12]
        self.path = Path(cache_dir) / "latency" / f"{dataset.name}-{fingerprint}-{protocol.cache_key(hardware)}.json"
        self.entries: dict[str, dict] = {}
        if self.path.is_file():
            try:
                entries = json.loads(self.path.read_text())["entries"]
                if not isinstance(entries, dict):
                    raise ValueError("entries is not a mapping")
                self.entries = entries
            except (ValueError, KeyError, TypeError):
                self.entries = {}  # unreadable cache: measure again, overwrite on save

    def get(self, arch_key: str, budget_ms: Optional[float] = None) -> Optional[LatencyMeasurement]:
        """The cached measurement, or ``None``; an incomplete one (stopped over a budget) only
        when ``budget_ms`` is given and no larger than the budget it stopped at."""
        entry = self.entries.get(arch_key)
        if not isinstance(entry, dict) or not entry:
            return None
        try:
            measured = LatencyMeasurement(**entry)
        except TypeError:  # a malformed entry: measure again
            return None
        if not measured.complete:
            stopped = measured.stopped_at_budget_ms
            if budget_ms is None or stopped is None or budget_ms > stopped:
                return None  # it proves nothing about a larger budget: measure again
        return measured

    def put(self, arch_key: str, measurement: LatencyMeasurement) -> None:
        self.entries[arch_key] = asdict(measurement)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix="tmp-", suffix=".json", dir=self.path.parent)
        with os.fdopen(fd, "w") as handle:
            json.dump({"version": __version__, "entries": self.entries}, handle, indent=1, sort_keys=True)
        os.replace(tmp, self.path)


def measure_all(
    architectures: Iterable[tuple[str, Callable[[], GraphModel], int]],
    bench: LatencyBench,
    cache: LatencyCache,
    on_measured: Optional[Callable[[str, LatencyMeasurement, bool], None]] = None,
    budget_ms: Optional[float] = None,
    complete: Container[str] = (),
    before_timing: Optional[Callable[[], object]] = None,
) -> dict[str, LatencyMeasurement]:
    """Measure each ``(arch_key, build_model, num_hops)`` serially, reusing cached entries.

    Cached entries come first; the others are measured cheapest first (fewest hops, then fewest
    parameters), so the table fills fast and the progress shows it. With ``budget_ms``, a
    measurement stops once the architecture is certainly over it
    (:mod:`gkd_search.latency_stop`), except for the keys in ``complete`` (the teacher, whose
    p50 is reported). ``before_timing`` is called once before the first measurement. The cache
    file is saved after every new measurement, so an interrupted run keeps what it measured. The
    table keeps the order of ``architectures``.
    """
    jobs = list(architectures)
    table: dict[str, LatencyMeasurement] = {}
    pending: list[tuple[tuple[int, int], str, GraphModel, int]] = []
    for key, build, num_hops in jobs:
        cached = cache.get(key, None if key in complete else budget_ms)
        if cached is not None:
            table[key] = cached
            if on_measured:
                on_measured(key, cached, True)
            continue
        torch.manual_seed(0)
        model = build()  # built once: its size orders the queue, then it is timed
        pending.append(((num_hops, count_parameters(model)), key, model, num_hops))
    if pending and before_timing is not None:
        before_timing()
    pending.sort(key=lambda job: job[0])
    while pending:
        _, key, model, num_hops = pending.pop(0)
        measurement = bench.measure(model, num_hops, None if key in complete else budget_ms)
        del model  # the queue holds the others only
        cache.put(key, measurement)
        cache.save()
        table[key] = measurement
        if on_measured:
            on_measured(key, measurement, False)
    return {key: table[key] for key, _, _ in jobs}


def write_latency_table(table: dict[str, LatencyMeasurement], path: Path) -> Path:
    """The latency table as CSV (one row per architecture: ``p50_ms``, ..., ``latency_complete``),
    logged on the search run."""
    import csv

    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["architecture", "p50_ms", "p95_ms", "mean_ms", "min_ms", "requests", "latency_complete",
                         "stopped_at_budget_ms"])
        for key, m in table.items():
            writer.writerow([key, m.p50_ms, m.p95_ms, m.mean_ms, m.min_ms, m.repeats, str(m.complete).lower(),
                             "" if m.stopped_at_budget_ms is None else m.stopped_at_budget_ms])
    return path
