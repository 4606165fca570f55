"""Real servers for the scale-out tests, each on 127.0.0.1 and a free port, each stopped through
its process id: PostgreSQL (Debian's binaries), ``mlflow server`` on it, and a two-node Ray
cluster (``ray start --head`` + a second ``ray start --address``).

The exact commands are those of ``docs/scale-out.md``.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Optional

import pytest

HERE = Path(__file__).resolve().parent
UNPRIVILEGED_USER = "nobody"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, process: Optional[subprocess.Popen] = None, log: Optional[Path] = None):
    deadline = time.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if process is not None and process.poll() is not None:
            tail = log.read_text()[-3000:] if log is not None and log.exists() else ""
            raise RuntimeError(f"{what}: the process exited with {process.returncode}\n{tail}")
        if time.time() > deadline:
            tail = log.read_text()[-3000:] if log is not None and log.exists() else ""
            raise RuntimeError(f"{what}: not ready within {timeout:.0f} s\n{tail}")
        time.sleep(0.3)


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def stop_group(process: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
    """Stop ``process`` (started with ``start_new_session=True``) and what it started, by its pid."""
    if process.poll() is None:
        os.kill(process.pid, sig)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
    try:  # anything of its session left behind
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if process.poll() is None:
        process.wait(timeout=10)


# ---------------------------------------------------------------------------------- PostgreSQL


def postgres_bin() -> Optional[Path]:
    """The folder with Debian's ``initdb`` and ``pg_ctl`` (``apt-get install postgresql``)."""
    for found in sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True):
        return Path(found).parent
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _as_owner(owner: Optional[str]) -> list[str]:
    """initdb and postgres refuse to run as root: run them as ``owner`` (``setpriv``)."""
    if owner is None:
        return []
    entry = pwd.getpwnam(owner)
    return ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups"]


class Postgres:
    """A throw-away PostgreSQL cluster: ``initdb`` into a temporary folder, ``pg_ctl start`` on
    127.0.0.1 and a free port; as root both run as the unprivileged user ``nobody``, which owns
    the folder. :meth:`stop` signals the postmaster's pid (fast shutdown)."""

    def __init__(self) -> None:
        self.bin = postgres_bin()
        if self.bin is None:
            pytest.skip("PostgreSQL's binaries (initdb, pg_ctl) are not installed and could not be installed: "
                        "apt-get install -y postgresql (.ci/run does it)")
        self.owner = UNPRIVILEGED_USER if os.geteuid() == 0 else None
        if self.owner is not None and shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: cannot run initdb as an unprivileged user")
        self.root = Path(tempfile.mkdtemp(prefix="gkd-pg-"))
        self.port = free_port()
        self.data = self.root / "data"
        if self.owner is not None:
            entry = pwd.getpwnam(self.owner)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        env = {**os.environ, "HOME": str(self.root), "LC_ALL": "C"}
        subprocess.run([*_as_owner(self.owner), str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres",
                        "--auth=trust", "-E", "UTF8", "--no-sync"], check=True, capture_output=True, env=env)
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off"
        subprocess.run([*_as_owner(self.owner), str(self.bin / "pg_ctl"), "-D", str(self.data), "-l",
                        str(self.root / "postgres.log"), "-o", options, "-w", "-t", "60", "start"],
                       check=True, capture_output=True, env=env)
        self.pid = int((self.data / "postmaster.pid").read_text().split()[0])
        self.create_database("mlflow")

    def url(self, database: str = "mlflow") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')

    def stop(self) -> None:
        try:
            os.kill(self.pid, signal.SIGINT)  # fast shutdown
            wait_for(lambda: not Path(f"/proc/{self.pid}").exists(), 60, "postgres stop")
        except ProcessLookupError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)


# ---------------------------------------------------------------------------------- mlflow server


