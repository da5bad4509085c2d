"""DescribeTrainingJob tells what the local runner recorded: status, failure reason and the final
metrics (``FinalMetricDataList``), as SageMaker reports a job it ran. moto keeps none of them; the
runner records them in the job's tags (:mod:`emulator.training.tags`), and this lays them over
moto's answer in the emulator process, so any client (``aws sagemaker describe-training-job``,
the SageMaker SDK, Studio-like tools) sees the real outcome.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from emulator.training import tags


def with_recorded_outcome(described: dict[str, Any], job_tags: list[dict[str, str]]) -> dict[str, Any]:
    """``described`` (moto's DescribeTrainingJob) with the runner's record laid over it."""
    recorded = tags.parse_outcome(job_tags)
    if recorded is None:
        return described
    status, reason, metrics = recorded
    answer = copy.deepcopy(described)
    answer["TrainingJobStatus"] = status
    answer["SecondaryStatus"] = status
    if reason:
        answer["FailureReason"] = reason
    else:
        answer.pop("FailureReason", None)
    now = datetime.now(UTC).isoformat()
    answer["FinalMetricDataList"] = [
        {"MetricName": name, "Value": value, "Timestamp": now} for name, value in sorted(metrics.items())
    ]
    return answer


def extend_moto() -> Callable[[], None]:
    """Patch moto's SageMaker backend in this process; returns the undo (tests need it)."""
    from moto.sagemaker.models import SageMakerModelBackend  # noqa: PLC0415 - moto is local-only

    original = SageMakerModelBackend.describe_training_job
    if getattr(original, "_mlp_outcome", False):
        return lambda: None

    def describe_training_job(self: Any, training_job_name: str) -> dict[str, Any]:
        described = original(self, training_job_name)
        job = self.training_jobs[training_job_name]
        return with_recorded_outcome(described, list(getattr(job, "tags", None) or []))

    describe_training_job._mlp_outcome = True  # type: ignore[attr-defined]
    SageMakerModelBackend.describe_training_job = describe_training_job  # type: ignore[method-assign]

    def undo() -> None:
        SageMakerModelBackend.describe_training_job = original  # type: ignore[method-assign]

    return undo
