"""SageMaker instance types: the platform's default, which families have GPUs, which carry local storage."""

from __future__ import annotations

import re

# Training and serving both default to the smallest current NVIDIA GPU instance.
DEFAULT_INSTANCE_TYPE = "ml.g4dn.xlarge"

# SageMaker instance families with NVIDIA GPUs (inf/trn are accelerators, not CUDA GPUs).
GPU_INSTANCE_FAMILIES = ("g4dn", "g5", "g6", "g6e", "gr6", "p3", "p3dn", "p4d", "p4de", "p5", "p5e", "p5en")

# Families whose instances carry local NVMe storage: SageMaker refuses a volume KMS key for them
# (their local volumes are encrypted by the instance's hardware instead).
_LOCAL_STORAGE_FAMILIES = frozenset(
    {"g5", "g6", "g6e", "gr6", "p5", "p5e", "p5en", "p6", "trn1", "trn1n", "trn2"}
)
_FAMILY = re.compile(r"^ml\.([a-z]+)(\d+)([a-z-]*)\.")


def instance_family(instance_type: str) -> str:
    """``ml.g5.2xlarge`` -> ``g5``."""
    return instance_type.split(".")[1]


def has_gpu(instance_type: str) -> bool:
    """True for instance types with NVIDIA GPUs: they serve and train with the CUDA images."""
    return instance_family(instance_type) in GPU_INSTANCE_FAMILIES


def has_instance_storage(instance_type: str) -> bool:
    """True for instance types with local NVMe storage (``g4dn``, ``m5d``, ``g5``, ``p4d``, ...)."""
    match = _FAMILY.match(instance_type)
    if not match:
        return False
    letters, generation, options = match.groups()
    return "d" in options or f"{letters}{generation}{options}" in _LOCAL_STORAGE_FAMILIES
