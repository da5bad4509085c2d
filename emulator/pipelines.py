"""Execute a SageMaker pipeline definition on this machine: the JSON the Pulumi program deploys.

The definition is read as SageMaker reads it: parameters with their defaults and the execution's
overrides, ``Get`` / ``Std:Join`` / ``Std:JsonGet`` expressions, and the steps this platform's
pipelines use: Processing and Training (run by the local job runners, recorded in the emulated
SageMaker API), Condition (its outcome chooses ``IfSteps`` or ``ElseSteps``), RegisterModel
(CreateModelPackage with the step's arguments) and Fail. Any other step type fails the execution
with a clear reason. Steps run one at a time, in the order their property references and
``DependsOn`` allow. Each step's status, failure reason and metadata are kept in the shape of
ListPipelineExecutionSteps (docs/local-platform.md).
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emulator.job_process import LogCallback
from emulator.processing import LocalProcessingRunner
from emulator.training.errors import InvalidTrainingJobError
from emulator.training.job import JobStatus, TrainingJobSpec
from emulator.training.runner import LocalTrainingRunner
from handlers.common.s3_uri import S3Uri

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sagemaker import SageMakerClient

logger = logging.getLogger(__name__)

EXECUTING, SUCCEEDED, FAILED = "Executing", "Succeeded", "Failed"
STARTING, STEP_EXECUTING = "Starting", "Executing"
JOB_NAME_MAX = 63
_STEP_REFERENCE = re.compile(r"^Steps\.([A-Za-z0-9_-]+)")
_PATH_TOKEN = re.compile(r"\.?([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]|\['([^']*)'\]|\[\"([^\"]*)\"\]")


class StepFailure(Exception):
    """A step ended ``Failed``; the message is its FailureReason."""


@dataclass
class StepRecord:
    """One step of an execution, as ListPipelineExecutionSteps reports it."""

    name: str
    type: str
    status: str = STARTING
    start_time: datetime = field(default_factory=lambda: datetime.now(UTC))
    end_time: datetime | None = None
    failure_reason: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def as_api(self) -> dict[str, Any]:
        item: dict[str, Any] = {
            "StepName": self.name,
            "StepDisplayName": self.name,
            "StartTime": self.start_time,
            "StepStatus": self.status,
            "Metadata": self.metadata,
            "AttemptCount": 1,
        }
        if self.end_time is not None:
            item["EndTime"] = self.end_time
        if self.failure_reason:
            item["FailureReason"] = self.failure_reason
        return item


@dataclass
class ExecutionRecord:
    """An execution's status and its steps, in the order they started."""

    arn: str
    status: str = EXECUTING
    failure_reason: str | None = None
    steps: list[StepRecord] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def execution_id(self) -> str:
        return self.arn.rsplit("/", 1)[-1]

    def start(self, name: str, type_: str) -> StepRecord:
        step = StepRecord(name, type_, STEP_EXECUTING)
        with self._lock:
            self.steps.append(step)
        return step

    def api_steps(self, newest_first: bool = True) -> list[dict[str, Any]]:
        with self._lock:
            steps = [step.as_api() for step in self.steps]
        return list(reversed(steps)) if newest_first else steps

    def step(self, name: str) -> StepRecord | None:
        with self._lock:
            return next((step for step in self.steps if step.name == name), None)


@dataclass
class _Context:
    """What expressions can refer to during one execution."""

    parameters: dict[str, Any]
    execution: dict[str, Any]
    properties: dict[str, dict[str, Any]] = field(default_factory=dict)
    property_files: dict[tuple[str, str], S3Uri] = field(default_factory=dict)


