"""A real two-node Ray cluster on 127.0.0.1 (``ray start --head`` + ``ray start --address``, one
CPU each, one auth token, stopped through their pids): ``gkd-search --ray-address`` places trials
on both nodes, brings every trained student back through ``--storage-path``, times latency on
the workers (``--latency-on worker``), and says in one line what a cluster needs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from servers import LoopbackRayCluster

import gkd_search

pytestmark = pytest.mark.slow

TINY_SPACE = Path(__file__).parent / "spaces" / "tiny.yaml"
DATASET = "synthetic:nodes=600,edges=3000,features=16,classes=3"
TEACHER = "gcn:2:16:epochs=30:patience=30"
TRIALS = 4


def command(workdir: Path, cluster: LoopbackRayCluster, *extra: str) -> list[str]:
    return [sys.executable, "-m", "gkd_search", "--dataset", DATASET, "--teacher", TEACHER, "--space", str(TINY_SPACE),
            "--trials", str(TRIALS), "--epochs", "15", "--budget-ms", "100", "--ray-address", cluster.address,
            "--tracking-uri", f"sqlite:///{workdir}/mlflow.db", "--cache-dir", str(workdir / "cache"), *extra]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    ray_cluster = LoopbackRayCluster(tmp_path_factory.mktemp("ray-cluster"))
    try:
        ray_cluster.start()
        yield ray_cluster
    finally:
        ray_cluster.stop()


@pytest.fixture(scope="module")
def cluster_search(cluster, tmp_path_factory):
    """4 trials, at most 2 at once, on the 2-node cluster; the head's GCS, every raylet and
    worker on 127.0.0.1 (checked while the cluster runs)."""
    workdir = tmp_path_factory.mktemp("cluster-search")
    storage = workdir / "shared-storage"
    proc = subprocess.run(command(workdir, cluster, "--storage-path", str(storage), "--latency-on", "worker",
                                  "--max-concurrent", "2"),
                          cwd=workdir, env={**cluster.env, "PYTHONUNBUFFERED": "1"}, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    listening = cluster.listening_addresses()
    return proc, workdir, storage, listening


def runs(workdir: Path):
    client = MlflowClient(f"sqlite:///{workdir}/mlflow.db")
    found = client.search_runs([e.experiment_id for e in client.search_experiments()], max_results=100)
    parent = next(r for r in found if r.data.tags.get("gkd.role") == "search")
    trials = [r for r in found if r.data.tags.get("gkd.role") == "trial"]
    return parent, trials


def test_trials_ran_on_both_nodes_of_the_cluster(cluster_search):
    proc, workdir, _, _ = cluster_search
    parent, trials = runs(workdir)
    assert len(trials) == TRIALS and all(t.info.status == "FINISHED" for t in trials)
    nodes = {t.data.tags["gkd.ray_node"] for t in trials}
    assert len(nodes) == 2, [t.data.tags for t in trials]  # the gkd.ray_node tags differ
    assert {t.data.tags["gkd.ray_node_ip"] for t in trials} == {"127.0.0.1"}
    assert {t.data.tags["gkd.ray_resources"] for t in trials} == {"CPU=1"}
    assert parent.data.params["ray_nodes"] == "2" and parent.data.params["ray_address"].startswith("127.0.0.1:")
    assert parent.info.status == "FINISHED"


def test_every_ray_process_listens_on_loopback_only(cluster_search):
    *_, listening = cluster_search
    assert listening, "no listening socket found for the cluster's processes"
    assert listening <= {"127.0.0.1", "::ffff:127.0.0.1"}, listening


def test_latency_measured_on_the_worker_nodes_with_their_hardware_label(cluster_search):
    proc, workdir, _, _ = cluster_search
    parent, _ = runs(workdir)
    assert parent.data.params["latency_on"] == "worker"
    assert parent.data.params["hardware"].startswith("cpu:") and "(2 worker nodes)" in parent.data.params["hardware"]
    assert "2 worker nodes" in proc.stdout


def test_students_came_back_through_the_storage_path_and_load(cluster_search):
    """Every trained student reached the driver through --storage-path; the selected one is
    logged and loads; Ray's experiment folder is removed from the storage afterwards."""
    _, workdir, storage, _ = cluster_search
    parent, trials = runs(workdir)
    selected = parent.data.tags["gkd.selected_run_id"]
    student = gkd_search.load_student(selected, tracking_uri=f"sqlite:///{workdir}/mlflow.db")
    assert student.spec.family == next(t for t in trials if t.info.run_id == selected).data.params["family"]
    assert storage.is_dir() and not any(storage.iterdir())


def test_a_multi_node_cluster_without_storage_path_or_token_is_a_one_line_error(cluster, tmp_path):
    env = {**cluster.env, "PYTHONUNBUFFERED": "1"}
    no_token = {k: v for k, v in env.items() if k not in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")}
    no_token["RAY_AUTH_TOKEN"] = "0" * 32  # a wrong token (a missing one may be found in ~/.ray/auth_token)
    procs = [subprocess.Popen(command(tmp_path, cluster), cwd=tmp_path, env=e, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for e in (env, no_token)]
    (out, err), (out_token, err_token) = (p.communicate(timeout=300) for p in procs)
    assert procs[0].returncode == 2, out + err
    assert err.startswith("gkd-search: error: the Ray cluster at 127.0.0.1:") and "has 2 nodes: give --storage-path" in err
    assert len(err.strip().splitlines()) == 1
    assert procs[1].returncode == 2, out_token + err_token
    assert "RAY_AUTH_TOKEN" in err_token and len(err_token.strip().splitlines()) == 1, err_token
    assert not (tmp_path / "mlflow.db").exists()  # checked before anything was loaded, trained or logged
