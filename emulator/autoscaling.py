"""Application Auto Scaling in the emulator, answering the deployer as AWS does.

moto's server serves the API at the emulator's endpoint (the deployer registers each variant's
scalable target, policy and scheduled actions after a verified deployment); targets are recorded,
not acted on. One answer differs from AWS: deregistering a target that does not exist is moto's
``ValidationException``, AWS's ``ObjectNotFoundException``, which the deployer treats as nothing to
release (``handlers.deployer.scaling.release_autoscaling``). :func:`extend_moto` makes it AWS's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def extend_moto() -> Callable[[], None]:
    """Patch moto's Application Auto Scaling in this process; returns the function that undoes it."""
    from moto.applicationautoscaling.models import ApplicationAutoscalingBackend  # noqa: PLC0415
    from moto.core.exceptions import JsonRESTError  # noqa: PLC0415

    original = ApplicationAutoscalingBackend.deregister_scalable_target
    if getattr(ApplicationAutoscalingBackend, "_mlp_autoscaling", False):
        return lambda: None

    def deregister_scalable_target(self: Any, namespace: str, r_id: str, dimension: str) -> None:
        if not self._scalable_target_exists(r_id, dimension):
            raise JsonRESTError(
                "ObjectNotFoundException",
                f"No scalable target registered for service namespace: {namespace}, "
                f"resource ID: {r_id}, scalable dimension: {dimension}",
            )
        original(self, namespace, r_id, dimension)

    ApplicationAutoscalingBackend.deregister_scalable_target = deregister_scalable_target  # type: ignore[method-assign]
    ApplicationAutoscalingBackend._mlp_autoscaling = True  # type: ignore[attr-defined]

    def undo() -> None:
        ApplicationAutoscalingBackend.deregister_scalable_target = original  # type: ignore[method-assign]
        del ApplicationAutoscalingBackend._mlp_autoscaling  # type: ignore[attr-defined]

    return undo