class PipelineExecutor:
    """Runs pipeline definitions against an S3 and a SageMaker API (the emulator's).

    Parameters: ``s3``, ``sagemaker``: clients of the emulated AWS; ``work_root``: where job folders
    go; ``on_log``: each line a job prints (its step name first).
    """

    def __init__(
        self,
        s3: S3Client,
        sagemaker: SageMakerClient,
        work_root: Path,
        *,
        on_log: Callable[[str, str], None] | None = None,
    ) -> None:
        self._s3 = s3
        self._sagemaker = sagemaker
        self._work_root = Path(work_root)
        self._on_log = on_log
        self._processing_jobs = LocalProcessingRunner(s3, sagemaker, self._work_root / "processing")
        self._training_jobs = LocalTrainingRunner(s3, sagemaker, self._work_root / "training")
        self._steps: dict[str, Callable[[Mapping[str, Any], _Context, StepRecord], Any]] = {
            "Processing": self._processing_step,
            "Training": self._training_step,
            "Condition": self._condition_step,
            "RegisterModel": self._register_step,
            "Fail": self._fail_step,
        }

    def run(
        self,
        definition: str | Mapping[str, Any],
        record: ExecutionRecord,
        overrides: Sequence[Mapping[str, str]] = (),
        *,
        pipeline_name: str = "",
    ) -> ExecutionRecord:
        """Execute ``definition`` to its end, filling ``record``; a failing step fails the execution."""
        document = json.loads(definition) if isinstance(definition, str) else dict(definition)
        try:
            context = _Context(
                parameters=parameter_values(document.get("Parameters", []), overrides),
                execution={
                    "PipelineExecutionId": record.execution_id,
                    "PipelineExecutionArn": record.arn,
                    "PipelineName": pipeline_name,
                    "StartDateTime": datetime.now(UTC).isoformat(),
                },
            )
            for step in in_dependency_order(document.get("Steps", [])):
                self._run_step(step, context, record)
        except StepFailure as failure:
            record.status, record.failure_reason = FAILED, str(failure)
        except Exception as exc:  # the emulator's own trouble: the execution fails, saying so
            logger.exception("pipeline execution %s failed in the emulator", record.arn)
            record.status, record.failure_reason = FAILED, f"InternalServerError: {exc!r}"
        else:
            record.status = SUCCEEDED
        return record

    # --- steps -----------------------------------------------------------------------------------------

    def _run_step(self, step: Mapping[str, Any], context: _Context, record: ExecutionRecord) -> None:
        name, type_ = str(step["Name"]), str(step["Type"])
        current = record.start(name, type_)
        try:
            if type_ not in self._steps:
                raise StepFailure(
                    f"step type {type_!r} does not run locally (supported: {', '.join(self._steps)})"
                )
            branch = self._steps[type_](step, context, current)
        except StepFailure as failure:
            current.status, current.failure_reason = FAILED, str(failure)
            current.end_time = datetime.now(UTC)
            raise
        current.status, current.end_time = SUCCEEDED, datetime.now(UTC)
        for nested in in_dependency_order(branch or []):
            self._run_step(nested, context, record)

    def _processing_step(self, step: Mapping[str, Any], context: _Context, current: StepRecord) -> None:
        request = resolve(step["Arguments"], context, self._s3)
        job_name = _job_name(context, step["Name"])
        result = self._processing_jobs.run(job_name, request, on_log=self._log(step["Name"]))
        arn = self._sagemaker.describe_processing_job(ProcessingJobName=job_name)["ProcessingJobArn"]
        current.metadata = {"ProcessingJob": {"Arn": arn}}
        if not result.succeeded:
            raise StepFailure(result.failure_reason or "the processing job failed")
        outputs = {
            output["OutputName"]: output
            for output in request.get("ProcessingOutputConfig", {}).get("Outputs", [])
        }
        context.properties[step["Name"]] = {
            "ProcessingJobName": job_name,
            "ProcessingJobArn": arn,
            "ProcessingJobStatus": "Completed",
            "ProcessingOutputConfig": {"Outputs": outputs},
        }
        for property_file in step.get("PropertyFiles", []):
            folder = S3Uri.parse(outputs[property_file["OutputName"]]["S3Output"]["S3Uri"])
            key = (step["Name"], property_file["PropertyFileName"])
            context.property_files[key] = folder.child(property_file["FilePath"])

    def _training_step(self, step: Mapping[str, Any], context: _Context, current: StepRecord) -> None:
        request = resolve(step["Arguments"], context, self._s3)
        spec = TrainingJobSpec.from_request(_job_name(context, step["Name"]), request)
        try:
            result = self._training_jobs.run(spec, on_log=self._log(step["Name"]))
        except InvalidTrainingJobError as exc:  # SageMaker's ValidationException: the step fails
            raise StepFailure(f"ValidationException: {exc}") from None
        arn = self._sagemaker.describe_training_job(TrainingJobName=spec.job_name)["TrainingJobArn"]
        current.metadata = {"TrainingJob": {"Arn": arn}}
        if result.status != JobStatus.COMPLETED:
            raise StepFailure(result.failure_reason or f"the training job ended {result.status}")
        context.properties[step["Name"]] = {
            "TrainingJobName": spec.job_name,
            "TrainingJobArn": arn,
            "TrainingJobStatus": "Completed",
            "ModelArtifacts": {"S3ModelArtifacts": str(spec.model_artifact)},
            "FinalMetricDataList": [
                {"MetricName": name, "Value": value} for name, value in result.final_metrics.items()
            ],
            "HyperParameters": spec.string_hyperparameters,
        }

    def _condition_step(
        self, step: Mapping[str, Any], context: _Context, current: StepRecord
    ) -> list[Mapping[str, Any]]:
        arguments = step["Arguments"]
        outcome = all(evaluate_condition(c, context, self._s3) for c in arguments.get("Conditions", []))
        current.metadata = {"Condition": {"Outcome": "True" if outcome else "False"}}
        return list(arguments.get("IfSteps" if outcome else "ElseSteps", []))

    def _register_step(self, step: Mapping[str, Any], context: _Context, current: StepRecord) -> None:
        request = resolve(step["Arguments"], context, self._s3)
        arn = str(self._sagemaker.create_model_package(**request)["ModelPackageArn"])
        current.metadata = {"RegisterModel": {"Arn": arn}}
        context.properties[step["Name"]] = {"ModelPackageArn": arn}

    def _fail_step(self, step: Mapping[str, Any], context: _Context, current: StepRecord) -> None:
        message = str(resolve(step.get("Arguments", {}).get("ErrorMessage", ""), context, self._s3))
        current.metadata = {"Fail": {"ErrorMessage": message}}
        raise StepFailure(message or "the pipeline reached a Fail step")

    def _log(self, step_name: str) -> LogCallback | None:
        if self._on_log is None:
            return None
        on_log = self._on_log
        return lambda line: on_log(step_name, line)


