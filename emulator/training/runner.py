"""Run a SageMaker training job on this machine, the way SageMaker runs it: the container's tree,
channels and checkpoints from S3, the training contract's environment and hyperparameters, metrics
from the logs, artifacts uploaded under ``<output path>/<job>/output/`` and never overwritten.

Point it only at an emulated SageMaker API. How outcomes are recorded, and where it differs from
SageMaker on purpose: docs/local-platform.md.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from emulator.container_paths import container_search_path, local_command
from emulator.job_process import LogCallback, MetricParser, ProcessOutcome, run_process
from emulator.training import container, script_mode, tags
from emulator.training import s3 as s3io
from emulator.training.errors import (
    ArtifactExistsError,
    DuplicateTrainingJobError,
    TrainingJobNotFoundError,
)
from emulator.training.job import LOG_FILE_NAME, JobStatus, TrainingJobResult, TrainingJobSpec
from infra.stack_config import project_root
from training_jobs import sm_env

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sagemaker import SageMakerClient

logger = logging.getLogger(__name__)

MAX_FAILURE_REASON = 1024
# Our parent's training variables must not leak into the job (e.g. a runner started by a job).
_INHERITED_TRAINING_VARS = re.compile(
    r"SM_.*|MLP_SM_ROOT|(LOCAL_|GROUP_|ROLE_)?RANK|(LOCAL_)?WORLD_SIZE|MASTER_(ADDR|PORT)|TORCHELASTIC_.*"
)
# Where `training_jobs` lives, so `-m training_jobs.train` imports without an install.
PROJECT_ROOT = project_root()


class _JobFailure(Exception):
    """A failure SageMaker reports on the job (bad input data, a lost artifact key)."""


class LocalTrainingRunner:
    """Runs training jobs as local processes and records them in the SageMaker API.

    Parameters
    ----------
    s3_client, sagemaker_client: boto3 clients (moto in-process or a moto server locally).
    work_root: folder that receives one fresh job folder per run.
    stop_grace_seconds: time between SIGTERM and SIGKILL when the runtime is up (SageMaker: 120).
    python: interpreter that runs the entry point.
    """

    def __init__(
        self,
        s3_client: S3Client,
        sagemaker_client: SageMakerClient,
        work_root: Path,
        *,
        stop_grace_seconds: float = 120.0,
        python: str = sys.executable,
    ) -> None:
        self._s3 = s3_client
        self._sagemaker = sagemaker_client
        self._work_root = Path(work_root)
        self._stop_grace_seconds = stop_grace_seconds
        self._python = python

    def run(self, job: TrainingJobSpec, *, on_log: LogCallback | None = None) -> TrainingJobResult:
        """Run ``job`` to its end and return how it ended.

        A failing training script gives a ``Failed`` result, not an exception. Raises
        :class:`InvalidTrainingJobError`, :class:`DuplicateTrainingJobError` or
        :class:`ArtifactExistsError` before anything runs; an error of the runner itself is
        recorded as a failed job and then raised.
        """
        job.validate()
        self._ensure_new(job)
        arn = self._create_record(job)
        try:
            job_dir = Path(tempfile.mkdtemp(prefix=f"{job.job_name}-", dir=self._prepare_work_root()))
            status, reason, metrics = self._execute(job, job_dir, on_log)
        except BaseException as exc:
            self._record_failure_of_runner(arn, exc)
            raise
        # The record holds up to ~2 KB of escaped reason; run() answers what describe_job will.
        reason = None if reason is None else tags.recordable_reason(reason)
        self._record_outcome(arn, status, reason, metrics)
        artifacts = str(job.model_artifact) if status == JobStatus.COMPLETED else None
        return TrainingJobResult(job.job_name, status, reason, metrics, artifacts, job_dir)

    def describe_job(self, job_name: str) -> TrainingJobResult:
        """The recorded state of ``job_name`` (see :func:`describe_job`)."""
        return describe_job(self._sagemaker, job_name)

    # -- before the run -------------------------------------------------------------------

    def _prepare_work_root(self) -> Path:
        self._work_root.mkdir(parents=True, exist_ok=True)
        return self._work_root

    def _ensure_new(self, job: TrainingJobSpec) -> None:
        if _job_exists(self._sagemaker, job.job_name):
            raise DuplicateTrainingJobError(f"training job {job.job_name!r} already exists")
        for artifact in (job.model_artifact, job.output_artifact):
            if s3io.object_exists(self._s3, artifact):
                raise ArtifactExistsError(f"{artifact} already exists; choose a new job name")

    def _create_record(self, job: TrainingJobSpec) -> str:
        try:
            response = self._sagemaker.create_training_job(**_create_request(job))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ResourceInUse":
                raise DuplicateTrainingJobError(f"training job {job.job_name!r} already exists") from exc
            raise
        return response["TrainingJobArn"]

    # -- the run ----------------------------------------------------------------------------

    def _execute(
        self, job: TrainingJobSpec, job_dir: Path, on_log: LogCallback | None
    ) -> tuple[JobStatus, str | None, dict[str, float]]:
        paths = sm_env.TrainingPaths(job_dir)
        container.lay_out(paths, job)
        metrics = MetricParser(job.metric_definitions)
        try:
            self._download_inputs(job, paths)
            if script_mode.is_script_mode(job):
                self._install_bundle(job, paths)
            outcome = run_process(
                self._command(job, paths),
                env=self._environment(job, paths),
                cwd=script_mode.code_dir(paths) if script_mode.is_script_mode(job) else job_dir,
                log_path=job_dir / LOG_FILE_NAME,
                metrics=metrics,
                max_runtime_seconds=job.max_runtime_seconds,
                stop_grace_seconds=self._stop_grace_seconds,
                on_line=on_log,
            )
            status, reason = _judge(outcome, paths, job)
        except _JobFailure as failure:
            status, reason = JobStatus.FAILED, str(failure)
        finally:
            # What the job saved before it failed is what its restart resumes from.
            sync_error = self._sync_checkpoints_out(job, paths)
        if sync_error is not None and status == JobStatus.COMPLETED:
            status, reason = JobStatus.FAILED, sync_error
        try:
            self._upload_artifacts(job, paths, status, reason)
        except ArtifactExistsError as exc:
            return JobStatus.FAILED, f"ClientError: {exc}", metrics.final
        return status, reason, metrics.final

    def _download_inputs(self, job: TrainingJobSpec, paths: sm_env.TrainingPaths) -> None:
        for channel, uri in job.input_channels.items():
            try:
                count = s3io.download_prefix(self._s3, s3io.parse_location(uri), paths.channel_dir(channel))
            except ClientError as exc:
                raise _JobFailure(
                    f"ClientError: Data download failed for channel {channel!r}: {exc}"
                ) from exc
            if count == 0:
                raise _JobFailure(
                    f"ClientError: No S3 objects found under S3 URL {uri!r} (channel {channel!r})"
                )
        if job.checkpoint_s3_uri:
            # A restarted (e.g. spot-interrupted) job resumes from what its predecessor saved.
            location = s3io.parse_location(job.checkpoint_s3_uri)
            try:
                s3io.download_prefix(self._s3, location, paths.checkpoint_dir)
            except ClientError as exc:
                raise _JobFailure(f"ClientError: Checkpoint download from {location} failed: {exc}") from exc

    def _install_bundle(self, job: TrainingJobSpec, paths: sm_env.TrainingPaths) -> None:
        try:
            script_mode.install_bundle(job, paths, self._s3, self._python)
        except script_mode.ScriptModeError as exc:
            raise _JobFailure(f"AlgorithmError: {exc}") from None
        except ClientError as exc:
            raise _JobFailure(f"ClientError: download of the code bundle failed: {exc}") from None

    def _sync_checkpoints_out(self, job: TrainingJobSpec, paths: sm_env.TrainingPaths) -> str | None:
        """Upload the checkpoints; the failure reason if that failed (the job then fails)."""
        if not job.checkpoint_s3_uri:
            return None
        location = s3io.parse_location(job.checkpoint_s3_uri)
        try:
            s3io.upload_tree(self._s3, paths.checkpoint_dir, location)
        except ClientError as exc:
            logger.warning("checkpoint upload of %s failed: %s", job.job_name, exc)
            return f"ClientError: Checkpoint upload to {location} failed: {exc}"
        return None

    def _upload_artifacts(
        self, job: TrainingJobSpec, paths: sm_env.TrainingPaths, status: JobStatus, reason: str | None
    ) -> None:
        staging = paths.root / ".artifacts"
        staging.mkdir(exist_ok=True)
        if status == JobStatus.COMPLETED:
            model = s3io.make_tarball(paths.model_dir, staging / "model.tar.gz")
            s3io.put_new_object(self._s3, job.model_artifact, model)
        output = s3io.make_tarball(paths.output_data_dir, staging / "output.tar.gz")
        s3io.put_new_object(self._s3, job.output_artifact, output)
        if reason is not None:
            s3io.put_new_object(self._s3, job.failure_artifact, reason.encode())

    def _command(self, job: TrainingJobSpec, paths: sm_env.TrainingPaths) -> list[str]:
        if script_mode.is_script_mode(job):
            return script_mode.command(job, paths, self._python)
        if job.container_entrypoint:
            command = [*job.container_entrypoint, *job.container_arguments]
            return local_command(command, {"/opt/ml": paths.root, "/tmp": paths.root / "tmp"})
        target = _entry_target(job.entry_point)
        launcher = [self._python]
        if job.processes > 1:
            launcher += ["-m", "torch.distributed.run", "--standalone", "--nnodes", "1"]
            launcher += ["--nproc_per_node", str(job.processes)]
        return launcher + target + container.user_args(job.string_hyperparameters)

    def _environment(self, job: TrainingJobSpec, paths: sm_env.TrainingPaths) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not _INHERITED_TRAINING_VARS.fullmatch(key)}
        env.update(job.environment)
        if job.container_entrypoint:
            # The container's own command: SageMaker sets no toolkit variables for it, and it imports
            # the code it unpacks; only the /opt/ml folder and the interpreter are local.
            env.pop("PYTHONPATH", None)
            env.update({sm_env.ROOT_ENV: str(paths.root), "TRAINING_JOB_NAME": job.job_name})
            env["PATH"] = container_search_path(self._python)
        elif script_mode.is_script_mode(job):
            env.update(container.sagemaker_environment(job, paths))
            env = script_mode.environment(job, paths, env)  # the bundle only: no project on the path
            env["PATH"] = container_search_path(self._python)
        else:
            env.update(container.sagemaker_environment(job, paths))
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
        # Lines reach the log and the metric parser as they are printed, not at exit.
        env["PYTHONUNBUFFERED"] = "1"
        return env

    # -- the record -------------------------------------------------------------------------

    def _record_failure_of_runner(self, arn: str, exc: BaseException) -> None:
        try:
            self._record_outcome(arn, JobStatus.FAILED, f"InternalServerError: {exc!r}", {})
        except Exception:
            # The runner's own error is the one to raise; a second one would hide it.
            logger.exception("could not record the failure of training job %s", arn)

    def _record_outcome(
        self, arn: str, status: str, reason: str | None, metrics: Mapping[str, float]
    ) -> None:
        # AWS replaces a tag on AddTags, moto appends: delete first so both hold one value.
        stale = [
            tag["Key"] for tag in _list_tags(self._sagemaker, arn) if tag["Key"].startswith(tags.TAG_PREFIX)
        ]
        if stale:
            self._sagemaker.delete_tags(ResourceArn=arn, TagKeys=stale)
        self._sagemaker.add_tags(
            ResourceArn=arn,
            Tags=tags.outcome_tags(status, reason, metrics),  # type: ignore[arg-type]
        )


def describe_job(sagemaker_client: SageMakerClient, job_name: str) -> TrainingJobResult:
    """A training job's status, failure reason, final metrics and model artifact.

    DescribeTrainingJob, with the local runner's ``mlp:*`` tags laid over it where present.
    Raises :class:`TrainingJobNotFoundError` for an unknown name.
    """
    try:
        described: Mapping[str, Any] = sagemaker_client.describe_training_job(TrainingJobName=job_name)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in {"ValidationException", "ResourceNotFound"}:
            raise TrainingJobNotFoundError(f"no training job named {job_name!r}") from exc
        raise
    artifacts = described.get("ModelArtifacts", {}).get("S3ModelArtifacts")
    recorded = tags.parse_outcome(_list_tags(sagemaker_client, described["TrainingJobArn"]))
    if recorded is None:
        metrics = {m["MetricName"]: float(m["Value"]) for m in described.get("FinalMetricDataList", [])}
        return TrainingJobResult(
            job_name, described["TrainingJobStatus"], described.get("FailureReason"), metrics, artifacts
        )
    status, reason, metrics = recorded
    return TrainingJobResult(
        job_name, status, reason, metrics, artifacts if status == JobStatus.COMPLETED else None
    )


# -- helpers -------------------------------------------------------------------------------


def _job_exists(sagemaker_client: SageMakerClient, job_name: str) -> bool:
    try:
        describe_job(sagemaker_client, job_name)
    except TrainingJobNotFoundError:
        return False
    return True


def _list_tags(sagemaker_client: SageMakerClient, arn: str) -> list[dict[str, str]]:
    pages = sagemaker_client.get_paginator("list_tags").paginate(ResourceArn=arn)
    return [{"Key": t["Key"], "Value": t["Value"]} for page in pages for t in page.get("Tags", [])]


def _create_request(job: TrainingJobSpec) -> dict[str, Any]:
    """CreateTrainingJob's arguments for ``job``, born ``InProgress`` in the local record."""
    request: dict[str, Any] = {
        "TrainingJobName": job.job_name,
        "HyperParameters": job.string_hyperparameters,
        "AlgorithmSpecification": {
            "TrainingImage": job.training_image,
            "TrainingInputMode": "File",
            "MetricDefinitions": [{"Name": d["Name"], "Regex": d["Regex"]} for d in job.metric_definitions],
            **({"ContainerEntrypoint": list(job.container_entrypoint)} if job.container_entrypoint else {}),
            **({"ContainerArguments": list(job.container_arguments)} if job.container_arguments else {}),
        },
        "RoleArn": job.role_arn,
        "OutputDataConfig": {"S3OutputPath": job.output_s3_uri},
        "ResourceConfig": {"InstanceType": job.instance_type, "InstanceCount": 1, "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": job.max_runtime_seconds},
        "Tags": tags.outcome_tags(JobStatus.IN_PROGRESS, None, {}),
    }
    if job.input_channels:
        request["InputDataConfig"] = [_channel_config(name, uri) for name, uri in job.input_channels.items()]
    if job.checkpoint_s3_uri:
        request["CheckpointConfig"] = {
            "S3Uri": job.checkpoint_s3_uri,
            "LocalPath": sm_env.CONTAINER_CHECKPOINT_DIR,
        }
    if job.environment:
        request["Environment"] = dict(job.environment)
    return request


