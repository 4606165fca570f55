"""Ray beyond one process: start a local Ray or join a cluster (``--ray-address``), keep a
one-machine Ray on 127.0.0.1, check what a multi-node cluster needs (``--storage-path``), say
where a trial ran, and run work pinned to one node (``--latency-on worker``).

Imported only when a search runs (Ray is a heavy import).

Loopback. Ray replaces a loopback node address (``--node-ip-address 127.0.0.1``,
``ray.init(_node_ip_address="127.0.0.1")``, an ``--address 127.0.0.1:PORT``) by the address of
the machine's outward interface unless ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``
(``ray._private.services.resolve_ip_for_localhost``), and its gRPC servers (GCS, raylet, object
manager) listen on every interface unless the node's address is exactly ``127.0.0.1``. So a
local Ray, and a driver joining a cluster at a loopback address, run with that setting
(:func:`keep_ray_on_loopback`); ``docs/scale-out.md`` gives the commands of a two-node loopback
cluster.

Authentication. Ray (2.52+) uses token authentication: every node and the driver must share
``RAY_AUTH_MODE=token`` and one ``RAY_AUTH_TOKEN`` (or ``RAY_AUTH_TOKEN_PATH``); a driver without
the cluster's token gets a one-line :class:`UsageError` saying so.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence
from urllib.parse import urlparse

from .errors import UsageError

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
#: the Ray setting that keeps "this node" at 127.0.0.1 (see the module docstring)
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
AUTH_ENV = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


def split_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` -> ``(host, port)``; a :class:`UsageError` for anything else."""
    host, sep, port = address.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--ray-address {address!r} is not HOST:PORT, e.g. 127.0.0.1:6379 (the address "
                         "`ray start --head` printed)")
    return host, int(port)


def is_loopback(host: str) -> bool:
    return host in LOOPBACK_HOSTS or host.startswith("127.")


def check_storage_path(storage_path: str) -> None:
    """``--storage-path``: an absolute folder, or a URI whose file system ``pyarrow`` knows."""
    scheme = urlparse(storage_path).scheme
    if not scheme:
        if not Path(storage_path).expanduser().is_absolute():
            raise UsageError(f"--storage-path {storage_path!r} must be an absolute folder (shared by every node) "
                             "or a URI such as s3://bucket/path")
        from .loading import check_writable_folder

        check_writable_folder(storage_path, "--storage-path")
        return
    import pyarrow.fs

    try:
        pyarrow.fs.FileSystem.from_uri(storage_path)
    except Exception as exc:  # pyarrow raises ArrowInvalid, ArrowNotImplementedError, OSError
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"--storage-path {storage_path!r} is not a file system pyarrow can open ({first})") from None


def keep_ray_on_loopback() -> None:
    """Make Ray resolve this machine to 127.0.0.1 in this process and in every process Ray
    starts from it, so a local Ray listens on 127.0.0.1 only (see the module docstring)."""
    os.environ[LOOPBACK_ENV] = "0"
    import ray._private.ray_constants as ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False  # read at call time by services.get_node_ip_address


def _quiet_ray_environment() -> None:
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def start_or_join(ray_address: Optional[str], device: str) -> bool:
    """Start Ray in-process on 127.0.0.1, or join the cluster at ``ray_address``; True if Ray
    was started or joined here (the caller shuts it down), False if it was already running.

    Raises:
        UsageError: nothing listens at ``ray_address``, or the cluster wants a token this
            process does not have.
    """
    _quiet_ray_environment()
    import ray

    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = dict(include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    if ray_address is None:
        import torch

        keep_ray_on_loopback()
        gpus = torch.cuda.device_count() if device.startswith("cuda") else 0
        ray.init(num_cpus=os.cpu_count() or 1, num_gpus=gpus, _node_ip_address="127.0.0.1", **kwargs)
        return True
    host, port = split_address(ray_address)
    try:
        socket.create_connection((host, port), timeout=3).close()
    except OSError as exc:
        raise UsageError(f"no Ray cluster answers at --ray-address {ray_address} ({exc.strerror or exc}); start one "
                         f"with `ray start --head --port {port}` or fix the address") from None
    if is_loopback(host):
        keep_ray_on_loopback()
    _check_token(f"{host}:{port}", ray_address)
    try:
        ray.init(address=f"{host}:{port}", **kwargs)
    except Exception as exc:
        first = f"{type(exc).__name__}: {exc}".strip().splitlines()[0][:200]
        raise UsageError(f"cannot join the Ray cluster at {ray_address}: {first}") from None
    return True


def _check_token(address: str, given: str) -> None:
    """Ask the cluster's GCS whether this process's token is accepted: a wrong or missing token
    fails in a second here (``ray.init`` would retry for tens of seconds, logging each try)."""
    from ray._raylet import GcsClient
    from ray.exceptions import AuthenticationError

    with _native_stderr_to_file():
        try:
            GcsClient(address=address)
        except AuthenticationError:
            raise UsageError(
                f"the Ray cluster at {given} refused this driver's authentication token: export RAY_AUTH_MODE=token "
                "and the cluster's RAY_AUTH_TOKEN (or RAY_AUTH_TOKEN_PATH) as on its nodes (docs/scale-out.md)"
            ) from None
        except Exception as exc:
            first = f"{type(exc).__name__}: {exc}".strip().splitlines()[0][:200]
            raise UsageError(f"cannot join the Ray cluster at {given}: {first}") from None


@contextlib.contextmanager
def _native_stderr_to_file():
    """Ray's C++ client logs each refused attempt on file descriptor 2; keep that out of the
    one-line error."""
    import sys
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


@dataclass
class RayNode:
    node_id: str
    ip: str
    resources: dict[str, float] = field(default_factory=dict)


def alive_nodes() -> list[RayNode]:
    """The cluster's live nodes that offer CPUs."""
    import ray

    return [RayNode(n["NodeID"], n.get("NodeManagerAddress", ""), dict(n.get("Resources", {})))
            for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) > 0]