class MlflowServer:
    """``mlflow server`` on 127.0.0.1 with a PostgreSQL backend store and proxied artifacts
    (``--artifacts-destination``); its background job runner is off
    (``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false``), nothing here uses it."""

    def __init__(self, backend_uri: str, artifacts: Path, workdir: Path) -> None:
        self.backend_uri, self.artifacts, self.workdir = backend_uri, artifacts, workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: Optional[subprocess.Popen] = None
        self.log = workdir / "mlflow-server.log"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", self.backend_uri,
                "--artifacts-destination", str(self.artifacts), "--host", "127.0.0.1", "--port", str(self.port),
                "--workers", "1"]

    def start(self, timeout: float = 240) -> None:
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        with open(self.log, "a") as log:
            self.process = subprocess.Popen(self.command(), cwd=self.workdir, env=env, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(self.healthy, timeout, "mlflow server", self.process, self.log)

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            stop_group(self.process)
            self.process = None
        wait_for(lambda: not port_open(self.port), 60, "mlflow server port released")


# ---------------------------------------------------------------------------------- Ray cluster


class LoopbackRayCluster:
    """Two Ray nodes on this machine, each with 1 CPU, every process on 127.0.0.1, sharing one
    token: ``ray start --head`` (with ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``) and
    ``python tests/ray_loopback.py start --address`` (see that file), both with ``--block`` so
    that signalling their pid stops each node and everything it started. Each node runs in a
    session of its own (``own_sessions``), so that a test can find and stop all its processes;
    a benchmark comparing wall times keeps them in its own session (Linux schedules CPU time
    per session: autogroups)."""

    def __init__(self, workdir: Path, own_sessions: bool = True) -> None:
        self.workdir = workdir
        self.own_sessions = own_sessions
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.token = secrets.token_hex(16)
        self.temp_dir = Path(tempfile.mkdtemp(prefix="gkd-ray-"))
        self.env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token,
                    "RAY_USAGE_STATS_ENABLED": "0"}
        self.env.pop("RAY_AUTH_TOKEN_PATH", None)
        # a local Ray started earlier in this process (gkd_search.cluster.keep_ray_on_loopback) set
        # it to 0, with which `ray start --address` refuses to start a second node
        self.env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
        self.head: Optional[subprocess.Popen] = None
        self.worker: Optional[subprocess.Popen] = None

    def head_command(self) -> list[str]:
        return [str(Path(sys.executable).with_name("ray")), "start", "--head", "--node-ip-address", "127.0.0.1",
                "--port", str(self.port), "--num-cpus", "1", "--include-dashboard", "false", "--disable-usage-stats",
                "--temp-dir", str(self.temp_dir), "--block"]

    def worker_command(self) -> list[str]:
        return [sys.executable, str(HERE / "ray_loopback.py"), "start", "--address", self.address, "--num-cpus", "1",
                "--disable-usage-stats", "--block"]

    def start(self) -> None:
        head_log, worker_log = self.workdir / "ray-head.log", self.workdir / "ray-worker.log"
        with open(head_log, "w") as log:
            self.head = subprocess.Popen(self.head_command(), env={**self.env, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"},
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=self.own_sessions)
        wait_for(lambda: "Ray runtime started" in head_log.read_text(), 180, "ray head", self.head, head_log)
        with open(worker_log, "w") as log:
            self.worker = subprocess.Popen(self.worker_command(), env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                           start_new_session=self.own_sessions)
        wait_for(lambda: "Ray runtime started" in worker_log.read_text(), 180, "ray worker node", self.worker, worker_log)

    def listening_addresses(self) -> set[str]:
        """The local addresses every process of both nodes listens on."""
        import psutil

        addresses = set()
        for node in (self.head, self.worker):
            session = os.getsid(node.pid)
            for process in psutil.process_iter():
                try:
                    if os.getsid(process.pid) != session:
                        continue
                    for connection in process.net_connections(kind="inet"):
                        if connection.status == psutil.CONN_LISTEN:
                            addresses.add(connection.laddr.ip)
                except (psutil.Error, ProcessLookupError, PermissionError):
                    continue
        return addresses

    def stop(self) -> None:
        for node in (self.worker, self.head):
            if node is None:
                continue
            if self.own_sessions:
                stop_group(node)
            elif node.poll() is None:  # `--block` stops what it started when signalled
                node.terminate()
                node.wait(timeout=60)
        shutil.rmtree(self.temp_dir, ignore_errors=True)
