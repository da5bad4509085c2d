"""``mlctl train``: start the stack's SageMaker training pipeline and follow it to the end.

StartPipelineExecution on ``trainingPipelineName`` with the pipeline's own parameters
(``DatasetVersion``, ``InputDataUri``: see infra/pipeline_definition.py), then DescribePipelineExecution
and ListPipelineExecutionSteps until the execution ends. Each step's status is printed once per
change; a failed or stopped execution exits 1 with the failing step's ``FailureReason``.
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mlctl.targets import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    add_target_arguments,
    client,
    resolve_target,
    run_guarded,
)

# The pipeline's parameter names (infra/pipeline_definition.py); repeated here so mlctl never imports
# the SageMaker SDK that builds the definition.
PARAM_DATASET_VERSION = "DatasetVersion"
PARAM_INPUT_DATA_URI = "InputDataUri"
PARAM_TRAINING_EPOCHS = "TrainingEpochs"
SUCCEEDED = "Succeeded"
ENDED = frozenset({SUCCEEDED, "Failed", "Stopped"})
DEFAULT_TIMEOUT_SECONDS = 4 * 3600.0
DEFAULT_POLL_SECONDS = 30.0

Say = Callable[[str], None]


@dataclass(frozen=True)
class PipelineOutcome:
    arn: str
    status: str
    failed_step: str | None = None
    failure_reason: str | None = None


def add_train_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``mlctl train`` on ``commands``."""
    train = commands.add_parser(
        "train",
        help="start the training pipeline and follow it to the end",
        description="StartPipelineExecution on the stack's training pipeline, then print each step's "
        "status changes; exit 0 on Succeeded, 1 on Failed or Stopped (with the failing step's reason).",
    )
    train.add_argument(
        "--dataset-version", metavar="V", help=f"the pipeline's {PARAM_DATASET_VERSION} parameter"
    )
    train.add_argument(
        "--input-data-uri", metavar="URI", help=f"the pipeline's {PARAM_INPUT_DATA_URI} parameter (s3://...)"
    )
    train.add_argument(
        "--epochs",
        type=int,
        metavar="N",
        help=f"the pipeline's {PARAM_TRAINING_EPOCHS} parameter (default: the task's)",
    )
    train.add_argument("--no-wait", action="store_true", help="start it, print the execution ARN, and exit")
    train.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_SECONDS,
        metavar="SECONDS",
        help="seconds to follow it (default 14400)",
    )
    train.add_argument(
        "--poll",
        type=float,
        default=DEFAULT_POLL_SECONDS,
        metavar="SECONDS",
        help="seconds between checks (default 30)",
    )
    add_target_arguments(train)
    train.set_defaults(handler=_train)


def _train(args: argparse.Namespace) -> int:
    def action() -> int:
        if args.timeout < 0 or args.poll < 0:
            raise CommandError("--timeout and --poll must not be negative", EXIT_USAGE)
        if args.input_data_uri and not args.input_data_uri.startswith("s3://"):
            raise CommandError("--input-data-uri must be an s3:// URI", EXIT_USAGE)
        if args.epochs is not None and args.epochs < 1:
            raise CommandError("--epochs must be at least 1", EXIT_USAGE)
        target = resolve_target(args)
        sagemaker = client(target, "sagemaker")
        pipeline = str(target.output("trainingPipelineName"))
        arn = start_training(sagemaker, pipeline, args.dataset_version, args.input_data_uri, args.epochs)
        print(f"started {pipeline}: {arn}", flush=True)
        if args.no_wait:
            return EXIT_OK
        clock = time.monotonic
        started = clock()

        def say(message: str) -> None:
            print(f"[{clock() - started:6.0f}s] {message}", flush=True)

        outcome = follow_execution(
            sagemaker, arn, timeout_seconds=args.timeout, poll_seconds=args.poll, say=say, clock=clock
        )
        if outcome.status == SUCCEEDED:
            return EXIT_OK
        where = f" at step {outcome.failed_step}" if outcome.failed_step else ""
        why = f": {outcome.failure_reason}" if outcome.failure_reason else ""
        raise CommandError(f"pipeline execution {outcome.status}{where}{why} ({arn})", EXIT_FAILED)

    return run_guarded("train", action)


