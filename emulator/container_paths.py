"""A job container's file system on this machine: what it sees under ``/opt/ml`` and ``/tmp`` lives in
its job folder, and ``python3``/``torchrun`` are this environment's.

A job's own command (the pipeline's launcher, a team's entry point) runs unchanged except for these
paths, so the command the cloud runs is the command that runs here.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

CONTAINER_ROOTS = ("/opt/ml", "/tmp")  # noqa: S108 - container paths, mapped below a job folder
_ROOT = re.compile(r"(?<![\w./-])(/opt/ml|/tmp)(?![\w.-])")


def container_roots(job_dir: Path) -> dict[str, Path]:
    """Where each container root lives for the job in ``job_dir``."""
    return {root: job_dir / root.strip("/").replace("/", "-") for root in CONTAINER_ROOTS}


def local_path(container_path: str, roots: Mapping[str, Path]) -> Path:
    """The local path of ``container_path`` (which must be under one of the roots)."""
    mapped = map_paths(container_path, roots)
    if mapped == container_path:
        raise ValueError(f"{container_path!r} is outside the container's {', '.join(CONTAINER_ROOTS)}")
    return Path(mapped)


def map_paths(text: str, roots: Mapping[str, Path]) -> str:
    """``text`` with every container path under the roots moved to its local folder."""
    return _ROOT.sub(lambda match: str(roots[match.group(1)]), text)


def local_command(command: Sequence[str], roots: Mapping[str, Path]) -> list[str]:
    """A container command (entry point and arguments) with its paths mapped."""
    return [map_paths(argument, roots) for argument in command]


def container_search_path(python: str = sys.executable) -> str:
    """``PATH`` with the folder of ``python`` first, so a command's ``python3`` and ``torchrun`` are
    this environment's, as they are the image's in the cloud."""
    return os.pathsep.join(filter(None, [str(Path(python).parent), os.environ.get("PATH")]))
