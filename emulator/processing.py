"""Run a SageMaker processing job on this machine, the way SageMaker runs it.

The request is CreateProcessingJob's: inputs are downloaded to their ``LocalPath``, the container's
``ContainerEntrypoint`` + ``ContainerArguments`` run as they are (paths under ``/opt/ml`` and
``/tmp`` mapped into the job folder, :mod:`emulator.container_paths`), and each output's
``LocalPath`` is uploaded to its ``S3Uri`` at the end. The image is not run: the job's command runs
in this environment. The job is recorded in the emulated SageMaker API.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from emulator.container_paths import container_roots, container_search_path, local_command, local_path
from emulator.job_process import LogCallback, MetricParser, run_process
from emulator.training import s3 as s3io

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sagemaker import SageMakerClient

logger = logging.getLogger(__name__)

COMPLETED, FAILED = "Completed", "Failed"
LOG_FILE_NAME = "processing.log"
DEFAULT_MAX_RUNTIME_SECONDS = 24 * 3600
STOP_GRACE_SECONDS = 30.0


@dataclass(frozen=True)
class ProcessingResult:
    """How a processing job ended, and where its outputs went (output name -> S3 URI)."""

    job_name: str
    status: str
    failure_reason: str | None
    outputs: Mapping[str, str] = field(default_factory=dict)
    job_dir: Path | None = field(default=None, compare=False)

    @property
    def succeeded(self) -> bool:
        return self.status == COMPLETED


class LocalProcessingRunner:
    """Processing jobs against an S3 and a SageMaker API (the emulator's), in folders under ``work_root``."""

    def __init__(
        self,
        s3_client: S3Client,
        sagemaker_client: SageMakerClient,
        work_root: Path,
        *,
        python: str | None = None,
    ) -> None:
        self._s3 = s3_client
        self._sagemaker = sagemaker_client
        self._work_root = Path(work_root)
        self._python = python

    def run(
        self, job_name: str, request: Mapping[str, Any], *, on_log: LogCallback | None = None
    ) -> ProcessingResult:
        """Run the job ``request`` describes (CreateProcessingJob's arguments) to its end."""
        self._sagemaker.create_processing_job(ProcessingJobName=job_name, **request)
        self._work_root.mkdir(parents=True, exist_ok=True)
        job_dir = Path(tempfile.mkdtemp(prefix=f"{job_name}-", dir=self._work_root))
        roots = container_roots(job_dir)
        outputs = {
            output["OutputName"]: output["S3Output"]["S3Uri"]
            for output in request.get("ProcessingOutputConfig", {}).get("Outputs", [])
        }
        try:
            self._download_inputs(request.get("ProcessingInputs", []), roots)
            reason = self._execute(request, job_dir, roots, on_log)
            if reason is None:
                self._upload_outputs(request.get("ProcessingOutputConfig", {}).get("Outputs", []), roots)
        except _JobFailure as failure:
            reason = str(failure)
        status = COMPLETED if reason is None else FAILED
        logger.info("processing job %s %s%s", job_name, status, f": {reason}" if reason else "")
        return ProcessingResult(job_name, status, reason, outputs if reason is None else {}, job_dir)

    def _download_inputs(self, inputs: list[Mapping[str, Any]], roots: Mapping[str, Path]) -> None:
        for item in inputs:
            source = item.get("S3Input")
            if source is None:
                raise _JobFailure(f"input {item.get('InputName')!r}: only S3 inputs run locally")
            target = local_path(source["LocalPath"], roots)
            try:
                count = s3io.download_prefix(self._s3, s3io.parse_location(source["S3Uri"]), target)
            except ClientError as exc:
                raise _JobFailure(
                    f"ClientError: download of input {item['InputName']!r} failed: {exc}"
                ) from exc
            if count == 0:
                raise _JobFailure(
                    f"ClientError: no S3 objects under {source['S3Uri']} (input {item['InputName']!r})"
                )

    def _execute(
        self, request: Mapping[str, Any], job_dir: Path, roots: Mapping[str, Path], on_log: LogCallback | None
    ) -> str | None:
        app = request["AppSpecification"]
        command = local_command(
            [*app.get("ContainerEntrypoint", []), *app.get("ContainerArguments", [])], roots
        )
        if not command:
            raise _JobFailure(
                "AppSpecification has no ContainerEntrypoint: an image's own entry point does not run here"
            )
        for output in request.get("ProcessingOutputConfig", {}).get("Outputs", []):
            local_path(output["S3Output"]["LocalPath"], roots).mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **request.get("Environment", {}), "PYTHONUNBUFFERED": "1"}
        env["PATH"] = container_search_path(self._python) if self._python else container_search_path()
        env.pop("PYTHONPATH", None)  # the job imports the code it unpacked, as in the container
        outcome = run_process(
            command,
            env=env,
            cwd=job_dir,
            log_path=job_dir / LOG_FILE_NAME,
            metrics=MetricParser([]),
            max_runtime_seconds=request.get("StoppingCondition", {}).get(
                "MaxRuntimeInSeconds", DEFAULT_MAX_RUNTIME_SECONDS
            ),
            stop_grace_seconds=STOP_GRACE_SECONDS,
            on_line=on_log,
        )
        if outcome.timed_out:
            return "MaxRuntimeExceeded: the job ran past StoppingCondition.MaxRuntimeInSeconds"
        if outcome.exit_code != 0:
            tail = " | ".join(outcome.stderr_tail[-3:])
            return f"AlgorithmError: the command exited with {outcome.exit_code}: {tail}"[:1024]
        return None

    def _upload_outputs(self, outputs: list[Mapping[str, Any]], roots: Mapping[str, Path]) -> None:
        for output in outputs:
            target = output["S3Output"]
            try:
                s3io.upload_tree(
                    self._s3, local_path(target["LocalPath"], roots), s3io.parse_location(target["S3Uri"])
                )
            except ClientError as exc:
                raise _JobFailure(
                    f"ClientError: upload of output {output['OutputName']!r} failed: {exc}"
                ) from exc


class _JobFailure(Exception):
    """A failure SageMaker reports on the job itself (missing input data, a failed upload)."""
