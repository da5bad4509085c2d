"""A training job as the local runner takes it (CreateTrainingJob's parts) and reports it back."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from emulator.training import tags
from emulator.training.errors import InvalidTrainingJobError
from emulator.training.s3 import parse_location
from handlers.common.s3_uri import S3Uri

# SageMaker's CreateTrainingJob rules (botocore's service model).
JOB_NAME_PATTERN = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")
ROLE_ARN_PATTERN = re.compile(r"arn:aws[a-z\-]*:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+")
CHANNEL_NAME_PATTERN = re.compile(r"[A-Za-z0-9.\-_]{1,64}")
ENVIRONMENT_KEY_PATTERN = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]{0,1023}")
MAX_HYPERPARAMETERS = 100
MAX_HYPERPARAMETER_VALUE = 2500
MAX_METRIC_DEFINITIONS = 40
MAX_RUNTIME_LIMIT = 28 * 24 * 3600


LOCAL_TRAINING_IMAGE = "mlp-local/python"
LOG_FILE_NAME = "training.log"


class JobStatus(StrEnum):
    """SageMaker's TrainingJobStatus values."""

    IN_PROGRESS = "InProgress"
    COMPLETED = "Completed"
    FAILED = "Failed"
    STOPPING = "Stopping"
    STOPPED = "Stopped"


@dataclass(frozen=True)
class TrainingJobSpec:
    """The parts of SageMaker's CreateTrainingJob that a local run needs.

    Parameters
    ----------
    job_name: unique name, SageMaker's rules (1-63 characters, letters, digits, inner hyphens).
    entry_point: a Python module (``training_jobs.train``) or the path of a ``.py`` script.
    output_s3_uri: ``OutputDataConfig.S3OutputPath``; artifacts land under ``<it>/<job_name>/output/``.
    role_arn: ``RoleArn``, recorded only.
    hyperparameters: values become strings as SageMaker hands them over (``str`` unchanged,
        ``bool`` as ``true``/``false``, anything else as JSON).
    input_channels: channel name -> S3 prefix; each is downloaded to ``input/data/<name>/``.
    checkpoint_s3_uri: ``CheckpointConfig.S3Uri``; restored before and synced after the run.
    processes: worker processes on the one local host; more than one runs under ``torchrun``.
    instance_type: ``ResourceConfig.InstanceType``, recorded only.
    max_runtime_seconds: ``StoppingCondition.MaxRuntimeInSeconds``.
    metric_definitions: ``[{"Name": ..., "Regex": ...}]``; the regex's first group is the value.
    environment: extra environment variables of the training process.
    training_image: ``AlgorithmSpecification.TrainingImage``, recorded only.
    container_entrypoint, container_arguments: ``AlgorithmSpecification.ContainerEntrypoint`` and
        ``ContainerArguments``: when set, this command runs instead of ``entry_point``, as the
        container would run it (no training toolkit: no ``SM_*`` variables, hyperparameters only in
        ``hyperparameters.json``).
    """

    job_name: str
    entry_point: str
    output_s3_uri: str
    role_arn: str
    hyperparameters: Mapping[str, object] = field(default_factory=dict)
    input_channels: Mapping[str, str] = field(default_factory=dict)
    checkpoint_s3_uri: str | None = None
    processes: int = 1
    instance_type: str = "ml.m5.large"
    max_runtime_seconds: int = 24 * 3600
    metric_definitions: Sequence[Mapping[str, str]] = ()
    environment: Mapping[str, str] = field(default_factory=dict)
    training_image: str = LOCAL_TRAINING_IMAGE
    container_entrypoint: tuple[str, ...] = ()
    container_arguments: tuple[str, ...] = ()

    @classmethod
    def from_request(cls, job_name: str, request: Mapping[str, Any]) -> TrainingJobSpec:
        """The job a CreateTrainingJob request (a pipeline's Training step) describes."""
        algorithm = request.get("AlgorithmSpecification", {})
        stopping = request.get("StoppingCondition", {})
        hyperparameters = dict(request.get("HyperParameters", {}))
        return cls(
            job_name=job_name,
            # Script mode: the toolkit runs this program of the code bundle (training/script_mode.py).
            entry_point=str(hyperparameters.get("sagemaker_program", "")),
            output_s3_uri=request["OutputDataConfig"]["S3OutputPath"],
            role_arn=request["RoleArn"],
            hyperparameters=hyperparameters,
            input_channels={
                channel["ChannelName"]: channel["DataSource"]["S3DataSource"]["S3Uri"]
                for channel in request.get("InputDataConfig", [])
            },
            checkpoint_s3_uri=request.get("CheckpointConfig", {}).get("S3Uri"),
            instance_type=request.get("ResourceConfig", {}).get("InstanceType", "ml.m5.large"),
            max_runtime_seconds=int(stopping.get("MaxRuntimeInSeconds", 24 * 3600)),
            metric_definitions=tuple(algorithm.get("MetricDefinitions", ())),
            environment=dict(request.get("Environment", {})),
            training_image=algorithm.get("TrainingImage", LOCAL_TRAINING_IMAGE),
            container_entrypoint=tuple(algorithm.get("ContainerEntrypoint", ())),
            container_arguments=tuple(algorithm.get("ContainerArguments", ())),
        )

    def validate(self) -> None:
        """Raise :class:`InvalidTrainingJobError` where SageMaker would reject the job."""
        if not JOB_NAME_PATTERN.fullmatch(self.job_name):
            raise InvalidTrainingJobError(
                f"invalid training job name {self.job_name!r}: 1-63 letters, digits and inner hyphens"
            )
        if not self.entry_point and not self.container_entrypoint:
            raise InvalidTrainingJobError(
                f"the training image {self.training_image}'s own entry point does not run on this machine "
                "(no container runtime): run a script of the team's source folder instead "
                "(training.source, or sagemaker_program in script mode)"
            )
        if not ROLE_ARN_PATTERN.fullmatch(self.role_arn):
            raise InvalidTrainingJobError(f"role_arn {self.role_arn!r} is not an IAM role ARN")
        _validate_uris(self)
        _validate_limits(self)
        _validate_metric_definitions(self.metric_definitions)

    @property
    def string_hyperparameters(self) -> dict[str, str]:
        return {str(key): _as_hyperparameter(value) for key, value in self.hyperparameters.items()}

    @property
    def model_artifact(self) -> S3Uri:
        return self._artifact("model.tar.gz")

    @property
    def output_artifact(self) -> S3Uri:
        return self._artifact("output.tar.gz")

    @property
    def failure_artifact(self) -> S3Uri:
        return self._artifact("failure")

    def _artifact(self, name: str) -> S3Uri:
        return parse_location(self.output_s3_uri).child(self.job_name, "output", name)


