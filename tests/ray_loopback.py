"""``ray start`` for a one-machine test cluster whose every process stays on 127.0.0.1.

    python tests/ray_loopback.py start --address 127.0.0.1:PORT --num-cpus 1 --block

Why a wrapper, only for the tests' second node: Ray replaces the loopback address of
``--address 127.0.0.1:PORT`` (and of ``--node-ip-address 127.0.0.1``) by the machine's outward
interface address (``ray._private.services.resolve_ip_for_localhost``), where a head started on
127.0.0.1 does not listen. The head avoids it with ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, but
``ray start`` refuses to start a non-head node with that setting ("Multi-node Ray clusters are
not supported on Windows and OSX"). So this wrapper keeps loopback addresses as they are in this
process and sets the setting for the processes it starts (raylet, agents, workers), then runs
Ray's own ``ray start``. A real cluster, whose nodes have real addresses, needs none of this.
"""

from __future__ import annotations

import os
import sys

import ray._private.services as services

_resolve = services.resolve_ip_for_localhost


def _keep_loopback(host: str) -> str:
    return "127.0.0.1" if host in ("127.0.0.1", "localhost") else _resolve(host)


if __name__ == "__main__":
    services.resolve_ip_for_localhost = _keep_loopback
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # read by the processes started from here
    from ray.scripts.scripts import main

    sys.argv[0] = "ray"
    sys.exit(main())
