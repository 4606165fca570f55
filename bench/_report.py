"""What the benchmark scripts share: the machine's label and writing a generated block into a doc."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (else what ``platform`` knows)."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return model


def cores() -> int:
    return os.cpu_count() or 1


def write_block(doc: Path, start: str, end: str, block: str, heading: str) -> None:
    """Replace the text between the ``start`` and ``end`` markers of ``doc`` with ``block`` (which
    includes the markers); append it under ``heading`` when the doc has no such markers yet."""
    text = doc.read_text()
    if start in text:
        before, rest = text.split(start, 1)
        text = before + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + f"\n\n## {heading}\n\n" + block + "\n"
    doc.write_text(text)


def write_section(doc: Path, marker: str, text: str, heading: str) -> None:
    """:func:`write_block` with the markers ``<!-- bench:<marker>:start -->`` / ``...:end -->``
    around ``text``."""
    start, end = f"<!-- bench:{marker}:start -->", f"<!-- bench:{marker}:end -->"
    write_block(doc, start, end, f"{start}\n{text}\n{end}", heading)


def stamp() -> dict:
    """When and where a benchmark ran: ``{"date": ISO time, "machine": {"cpu", "cores"}}``."""
    import time

    return {"date": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": {"cpu": cpu_model(), "cores": cores()}}


def add_data_arguments(parser, root: Path) -> None:
    """``--data-root`` ($GKD_DATA, else ``shared/data`` beside the repository) and ``--cache-dir``
    ($GKD_CACHE, else ``~/.cache/gkd-search``), as every script that loads a dataset takes them."""
    parser.add_argument("--data-root", default=os.environ.get("GKD_DATA", str(root.parent / "shared" / "data")))
    parser.add_argument("--cache-dir", default=os.environ.get("GKD_CACHE") or str(Path.home() / ".cache" / "gkd-search"))


def publish(report: dict, results: Path, doc: Path, marker: str, heading: str, render, *, save: bool = True) -> str:
    """Write ``report`` to ``results`` (unless ``save`` is false: a ``--render`` run), its
    rendering to the ``marker`` section of ``doc``, and print it; returns the rendering."""
    import json

    if save:
        results.write_text(json.dumps(report, indent=1) + "\n")
    text = render(report)
    write_section(doc, marker, text, heading)
    print(text)
    return text