# --- the definition's language ------------------------------------------------------------------------


def parameter_values(
    declared: Sequence[Mapping[str, Any]], overrides: Sequence[Mapping[str, str]] = ()
) -> dict[str, Any]:
    """Each parameter's value for an execution: the override (typed as declared), else the default."""
    given = {str(item["Name"]): item["Value"] for item in overrides}
    unknown = sorted(set(given) - {str(p["Name"]) for p in declared})
    if unknown:
        raise StepFailure(f"unknown pipeline parameters: {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for parameter in declared:
        name, type_ = str(parameter["Name"]), str(parameter.get("Type", "String"))
        value = given.get(name, parameter.get("DefaultValue"))
        try:
            values[name] = _typed(value, type_)
        except ValueError:
            raise StepFailure(f"parameter {name}: {value!r} is not a {type_}") from None
    return values


def _typed(value: Any, type_: str) -> Any:
    if value is None or type_ == "String":
        return value
    if type_ == "Float":
        return float(value)
    if type_ == "Integer":
        return int(value)
    if type_ == "Boolean":
        return value if isinstance(value, bool) else str(value).lower() == "true"
    return value


def resolve(value: Any, context: _Context, s3: Any) -> Any:
    """``value`` with every expression (``Get``, ``Std:Join``, ``Std:JsonGet``) replaced by its value."""
    if isinstance(value, list):
        return [resolve(item, context, s3) for item in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Get"}:
        return _get(str(value["Get"]), context)
    if set(value) == {"Std:Join"}:
        join = value["Std:Join"]
        return str(join.get("On", "")).join(_text(resolve(v, context, s3)) for v in join.get("Values", []))
    if set(value) == {"Std:JsonGet"}:
        return _json_get(value["Std:JsonGet"], context, s3)
    return {key: resolve(item, context, s3) for key, item in value.items()}


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _get(reference: str, context: _Context) -> Any:
    scope, _, rest = reference.partition(".")
    if scope == "Parameters":
        if rest not in context.parameters:
            raise StepFailure(f"no pipeline parameter {rest!r}")
        return context.parameters[rest]
    if scope == "Execution":
        if rest not in context.execution:
            raise StepFailure(f"execution variable {rest!r} is not available locally")
        return context.execution[rest]
    if scope == "Steps":
        step, _, path = rest.partition(".")
        if step not in context.properties:
            raise StepFailure(f"step {step!r} has no properties yet (it has not run, or it failed)")
        return follow_path(context.properties[step], path, reference)
    raise StepFailure(f"cannot resolve {reference!r}")


def follow_path(document: Any, path: str, reference: str = "") -> Any:
    """``a.b['c'][0]`` inside ``document`` (a dict keyed by name stands for a list by name)."""
    value = document
    for match in _PATH_TOKEN.finditer(path):
        name, index, key_single, key_double = match.groups()
        key: Any = name or key_single or key_double
        try:
            if index is not None:
                value = list(value.values())[int(index)] if isinstance(value, dict) else value[int(index)]
            else:
                value = value[key]
        except (KeyError, IndexError, TypeError):
            raise StepFailure(f"{reference or path}: no {key if index is None else index!r} here") from None
    return value


def _json_get(spec: Mapping[str, Any], context: _Context, s3: Any) -> Any:
    reference = str(spec["PropertyFile"]["Get"])  # Steps.<step>.PropertyFiles.<name>
    parts = reference.split(".")
    if len(parts) != 4 or parts[0] != "Steps" or parts[2] != "PropertyFiles":
        raise StepFailure(f"JsonGet needs Steps.<step>.PropertyFiles.<name>, not {reference!r}")
    location = context.property_files.get((parts[1], parts[3]))
    if location is None:
        raise StepFailure(f"property file {parts[3]!r} of step {parts[1]!r} is not available")
    try:
        document = json.loads(s3.get_object(Bucket=location.bucket, Key=location.key)["Body"].read())
    except Exception as exc:
        raise StepFailure(f"could not read the property file {location}: {exc}") from exc
    return follow_path(document, str(spec["Path"]), f"{location} {spec['Path']}")


_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "Equals": lambda left, right: left == right,
    "GreaterThan": lambda left, right: left > right,
    "GreaterThanOrEqualTo": lambda left, right: left >= right,
    "LessThan": lambda left, right: left < right,
    "LessThanOrEqualTo": lambda left, right: left <= right,
}


def evaluate_condition(condition: Mapping[str, Any], context: _Context, s3: Any) -> bool:
    """One condition of a Condition step, as SageMaker evaluates it."""
    type_ = str(condition["Type"])
    if type_ in _COMPARISONS:
        left, right = (
            resolve(condition["LeftValue"], context, s3),
            resolve(condition["RightValue"], context, s3),
        )
        try:
            return _COMPARISONS[type_](left, right)
        except TypeError:
            raise StepFailure(f"{type_}: cannot compare {left!r} with {right!r}") from None
    if type_ == "In":
        value = resolve(condition["QueryValue"], context, s3)
        return value in [resolve(v, context, s3) for v in condition["Values"]]
    if type_ == "Not":
        return not evaluate_condition(condition["Expression"], context, s3)
    if type_ == "Or":
        return any(evaluate_condition(c, context, s3) for c in condition["Conditions"])
    raise StepFailure(f"condition type {type_!r} does not run locally")


def in_dependency_order(steps: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The steps ordered so each comes after the steps it refers to or names in ``DependsOn``
    (otherwise in the definition's order)."""
    names = {str(step["Name"]) for step in steps}
    ordered: list[Mapping[str, Any]] = []
    done: set[str] = set()

    def visit(step: Mapping[str, Any], path: tuple[str, ...]) -> None:
        name = str(step["Name"])
        if name in done:
            return
        if name in path:
            raise StepFailure(f"the steps {' -> '.join((*path, name))} depend on each other")
        for dependency in sorted(step_dependencies(step) & names):
            visit(next(s for s in steps if s["Name"] == dependency), (*path, name))
        done.add(name)
        ordered.append(step)

    for step in steps:
        visit(step, ())
    return ordered


def step_dependencies(step: Mapping[str, Any]) -> set[str]:
    """The steps ``step`` refers to in its arguments, or names in ``DependsOn``."""
    found = {str(name) for name in step.get("DependsOn", [])}
    for reference in _references(step.get("Arguments", {})):
        match = _STEP_REFERENCE.match(reference)
        if match:
            found.add(match.group(1))
    return found - {str(step["Name"])}


def _references(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        if set(value) == {"Get"}:
            yield str(value["Get"])
        for item in value.values():
            yield from _references(item)
    elif isinstance(value, list):
        for item in value:
            yield from _references(item)


def _job_name(context: _Context, step_name: str) -> str:
    """As SageMaker Pipelines names its jobs: ``pipelines-<execution id>-<step>-<random>``."""
    stem = f"pipelines-{context.execution['PipelineExecutionId']}-{step_name}"[: JOB_NAME_MAX - 11]
    return f"{stem}-{secrets.token_hex(5)}"
