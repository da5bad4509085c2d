"""Pipeline executions in the emulator: StartPipelineExecution runs the pipeline's definition.

moto records an execution as ``Succeeded`` the moment it starts, runs nothing and has no
ListPipelineExecutionSteps. Inside the emulator process (where moto's backend lives) this module
makes StartPipelineExecution hand the execution to :class:`emulator.pipelines.PipelineExecutor` in a
background thread, keeps the execution ``Executing`` until it ends, reports its FailureReason, and
serves ListPipelineExecutionSteps from the executor's record. So ``mlctl train``, ``aws sagemaker
list-pipeline-execution-steps`` and the drift monitor's retraining start the same definition as in
the cloud.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from emulator.pipelines import EXECUTING, ExecutionRecord, PipelineExecutor

logger = logging.getLogger(__name__)

Starter = Callable[[ExecutionRecord, str, Sequence[Mapping[str, str]], str, Callable[[], None]], None]
_EXECUTIONS: dict[str, ExecutionRecord] = {}
_LOCK = threading.Lock()


def execution_record(arn: str) -> ExecutionRecord | None:
    with _LOCK:
        return _EXECUTIONS.get(arn)


def extend_moto(start: Starter) -> Callable[[], None]:
    """Patch moto's SageMaker in this process so executions run through ``start``; returns the undo."""
    from moto.sagemaker.models import SageMakerModelBackend  # noqa: PLC0415 - moto is local-only
    from moto.sagemaker.responses import ActionResult, SageMakerResponse  # noqa: PLC0415

    if getattr(SageMakerResponse, "_mlp_pipelines", False):
        return lambda: None
    original_start = SageMakerModelBackend.start_pipeline_execution
    original_describe = SageMakerModelBackend.describe_pipeline_execution

    def start_pipeline_execution(self: Any, pipeline_name: str, *args: Any, **kwargs: Any) -> dict[str, str]:
        answer: dict[str, str] = original_start(self, pipeline_name, *args, **kwargs)
        arn = answer["PipelineExecutionArn"]
        execution = self.pipelines[pipeline_name].pipeline_executions[arn]
        execution.pipeline_execution_status = EXECUTING
        record = ExecutionRecord(arn)
        with _LOCK:
            _EXECUTIONS[arn] = record

        def finished() -> None:
            execution.pipeline_execution_status = record.status
            execution.pipeline_execution_failure_reason = record.failure_reason
            execution.last_modified_time = datetime.now(UTC)

        start(record, execution.pipeline_definition_for_execution, execution.pipeline_parameters or [],
              pipeline_name, finished)  # fmt: skip
        return answer

    def describe_pipeline_execution(self: Any, pipeline_execution_arn: str) -> dict[str, Any]:
        answer: dict[str, Any] = original_describe(self, pipeline_execution_arn)
        record = execution_record(pipeline_execution_arn)
        if record is not None:
            answer["PipelineExecutionStatus"] = record.status
            answer["FailureReason"] = record.failure_reason or ""
        return answer

    def list_pipeline_execution_steps(self: Any) -> Any:
        from moto.sagemaker.exceptions import ValidationError  # noqa: PLC0415

        arn = self._get_param("PipelineExecutionArn")
        record = execution_record(arn)
        if record is None:
            raise ValidationError(message=f"Pipeline execution {arn} does not exist")
        newest_first = self._get_param("SortOrder", "Descending") != "Ascending"
        return ActionResult({"PipelineExecutionSteps": record.api_steps(newest_first)})

    SageMakerModelBackend.start_pipeline_execution = start_pipeline_execution  # type: ignore[method-assign]
    SageMakerModelBackend.describe_pipeline_execution = describe_pipeline_execution  # type: ignore[method-assign]
    SageMakerResponse.list_pipeline_execution_steps = list_pipeline_execution_steps  # type: ignore[attr-defined]
    SageMakerResponse._mlp_pipelines = True  # type: ignore[attr-defined]

    def undo() -> None:
        SageMakerModelBackend.start_pipeline_execution = original_start  # type: ignore[method-assign]
        SageMakerModelBackend.describe_pipeline_execution = original_describe  # type: ignore[method-assign]
        del SageMakerResponse.list_pipeline_execution_steps  # type: ignore[attr-defined]
        del SageMakerResponse._mlp_pipelines  # type: ignore[attr-defined]

    return undo


class PipelineRunner:
    """Runs each started execution in its own thread with clients of the emulator itself.

    Parameters: ``clients``: makes a boto3 client of the emulated AWS by service name;
    ``work_root``: where each execution's job folders go.
    """

    def __init__(self, clients: Callable[[str], Any], work_root: Path) -> None:
        self._clients = clients
        self._work_root = Path(work_root)
        self._threads: list[threading.Thread] = []

    def start(
        self,
        record: ExecutionRecord,
        definition: str,
        parameters: Sequence[Mapping[str, str]],
        pipeline_name: str,
        finished: Callable[[], None],
    ) -> None:
        def run() -> None:
            executor = PipelineExecutor(
                self._clients("s3"),
                self._clients("sagemaker"),
                self._work_root / record.execution_id,
                on_log=lambda step, line: logger.info("[%s %s] %s", record.execution_id, step, line.rstrip()),
            )
            try:
                executor.run(definition, record, parameters, pipeline_name=pipeline_name)
            finally:
                finished()
                logger.info(
                    "pipeline execution %s %s %s", record.arn, record.status, record.failure_reason or ""
                )

        thread = threading.Thread(target=run, name=f"pipeline-{record.execution_id}", daemon=True)
        self._threads.append(thread)
        thread.start()

    def wait(self, timeout_seconds: float) -> None:
        """Wait for running executions (the emulator stops only after they end, up to the timeout)."""
        for thread in self._threads:
            thread.join(timeout_seconds)
