#!/usr/bin/env python
"""Bundle the Python packages gkd-search needs for a GPU machine that has no network.

A CUDA machine often comes with PyTorch and PyG in its image but without Ray, Optuna and MLflow,
and cannot reach a package index. This script, run where pip can download, installs those three
(and what they need) for the target's Python and platform into a folder, leaves out every
package the target already has (``--have``: names, one per line, e.g. the target's ``pip list
--format=freeze``), drops parts of Ray and MLflow a search never loads (Ray's Java jars, its
dashboard's web client, RLlib, Serve, LLM; MLflow's web UI), and packs the rest into one
``.tar.xz`` (about 41 MB for Ray 2.60, Optuna 5.0 and MLflow 3.17 against the H200 image of
docs/benchmarks.md, "GPU").

On the target::

    mkdir -p /tmp/site && tar -C /tmp/site -xJf site.tar.xz
    export PYTHONPATH=/tmp/site
    python3 -m pip install --no-deps --no-build-isolation --no-index -e .   # registers the plugins
    bash bench/gpu_check.sh && python3 bench/gpu_methods.py

Usage::

    python bench/offline_bundle.py --have target-packages.txt --out site.tar.xz
    python bench/offline_bundle.py --python-version 3.12 --out site.tar.xz "ray[tune]==2.60.0" optuna mlflow
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "any")
DEFAULT_REQUIREMENTS = ("ray[tune]", "optuna", "mlflow", "pluggy")
#: folders a search never imports (relative to the bundle's root)
UNUSED = ("ray/jars", "ray/dashboard/client", "ray/rllib", "ray/serve", "ray/llm", "mlflow/server/js/build", "bin")


def normalise(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_have(path: Path) -> set[str]:
    """Package names from ``pip list --format=freeze`` output, or one name per line."""
    names = set()
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            names.add(normalise(re.split(r"[=<>~ @\[]", line, maxsplit=1)[0]))
    return names


def top_level_entries(dist_info: Path) -> set[str]:
    """The bundle-root entries a distribution installed (its ``RECORD``), never a path that
    leaves the bundle (a ``RECORD`` of a ``--target`` install can name ``../../bin/...``)."""
    entries = set()
    for line in (dist_info / "RECORD").read_text().splitlines():
        first = line.split(",", 1)[0].split("/", 1)[0]
        if first and first not in (".", "..") and not first.startswith(".."):
            entries.add(first)
    return entries


def remove_installed(site: Path, have: set[str]) -> list[str]:
    """Delete every distribution of ``site`` whose name is in ``have``; the names removed."""
    removed = []
    root = site.resolve()
    for dist_info in sorted(root.glob("*.dist-info")):
        name = normalise(dist_info.name.split("-", 1)[0])
        if name not in have:
            continue
        for entry in top_level_entries(dist_info):
            target = (root / entry).resolve()
            if target.parent != root:  # only direct children of the bundle
                continue
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
        removed.append(name)
    return removed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("requirements", nargs="*", default=list(DEFAULT_REQUIREMENTS))
    parser.add_argument("--have", type=Path, help="packages the target already has (left out)")
    parser.add_argument("--python-version", default="3.12")
    parser.add_argument("--out", type=Path, default=Path("site.tar.xz"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="gkd-bundle-") as tmp:
        site = Path(tmp) / "site"
        command = [sys.executable, "-m", "pip", "install", "-q", "--target", str(site), "--only-binary=:all:",
                   "--python-version", args.python_version, "--implementation", "cp"]
        for platform in PLATFORMS:
            command += ["--platform", platform]
        subprocess.run(command + list(args.requirements), check=True)
        removed = remove_installed(site, read_have(args.have)) if args.have else []
        for folder in UNUSED:
            shutil.rmtree(site / folder, ignore_errors=True)
        for cache in site.rglob("__pycache__"):
            shutil.rmtree(cache, ignore_errors=True)
        with tarfile.open(args.out, "w:xz") as tar:
            for entry in sorted(site.iterdir()):
                tar.add(entry, arcname=entry.name)
    size = args.out.stat().st_size / 2**20
    print(f"{args.out}: {size:.1f} MiB; left out {len(removed)} package(s) the target has")
    return 0


if __name__ == "__main__":
    sys.exit(main())