def _channel_config(name: str, uri: str) -> dict[str, Any]:
    return {
        "ChannelName": name,
        "DataSource": {
            "S3DataSource": {
                "S3DataType": "S3Prefix",
                "S3Uri": uri,
                "S3DataDistributionType": "FullyReplicated",
            }
        },
        "InputMode": "File",
    }


def _judge(
    outcome: ProcessOutcome, paths: sm_env.TrainingPaths, job: TrainingJobSpec
) -> tuple[JobStatus, str | None]:
    """Completed on exit code 0; else Failed with the failure file's text, or the stderr tail."""
    if outcome.timed_out:
        return JobStatus.FAILED, (
            f"MaxRuntimeExceeded: Training job ran past MaxRuntimeInSeconds "
            f"({job.max_runtime_seconds} s) and was stopped."
        )
    if outcome.exit_code == 0:
        return JobStatus.COMPLETED, None
    written = _read_failure_file(paths.failure_file)
    if written:
        return JobStatus.FAILED, written[:MAX_FAILURE_REASON]
    tail = "\n".join(outcome.stderr_tail).strip()
    reason = f"AlgorithmError: training exited with code {outcome.exit_code}" + (f": {tail}" if tail else "")
    # The end of stderr holds the exception; keep it when cutting to SageMaker's length.
    return JobStatus.FAILED, reason if len(reason) <= MAX_FAILURE_REASON else "..." + reason[
        -MAX_FAILURE_REASON + 3 :
    ]


def _read_failure_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return ""


def _entry_target(entry_point: str) -> list[str]:
    """``[script path]`` for a script, ``["-m", module]`` for a module name."""
    if entry_point.endswith(".py") or Path(entry_point).is_file():
        return [str(Path(entry_point).resolve())]
    return ["-m", entry_point]
