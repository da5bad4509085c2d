"""Where the model server's workers run: the device, resolved once at start, and each worker's GPU.

``MODEL_SERVER_DEVICE`` (``--device``): ``auto`` (the default) serves on CUDA when torch sees a GPU,
else on the CPU; ``cpu`` and ``cuda`` force it, and ``cuda`` without a GPU is a settings error.

On CUDA every worker holds its own copy of the model on one GPU: ``MODEL_SERVER_WORKERS_PER_GPU``
(``--workers-per-gpu``, 1) workers per GPU, so GPUs x workers-per-GPU workers in all unless
``SAGEMAKER_MODEL_SERVER_WORKERS`` (``--workers``) says how many (then they go round the GPUs).
Each worker is pinned by ``CUDA_VISIBLE_DEVICES`` in its environment, set before it imports torch,
so ``cuda`` inside it (the default ``model_fn``, the built-in handler, a team's own ``model_fn``)
means its GPU. A worker forced onto the CPU gets ``CUDA_VISIBLE_DEVICES=""``: it sees no GPU at all.

GPUs are counted by the workers' torch in a short subprocess: the supervisor itself never loads
torch or CUDA (the OpenMP pools must be sized before torch loads: ``server.limit_native_threads``).
This module imports no torch.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger("handlers.serving.server")

AUTO, CPU, CUDA = "auto", "cpu", "cuda"
DEVICES = (AUTO, CPU, CUDA)
DEVICE_VARIABLE = "MODEL_SERVER_DEVICE"
WORKERS_PER_GPU_VARIABLE = "MODEL_SERVER_WORKERS_PER_GPU"
VISIBLE_DEVICES = "CUDA_VISIBLE_DEVICES"
# Present wherever the NVIDIA driver is (hosts and GPU containers); without it no CUDA device exists,
# so a CPU host never pays for the probe.
NVIDIA_CONTROL_DEVICE = Path("/dev/nvidiactl")
PROBE_TIMEOUT_S = 120.0
_PROBE = "import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)"


class DeviceError(ValueError):
    """The device settings cannot be met here; the message names the setting."""


@dataclass(frozen=True)
class Placement:
    """The resolved device, the number of workers, and each worker's ``CUDA_VISIBLE_DEVICES``
    (``None``: inherited unchanged)."""

    device: str
    workers: int
    visible_devices: tuple[str | None, ...]

    @property
    def gpus(self) -> int:
        """How many distinct GPUs the workers use."""
        return len({gpu for gpu in self.visible_devices if gpu})


def plan_placement(
    requested: str,
    gpu_count: int,
    *,
    workers: int | None,
    workers_per_gpu: int,
    visible: str | None = None,
) -> Placement:
    """Resolve the device and pin each worker to a GPU (a pure function: the GPU count is given).

    Parameters: ``requested`` auto, cpu or cuda; ``gpu_count`` the GPUs torch sees; ``workers`` an
    explicit worker count (None: one on the CPU, GPUs x ``workers_per_gpu`` on CUDA); ``visible``
    the supervisor's own ``CUDA_VISIBLE_DEVICES``, whose entries the workers share out.
    Returns: the ``Placement``. Raises ``DeviceError`` for an unknown device or cuda without a GPU.
    """
    if requested not in DEVICES:
        raise DeviceError(f"{DEVICE_VARIABLE}={requested!r} is not one of {', '.join(DEVICES)}")
    if workers_per_gpu < 1:
        raise DeviceError(f"{WORKERS_PER_GPU_VARIABLE} must be at least 1; got {workers_per_gpu}")
    if requested == CUDA and gpu_count < 1:
        raise DeviceError(
            f"{DEVICE_VARIABLE}=cuda (or --device cuda), but torch sees no GPU here; use auto or cpu"
        )
    if requested == CPU or gpu_count < 1:
        count = 1 if workers is None else workers
        hidden = "" if requested == CPU else None  # forced: not even a team's model_fn finds a GPU
        return Placement(CPU, count, (hidden,) * count)
    ids = gpu_ids(gpu_count, visible)
    count = len(ids) * workers_per_gpu if workers is None else workers
    return Placement(CUDA, count, tuple(ids[index % len(ids)] for index in range(count)))


def gpu_ids(gpu_count: int, visible: str | None) -> list[str]:
    """The ``CUDA_VISIBLE_DEVICES`` value that selects each of the ``gpu_count`` GPUs torch sees:
    the supervisor's own entries when it has some (ids or UUIDs), else 0..n-1."""
    entries = [entry.strip() for entry in (visible or "").split(",") if entry.strip()]
    if entries:
        return entries[:gpu_count]
    return [str(index) for index in range(gpu_count)]


def count_gpus(environ: Mapping[str, str] | None = None) -> int:
    """The GPUs the workers' torch will see (0 without the NVIDIA driver or a CUDA build of torch)."""
    if not NVIDIA_CONTROL_DEVICE.exists():
        return 0
    try:
        result = subprocess.run(
            [sys.executable, "-c", _PROBE],
            env=None if environ is None else dict(environ),
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_S,
            check=True,
        )
        return int(result.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, OSError, ValueError, IndexError) as exc:
        logger.warning("could not count the GPUs (%s); serving on the CPU", exc)
        return 0