def start_training(
    sagemaker: Any,
    pipeline: str,
    dataset_version: str | None = None,
    input_data_uri: str | None = None,
    epochs: int | None = None,
) -> str:
    """StartPipelineExecution; unset parameters keep the pipeline's defaults."""
    given = {
        PARAM_DATASET_VERSION: dataset_version,
        PARAM_INPUT_DATA_URI: input_data_uri,
        PARAM_TRAINING_EPOCHS: None if epochs is None else str(epochs),
    }
    parameters = [{"Name": name, "Value": value} for name, value in given.items() if value]
    request: dict[str, Any] = {
        "PipelineName": pipeline,
        "PipelineExecutionDescription": "started by mlctl train",
        # Idempotency: a retried call (botocore retries) does not start a second execution.
        "ClientRequestToken": uuid.uuid4().hex,
    }
    if parameters:
        request["PipelineParameters"] = parameters
    return str(sagemaker.start_pipeline_execution(**request)["PipelineExecutionArn"])


def follow_execution(
    sagemaker: Any,
    arn: str,
    *,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    poll_seconds: float = DEFAULT_POLL_SECONDS,
    say: Say = print,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> PipelineOutcome:
    """Poll until the execution ends; each step's status is said once per change."""
    deadline = clock() + timeout_seconds
    seen: dict[str, str] = {}
    status = ""
    while True:
        execution = sagemaker.describe_pipeline_execution(PipelineExecutionArn=arn)
        steps = list_steps(sagemaker, arn)
        ended = execution.get("PipelineExecutionStatus") in ENDED
        if not ended and execution.get("PipelineExecutionStatus") != status:
            status = str(execution.get("PipelineExecutionStatus"))
            say(f"pipeline execution {status}")
        for step in steps:
            name, step_status = str(step.get("StepName")), str(step.get("StepStatus"))
            if seen.get(name) != step_status:
                seen[name] = step_status
                reason = f": {step['FailureReason']}" if step.get("FailureReason") else ""
                say(f"step {name}: {step_status}{reason}")
        if ended and execution.get("PipelineExecutionStatus") != status:
            # Said after the steps, so the log reads in the order things happened.
            status = str(execution.get("PipelineExecutionStatus"))
            say(f"pipeline execution {status}")
        if status in ENDED:
            return _outcome(arn, status, execution, steps)
        remaining = deadline - clock()
        if remaining <= 0:
            raise CommandError(
                f"pipeline execution still {status} after {timeout_seconds:.0f} s; it keeps running: {arn}"
            )
        sleep(min(poll_seconds, remaining))


def list_steps(sagemaker: Any, arn: str) -> list[dict[str, Any]]:
    """Every step of the execution, oldest first."""
    steps: list[dict[str, Any]] = []
    request: dict[str, Any] = {"PipelineExecutionArn": arn, "SortOrder": "Ascending"}
    while True:
        page = sagemaker.list_pipeline_execution_steps(**request)
        steps.extend(page.get("PipelineExecutionSteps", []))
        if not page.get("NextToken"):
            return steps
        request["NextToken"] = page["NextToken"]


def _outcome(
    arn: str, status: str, execution: dict[str, Any], steps: list[dict[str, Any]]
) -> PipelineOutcome:
    if status == SUCCEEDED:
        return PipelineOutcome(arn, status)
    failed = [step for step in steps if step.get("StepStatus") in ("Failed", "Stopped")]
    # The first failing step caused it; later ones may fail only because it did.
    step = next((s for s in failed if s.get("FailureReason")), failed[0] if failed else None)
    reason = (step or {}).get("FailureReason") or execution.get("FailureReason") or None
    return PipelineOutcome(arn, status, str(step["StepName"]) if step else None, reason)