def check_cluster(ray_address: Optional[str], storage_path: Optional[str]) -> list[RayNode]:
    """The live nodes; a :class:`UsageError` when there are several and no ``--storage-path``
    (a trial's checkpoint, the trained student, must reach the driver from any node)."""
    nodes = alive_nodes()
    if len(nodes) > 1 and not storage_path:
        raise UsageError(
            f"the Ray cluster at {ray_address} has {len(nodes)} nodes: give --storage-path, a folder every node "
            "shares (NFS) or a URI such as s3://bucket/gkd, so trained students reach the driver")
    return nodes


def where_am_i() -> dict[str, Any]:
    """Inside a Ray task or trial: the node, its address, the host, the process and the
    resources Ray assigned (``gkd.ray_node``, ``gkd.ray_node_ip``, ``gkd.ray_resources``)."""
    import ray

    context = ray.get_runtime_context()
    resources = {k: round(float(v), 4) for k, v in context.get_assigned_resources().items()}
    try:
        gpu_ids = [str(g) for g in ray.get_gpu_ids()]
    except Exception:  # outside a worker
        gpu_ids = []
    return {"node_id": context.get_node_id(), "node_ip": ray.util.get_node_ip_address(), "hostname": socket.gethostname(),
            "pid": os.getpid(), "resources": resources, "gpu_ids": gpu_ids}


def trial_device(device: str) -> str:
    """The device a trial uses: with GPUs assigned by Ray (``CUDA_VISIBLE_DEVICES`` holds only
    them) the first visible one, whatever index ``--device cuda:N`` named on the driver."""
    if not device.startswith("cuda"):
        return device
    import ray

    try:
        assigned = ray.get_gpu_ids()
    except Exception:
        assigned = []
    return "cuda:0" if assigned else device


def on_node(node_id: str) -> Any:
    """A scheduling strategy that runs a task on ``node_id`` and nowhere else."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return NodeAffinitySchedulingStrategy(node_id=node_id, soft=False)


def _hardware_of_node(device: str) -> str:
    from .latency import hardware_label

    return hardware_label(device)


def _measure_on_node(payload) -> dict[str, Any]:
    """A Ray task: time ``jobs`` on this node (the dataset and the jobs arrive in one pickle)."""
    from .latency import LatencyBench, hardware_label

    dataset, jobs, protocol = payload
    bench = LatencyBench(dataset, protocol)
    import torch

    table = {}
    for key, build, num_hops in jobs:
        torch.manual_seed(0)
        table[key] = bench.measure(build(), num_hops)
    return {"hardware": hardware_label(protocol.device), "node": where_am_i(), "table": table}


@dataclass
class NodeLatency:
    """The latency table of one node type, measured on one of its nodes."""

    hardware: str
    node_ids: list[str]
    measured_on: Optional[str]
    table: dict[str, Any]
    #: the job keys timed now (the others came from the cache)
    measured: list[str]


def measure_on_workers(jobs: Sequence[tuple[str, Callable, int]], dataset, protocol, cache_dir: Path,
                       cpus: float = 1.0) -> list[NodeLatency]:
    """``--latency-on worker``: group the cluster's nodes by hardware label (asked of each node
    in a pinned task), then time every job once per label, in a Ray task pinned to the first
    node of that label; tables are cached on the driver per label like driver measurements."""
    import ray

    from .latency import LatencyCache

    nodes = alive_nodes()
    probe = ray.remote(num_cpus=0)(_hardware_of_node)
    labels = ray.get([probe.options(scheduling_strategy=on_node(n.node_id)).remote(protocol.device) for n in nodes])
    groups: dict[str, list[str]] = {}
    for node, label in zip(nodes, labels):
        groups.setdefault(label, []).append(node.node_id)
    measure = ray.remote(num_cpus=cpus)(_measure_on_node)
    out = []
    for label, node_ids in groups.items():
        cache = LatencyCache(cache_dir, dataset, protocol, hardware=label)
        missing = [job for job in jobs if cache.get(job[0]) is None]
        measured_on = None
        if missing:
            answer = ray.get(measure.options(scheduling_strategy=on_node(node_ids[0])).remote((dataset, missing, protocol)))
            measured_on = answer["node"]["node_id"]
            for key, measurement in answer["table"].items():
                cache.put(key, measurement)
            cache.save()
        table = {job[0]: cache.get(job[0]) for job in jobs}
        out.append(NodeLatency(label, node_ids, measured_on, table, [job[0] for job in missing]))
    return out
