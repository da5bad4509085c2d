"""SageMaker instance types: the platform's default, and which families carry local storage."""

from __future__ import annotations

import re

# Training and serving both default to the smallest current NVIDIA GPU instance.
DEFAULT_INSTANCE_TYPE = "ml.g4dn.xlarge"

# Families whose instances carry local NVMe storage: SageMaker refuses a volume KMS key for them
# (their local volumes are encrypted by the instance's hardware instead).
_LOCAL_STORAGE_FAMILIES = frozenset(
    {"g5", "g6", "g6e", "gr6", "p5", "p5e", "p5en", "p6", "trn1", "trn1n", "trn2"}
)
_FAMILY = re.compile(r"^ml\.([a-z]+)(\d+)([a-z-]*)\.")


def has_instance_storage(instance_type: str) -> bool:
    """True for instance types with local NVMe storage (``g4dn``, ``m5d``, ``g5``, ``p4d``, ...)."""
    match = _FAMILY.match(instance_type)
    if not match:
        return False
    letters, generation, options = match.groups()
    return "d" in options or f"{letters}{generation}{options}" in _LOCAL_STORAGE_FAMILIES