@dataclass(frozen=True)
class TrainingJobResult:
    """A training job as DescribeTrainingJob reports it (with the local record laid over).

    ``job_dir`` is the local job folder; only :meth:`LocalTrainingRunner.run` knows it, so it
    takes no part in comparisons.
    """

    job_name: str
    status: str
    failure_reason: str | None
    final_metrics: Mapping[str, float]
    model_artifacts: str | None
    job_dir: Path | None = field(default=None, compare=False)

    @property
    def succeeded(self) -> bool:
        return self.status == JobStatus.COMPLETED

    @property
    def log_path(self) -> Path | None:
        return None if self.job_dir is None else self.job_dir / LOG_FILE_NAME


def _as_hyperparameter(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def _validate_uris(job: TrainingJobSpec) -> None:
    parse_location(job.output_s3_uri)
    if job.checkpoint_s3_uri:
        parse_location(job.checkpoint_s3_uri)
    for name, uri in job.input_channels.items():
        if not CHANNEL_NAME_PATTERN.fullmatch(name):
            raise InvalidTrainingJobError(f"invalid channel name {name!r}")
        parse_location(uri)


def _validate_limits(job: TrainingJobSpec) -> None:
    if job.processes < 1:
        raise InvalidTrainingJobError(f"processes must be at least 1, not {job.processes}")
    if not 1 <= job.max_runtime_seconds <= MAX_RUNTIME_LIMIT:
        raise InvalidTrainingJobError(f"max_runtime_seconds must be 1..{MAX_RUNTIME_LIMIT}")
    hyperparameters = job.string_hyperparameters
    if len(hyperparameters) > MAX_HYPERPARAMETERS:
        raise InvalidTrainingJobError(f"at most {MAX_HYPERPARAMETERS} hyperparameters")
    too_long = [key for key, value in hyperparameters.items() if len(value) > MAX_HYPERPARAMETER_VALUE]
    if too_long:
        raise InvalidTrainingJobError(
            f"hyperparameter values over {MAX_HYPERPARAMETER_VALUE} chars: {too_long}"
        )
    bad_keys = [key for key in job.environment if not ENVIRONMENT_KEY_PATTERN.fullmatch(key)]
    if bad_keys:
        raise InvalidTrainingJobError(f"invalid environment variable names: {bad_keys}")


def _validate_metric_definitions(definitions: Sequence[Mapping[str, str]]) -> None:
    if len(definitions) > MAX_METRIC_DEFINITIONS:
        raise InvalidTrainingJobError(f"at most {MAX_METRIC_DEFINITIONS} metric definitions")
    for definition in definitions:
        name, regex = definition.get("Name", ""), definition.get("Regex", "")
        try:
            groups = re.compile(regex).groups
            tags.metric_tag_key(name)
        except (re.error, ValueError) as exc:
            raise InvalidTrainingJobError(f"invalid metric definition {definition!r}: {exc}") from exc
        if not name or groups < 1:
            raise InvalidTrainingJobError(
                f"metric definition {definition!r} needs a Name and a Regex with a group"
            )
