"""The JSON definition of the platform's SageMaker training pipeline, built offline with the SDK.

    Prepare (processing) -> Train (training) -> Evaluate (processing, evaluation.json)
        -> CheckEvaluation: metric vs EvaluationThreshold
            true:  RegisterModel (model package group, approval from ModelApprovalStatus)
            false: Fail (names the metric and the threshold)

The Pulumi program calls :func:`build_pipeline_definition` inside an ``.apply()`` once bucket
names and the role ARN are known, and passes the text to ``aws.sagemaker.Pipeline``. The build
makes no AWS call (``mlctl plan`` runs without credentials), uploads nothing and is
deterministic: the same spec always gives byte-identical JSON, so ``pulumi preview`` shows no
change when nothing changed.

Training runs in SageMaker script mode: the image's training toolkit unpacks the code bundle named
by ``sagemaker_submit_directory``, installs its ``requirements.txt`` and runs ``sagemaker_program``
with the hyperparameters as ``--name value`` arguments and the ``SM_*`` contract. The bundle is the
team's source folder (``training.source``) or, for the built-in example tasks, the platform's own
(``training_jobs`` and ``models`` with a root ``train.py``): one mechanism for both. With
``training.image`` alone, the team's image runs with its own entry point.

The processing steps (prepare, evaluate) run a script from a bundle through a one-line launcher
that unpacks it: the team's script (``training.source.prepare`` / ``.evaluate``) or the platform's
generic preparer and evaluator (``python -m training_jobs.<step>``). Container image URIs (and their
account ids) come from the SDK's image table, never from this module.
"""

# The SDK is imported inside the build, never at module level: its import needs an AWS region
# (sagemaker.mlops creates a boto3 client) and configures the root logger, see _offline_sdk.
# ruff: noqa: PLC0415

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import boto3

from handlers.common.contracts import (
    BASELINE_FILE,
    DATASET_VERSION_KEY,
    HYPERPARAMETER_PREFIX,
    INPUT_SCHEMA_FILE,
    METRIC_DIRECTION_PREFIX,
    METRIC_PREFIX,
    TRAINING_JOB_KEY,
    TRIGGER_DATASET_VERSION_KEY,
)
from handlers.common.instance_types import has_instance_storage
from infra.source_bundle import PLATFORM_ENTRY_POINT
from infra.stack_config import TrainingConfig
from training_jobs.dataset_layout import MANIFEST_FILE
from training_jobs.evaluation_report import (
    CLASSIFICATION_METRICS,
    DATASET_VERSION_PATH,
    EVALUATION_FILE,
    HIGHER,
    LOWER,
    REGRESSION_METRICS,
    direction_json_path,
    metric_json_path,
)
from training_jobs.sm_env import CONTAINER_CHECKPOINT_DIR
from training_jobs.tasks import REGRESSION, TASKS

if TYPE_CHECKING:  # the SDK is imported only inside the build (see _offline_sdk)
    from sagemaker.core.workflow.parameters import Parameter
    from sagemaker.core.workflow.pipeline_context import PipelineSession
    from sagemaker.core.workflow.properties import PropertyFile
    from sagemaker.mlops.workflow.condition_step import ConditionStep
    from sagemaker.mlops.workflow.fail_step import FailStep
    from sagemaker.mlops.workflow.model_step import ModelStep
    from sagemaker.mlops.workflow.steps import ProcessingStep, TrainingStep

PREPARE_STEP = "Prepare"
TRAIN_STEP = "Train"
EVALUATE_STEP = "Evaluate"
CONDITION_STEP = "CheckEvaluation"
REGISTER_STEP = "RegisterModel"
FAIL_STEP = "Fail"
EVALUATION_REPORT = "EvaluationReport"  # the PropertyFile the condition reads
DATASET_MANIFEST = "DatasetManifest"  # Prepare's manifest.json: the dataset version (lineage)

_PROCESSING = PurePosixPath("/opt/ml/processing")
_EVALUATION_OUTPUT = _PROCESSING / "output" / "evaluation"
_SERVING_INPUT = _PROCESSING / "input" / "serving"
_GENERIC_MANIFEST = _PROCESSING / "input" / "manifest" / MANIFEST_FILE
# ScriptProcessor appends the code file's container path to the command: the shell gets it as $0;
# the step's arguments are the script (or -m module) and its own arguments.
_PROCESSING_LAUNCHER = 'set -eu; mkdir -p /tmp/src; tar -xzf "$0" -C /tmp/src; cd /tmp/src; exec python3 "$@"'
# Evaluate runs the same, then puts the data's serving files (the generic preparer's input schema
# and baseline) beside evaluation.json where the model did not bring its own: the deployer
# publishes what lies there (handlers/deployer/serving_files.py).
_EVALUATION_LAUNCHER = (
    'set -eu; mkdir -p /tmp/src; tar -xzf "$0" -C /tmp/src; cd /tmp/src; python3 "$@"; '
    f"o={_EVALUATION_OUTPUT}; for f in {_SERVING_INPUT}/*/*.json; do "
    '[ -e "$f" ] && [ ! -e "$o/${f##*/}" ] && cp "$f" "$o/"; done; true'
)
_CONTAINER_ARGUMENT_MAX = 256  # CreateTrainingJob / CreateProcessingJob limit per entry point item
# SageMaker script mode: what the training toolkit of the framework images reads (hyperparameters).
SCRIPT_PROGRAM = "sagemaker_program"
SCRIPT_SUBMIT_DIRECTORY = "sagemaker_submit_directory"
SCRIPT_REGION = "sagemaker_region"
SCRIPT_LOG_LEVEL = "sagemaker_container_log_level"
SCRIPT_TORCH_DISTRIBUTED = "sagemaker_torch_distributed_enabled"  # torchrun, one worker per GPU
CODE_CHANNEL = "code"

# The newest PyTorch DLC the SDK's image table has for both training and inference on py311.
FRAMEWORK_VERSION = "2.5"
PY_VERSION = "py311"


@dataclass(frozen=True)
class PipelineDefinitionSpec:
    """Everything the definition depends on: resolved names and ARNs, and the stack's training settings.

    ``code_uri`` is an ``s3://`` URI of the platform's bundle (``training_jobs/``, ``models/`` and
    the built-in ``train.py``); ``source_code_uri`` the team's bundle when ``training.source`` is
    set. ``training`` is the stack's ``training`` section, read as it is; ``model_name`` (e.g.
    ``digits-cnn``, or the team's source folder name) is recorded on the registered model package.
    """

    pipeline_name: str
    region: str
    role_arn: str
    raw_bucket: str
    processed_bucket: str
    artifacts_bucket: str
    kms_key_arn: str
    code_uri: str
    model_package_group_name: str
    model_name: str
    inference_instance_type: str  # the endpoint's: registered versions serve on it
    training: TrainingConfig = field(default_factory=TrainingConfig)
    # The image registered versions serve with (the stack's, for the inference instance family);
    # None: SageMaker's PyTorch inference image for it. And their serving container's environment.
    serving_image_uri: str | None = None
    serving_environment: Mapping[str, str] = field(default_factory=dict)
    source_code_uri: str | None = None
    metric_definitions: Sequence[Mapping[str, str]] = ()
    hyperparameters: Mapping[str, str] = field(default_factory=dict)
    processing_instance_type: str = "ml.m5.xlarge"
    processing_max_runtime_seconds: int = 4 * 3600
    # The newest PyTorch release the SDK's image table has for both training and inference on
    # py311 (2.6 exists only for py312).
    framework_version: str = FRAMEWORK_VERSION
    py_version: str = PY_VERSION

    def __post_init__(self) -> None:
        for name in ("code_uri", "source_code_uri"):
            uri = getattr(self, name)
            if uri is not None and not (uri.startswith("s3://") and uri.endswith(".tar.gz")):
                raise ValueError(f"{name} must be an s3:// URI of a .tar.gz, got {uri!r}")
        if self.training.source is not None and self.source_code_uri is None:
            raise ValueError("training.source is set: source_code_uri must name its bundle")

    @property
    def builtin_task(self) -> str | None:
        """The built-in example task the stack trains, or None for a team's own code."""
        return self.training.builtin_task

    @property
    def metric_json_path(self) -> str:
        """Where the evaluation script puts the gate's metric in evaluation.json."""
        return metric_json_path(self.training.evaluation_metric)


@dataclass(frozen=True)
class _Parameters:
    dataset_version: Parameter
    input_data_uri: Parameter
    evaluation_threshold: Parameter
    approval_status: Parameter
    training_instance_type: Parameter
    training_epochs: Parameter

    def all(self) -> list[Parameter]:
        return [
            self.dataset_version,
            self.input_data_uri,
            self.evaluation_threshold,
            self.approval_status,
            self.training_instance_type,
            self.training_epochs,
        ]


def build_pipeline_definition(spec: PipelineDefinitionSpec) -> str:
    """The pipeline definition JSON for ``aws.sagemaker.Pipeline(pipeline_definition=...)``.

    Parameters: ``spec``, the resolved names, ARNs and training settings.
    Returns: the definition as JSON text (keys sorted; identical for identical specs).
    """
    with _offline_sdk(spec.region):
        from sagemaker.mlops.workflow.pipeline import Pipeline

        session = _pipeline_session(spec)
        params = _parameters(spec)
        prepare = _prepare_step(spec, session, params)
        train = _train_step(spec, session, params, prepare)
        evaluate, report = _evaluate_step(spec, session, prepare, train)
        condition = _condition_step(
            spec,
            params,
            evaluate,
            report,
            if_true=_register_step(spec, session, params, prepare, train, (evaluate, report)),
            if_false=_fail_step(spec, params),
        )
        pipeline = Pipeline(
            name=spec.pipeline_name,
            parameters=params.all(),
            steps=[prepare, train, evaluate, condition],
            sagemaker_session=session,
            # No Experiments trial per execution: nothing reads it, and it needs more IAM.
            pipeline_experiment_config=None,
        )
        definition = json.loads(pipeline.definition())
    return json.dumps(definition, sort_keys=True, indent=1)


@contextmanager
def _offline_sdk(region: str) -> Iterator[None]:
    """Switches that keep the SDK offline, quiet and independent of the machine, restored afterwards."""
    switches: dict[str, str | None] = {  # None: unset
        # Otherwise the SDK calls IAM to check the role.
        "SAGEMAKER_VALIDATE_ROLE": "false",
        # sagemaker.mlops builds a boto3 client at import time and needs a region for it.
        "AWS_DEFAULT_REGION": region,
        # The SDK merges defaults from config files (~/.config/sagemaker, /etc/xdg/sagemaker) into
        # jobs it builds; an empty file keeps this machine's settings out of the definition.
        "SAGEMAKER_ADMIN_CONFIG_OVERRIDE": os.devnull,
        "SAGEMAKER_USER_CONFIG_OVERRIDE": os.devnull,
        # botocore resolves credentials whenever a client is created, and the SDK creates clients
        # it never calls (at import, per processing step). Placeholders end the credential chain
        # before it reaches the instance metadata service, SSO or a credential_process.
        "AWS_ACCESS_KEY_ID": "offline-pipeline-definition",
        "AWS_SECRET_ACCESS_KEY": "offline-pipeline-definition",
        "AWS_SESSION_TOKEN": None,
        "AWS_PROFILE": None,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    saved_environ = {name: os.environ.get(name) for name in switches}
    saved_boto3_session = boto3.DEFAULT_SESSION
    _set_environ(switches)
    try:
        with _quiet_sdk_logging(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Running within a PipelineSession")
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"sagemaker\.")
            from sagemaker.core.config.config_manager import SageMakerConfig

            saved_validate = SageMakerConfig.__dict__["validate_sagemaker_config"]
            # The SDK re-checks the session's config against its JSON schema on every lookup
            # (~0.3 s, ~70 times per build); ours is a constant, checked once by the session.
            SageMakerConfig.validate_sagemaker_config = staticmethod(_skip_known_config(saved_validate))
            try:
                yield
            finally:
                SageMakerConfig.validate_sagemaker_config = saved_validate
    finally:
        boto3.DEFAULT_SESSION = saved_boto3_session
        _set_environ(saved_environ)


def _set_environ(values: Mapping[str, str | None]) -> None:
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@contextmanager
def _quiet_sdk_logging() -> Iterator[None]:
    """The SDK logs every default it applies, from loggers with their own levels, and its import
    configures the root logger (``logging.basicConfig``): keep both out of the caller's output."""
    root = logging.getLogger()
    saved_root = (root.level, list(root.handlers))
    saved_disable = logging.root.manager.disable
    logging.disable(logging.WARNING)  # errors still show
    try:
        yield
    finally:
        logging.disable(saved_disable)
        root.setLevel(saved_root[0])
        root.handlers[:] = saved_root[1]


_SDK_CONFIG: dict[str, Any] = {
    # No telemetry thread (it calls STS and a telemetry URL) from any SDK call of the build.
    "SchemaVersion": "1.0",
    "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}},
}


def _skip_known_config(validate: Any) -> Any:
    original = validate.__func__ if isinstance(validate, staticmethod) else validate

    def validate_unless_known(sagemaker_config: dict[str, Any] | None = None) -> None:
        if sagemaker_config is not _SDK_CONFIG:
            original(sagemaker_config)

    return validate_unless_known


def _pipeline_session(spec: PipelineDefinitionSpec) -> PipelineSession:
    from sagemaker.core.workflow.pipeline_context import PipelineSession

    # An explicit bucket: the SDK would otherwise derive one from the account id (an STS call).
    return PipelineSession(
        boto_session=boto3.Session(region_name=spec.region),
        default_bucket=spec.artifacts_bucket,
        sagemaker_config=_SDK_CONFIG,
    )


def _parameters(spec: PipelineDefinitionSpec) -> _Parameters:
    from sagemaker.core.workflow.parameters import ParameterFloat, ParameterString

    return _Parameters(
        dataset_version=ParameterString("DatasetVersion", default_value="latest"),
        input_data_uri=ParameterString("InputDataUri", default_value=f"s3://{spec.raw_bucket}/raw/"),
        evaluation_threshold=ParameterFloat(
            "EvaluationThreshold", default_value=spec.training.evaluation_threshold
        ),
        approval_status=ParameterString("ModelApprovalStatus", default_value="PendingManualApproval"),
        training_instance_type=ParameterString(
            "TrainingInstanceType", default_value=spec.training.instance_type
        ),
        # A hyperparameter, so a string; the configured or the task's default unless an execution
        # says otherwise.
        training_epochs=ParameterString("TrainingEpochs", default_value=_default_epochs(spec)),
    )


def _default_epochs(spec: PipelineDefinitionSpec) -> str:
    configured = spec.training.hyperparameters.get("epochs")
    if configured is not None:
        return str(configured)
    task = spec.builtin_task
    return str(TASKS[task].defaults.get("epochs", 10)) if task else "10"


def _image_uri(spec: PipelineDefinitionSpec, instance_type: str, scope: str) -> str:
    return _pytorch_image(spec.region, instance_type, scope, spec.framework_version, spec.py_version)


def inference_image_uri(region: str, instance_type: str) -> str:
    """The SageMaker PyTorch inference image the pipeline registers models with, for ``region``."""

    def look_up() -> str:
        with _offline_sdk(region):
            return _pytorch_image(region, instance_type, "inference", FRAMEWORK_VERSION, PY_VERSION)

    return _cached("inference-image", [region, instance_type, FRAMEWORK_VERSION, PY_VERSION], look_up)


def pipeline_definition(spec: PipelineDefinitionSpec) -> str:
    """:func:`build_pipeline_definition`, kept on disk by content: a spec built before is read back.

    The build is deterministic, so the same spec, SDK and code give the same text; importing the
    SDK and building take seconds, which every plan, preview and ``mlctl local up`` would pay.
    """
    return _cached("definition", [repr(spec)], lambda: build_pipeline_definition(spec))


# Where built values are kept; the key covers the inputs, the SDK's version and the code that builds.
CACHE_DIR = Path(__file__).resolve().parent.parent / "build" / "pipeline-definitions"


def _cached(kind: str, inputs: Sequence[str], compute: Callable[[], str]) -> str:
    key = hashlib.sha256(json.dumps([kind, *inputs, *_builder_fingerprint()]).encode()).hexdigest()
    path = CACHE_DIR / f"{kind}-{key[:32]}.txt"
    with suppress(OSError):
        return path.read_text()
    value = compute()
    with suppress(OSError):  # a read-only checkout still plans, just slower
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        temporary.write_text(value)
        temporary.replace(path)  # whole or not at all, for concurrent plans
    return value


@cache
def _builder_fingerprint() -> tuple[str, ...]:
    """The SDK's version and the source of every module whose values reach a definition."""
    from importlib.metadata import version  # noqa: PLC0415

    modules = (sys.modules[__name__], *(sys.modules[name] for name in _DEFINITION_INPUT_MODULES))
    sources = [hashlib.sha256(Path(str(m.__file__)).read_bytes()).hexdigest() for m in modules]
    return (version("sagemaker"), *sources)


_DEFINITION_INPUT_MODULES = (
    "infra.stack_config",
    "infra.source_bundle",
    "handlers.common.contracts",
    "handlers.common.instance_types",
    "training_jobs.evaluation_report",
    "training_jobs.dataset_layout",
    "training_jobs.sm_env",
    "training_jobs.tasks",
)


def _pytorch_image(region: str, instance_type: str, scope: str, version: str, py_version: str) -> str:
    from sagemaker.core import image_uris

    uri: str = image_uris.retrieve(
        "pytorch",
        region,
        version=version,
        py_version=py_version,
        instance_type=instance_type,
        image_scope=scope,
    )
    return uri


def _run_uri(bucket: str, prefix: str, *after: str) -> Any:
    """``s3://<bucket>/<prefix>/<pipeline execution id>[/<after>...]``: every run writes new keys."""
    from sagemaker.core.workflow.execution_variables import ExecutionVariables

    return _join(f"s3://{bucket}/{prefix}", ExecutionVariables.PIPELINE_EXECUTION_ID, *after)


def _join(*values: Any) -> Any:
    from sagemaker.core.workflow.functions import Join

    return Join(on="/", values=list(values))


def _processor(
    spec: PipelineDefinitionSpec, session: PipelineSession, job: str, launcher: str = _PROCESSING_LAUNCHER
) -> Any:
    from sagemaker.core.network import NetworkConfig
    from sagemaker.core.processing import ScriptProcessor

    if len(launcher) > _CONTAINER_ARGUMENT_MAX:
        raise ValueError(f"container argument longer than {_CONTAINER_ARGUMENT_MAX}: {launcher!r}")
    return ScriptProcessor(
        role=spec.role_arn,
        image_uri=_image_uri(spec, spec.processing_instance_type, "training"),
        command=["/bin/sh", "-c", launcher],
        instance_count=1,
        instance_type=spec.processing_instance_type,
        volume_kms_key=spec.kms_key_arn,
        output_kms_key=spec.kms_key_arn,
        max_runtime_in_seconds=spec.processing_max_runtime_seconds,
        base_job_name=job,
        sagemaker_session=session,
        network_config=NetworkConfig(
            enable_network_isolation=spec.training.network_isolation,
            encrypt_inter_container_traffic=spec.training.inter_container_encryption,
        ),
    )


def _s3_input(name: str, s3_uri: Any, local_path: PurePosixPath | None = None) -> Any:
    """An S3 input downloaded to ``local_path`` (default ``/opt/ml/processing/input/<name>``)."""
    from sagemaker.core.shapes import ProcessingInput, ProcessingS3Input

    return ProcessingInput(
        input_name=name,
        s3_input=ProcessingS3Input(
            s3_uri=s3_uri,
            s3_data_type="S3Prefix",
            s3_input_mode="File",
            local_path=str(local_path or _PROCESSING / "input" / name),
        ),
    )


def _s3_output(name: str, s3_uri: Any) -> Any:
    from sagemaker.core.shapes import ProcessingOutput, ProcessingS3Output

    return ProcessingOutput(
        output_name=name,
        s3_output=ProcessingS3Output(
            s3_uri=s3_uri, s3_upload_mode="EndOfJob", local_path=str(_PROCESSING / "output" / name)
        ),
    )


def _prepare_step(
    spec: PipelineDefinitionSpec, session: PipelineSession, params: _Parameters
) -> ProcessingStep:
    from sagemaker.core.workflow.properties import PropertyFile
    from sagemaker.mlops.workflow.steps import ProcessingStep

    # A run prepares everything under InputDataUri (prepare dedupes across batches); the dataset
    # version is the manifest's content hash. DatasetVersion says what started the run (lineage).
    # One output holds train/ validation/ test/ quarantine/ and manifest.json (prepare.py's layout):
    # the manifest is a file at the root, and output folders must not nest.
    folders = [
        "--input-dir",
        str(_PROCESSING / "input" / "raw"),
        "--output-dir",
        str(_PROCESSING / "output" / "dataset"),
    ]
    code, script = _script(spec, "prepare", "training_jobs.prepare")
    step_args = _processor(spec, session, "prepare").run(
        code=code,
        inputs=[_s3_input("raw", params.input_data_uri)],
        outputs=[_s3_output("dataset", _run_uri(spec.processed_bucket, "processed"))],
        arguments=[
            *script,
            *folders,
            *([] if spec.training.source and spec.training.source.prepare else _data_arguments(spec)),
        ],
    )
    manifest = PropertyFile(name=DATASET_MANIFEST, output_name="dataset", path=MANIFEST_FILE)
    return ProcessingStep(name=PREPARE_STEP, step_args=step_args, property_files=[manifest])


def _script(spec: PipelineDefinitionSpec, step: str, platform_module: str) -> tuple[str, list[str]]:
    """The bundle and the launcher arguments of a processing step: the team's own script for
    ``step`` (``training.source.<step>``) when it has one, else the platform's module."""
    team_script = getattr(spec.training.source, step, None) if spec.training.source else None
    if team_script:
        assert spec.source_code_uri is not None  # checked in __post_init__
        return spec.source_code_uri, [team_script]
    return spec.code_uri, ["-m", platform_module]


def _data_arguments(spec: PipelineDefinitionSpec) -> list[str]:
    """The generic preparer's arguments: the built-in task, or the team's declared data schema."""
    dataset = spec.training.dataset
    if dataset is None:
        return ["--task", spec.training.task]
    arguments = ["--format", dataset.format, "--problem", dataset.problem]
    if dataset.target is not None:
        arguments += ["--target", dataset.target]
    if dataset.features is not None:
        arguments += ["--features", ",".join(dataset.features)]
    if dataset.categorical:
        arguments += ["--categorical", ",".join(dataset.categorical)]
    if dataset.format == "jsonl":
        arguments += ["--text-field", dataset.text_field, "--label-field", dataset.label_field]
    for argument in arguments:
        if len(argument) > _CONTAINER_ARGUMENT_MAX:
            raise ValueError(
                f"training.dataset: {argument[:40]!r}... is longer than the {_CONTAINER_ARGUMENT_MAX} "
                "characters SageMaker allows per container argument"
            )
    return arguments


def _dataset_uri(prepare: ProcessingStep) -> Any:
    return prepare.properties.ProcessingOutputConfig.Outputs["dataset"].S3Output.S3Uri


def _train_step(
    spec: PipelineDefinitionSpec, session: PipelineSession, params: _Parameters, prepare: ProcessingStep
) -> TrainingStep:
    from sagemaker.core.shapes import MetricDefinition
    from sagemaker.core.training.configs import (
        CheckpointConfig,
        Compute,
        InputData,
        Networking,
        OutputDataConfig,
        StoppingCondition,
    )
    from sagemaker.mlops.workflow.steps import TrainingStep
    from sagemaker.train.model_trainer import ModelTrainer

    trainer = ModelTrainer(
        sagemaker_session=session,
        role=spec.role_arn,
        # The team's image, or a GPU framework image: the instance type parameter may change per
        # run, the spec's is the default.
        training_image=spec.training.image or _image_uri(spec, spec.training.instance_type, "training"),
        base_job_name="train",
        compute=Compute(
            instance_type=params.training_instance_type,
            instance_count=spec.training.instance_count,
            # SageMaker refuses a volume key for instance types with local NVMe storage (their
            # volumes are hardware-encrypted); a run that overrides the type keeps this choice.
            volume_kms_key_id=None if has_instance_storage(spec.training.instance_type) else spec.kms_key_arn,
            enable_managed_spot_training=spec.training.use_spot,
        ),
        stopping_condition=StoppingCondition(
            max_runtime_in_seconds=spec.training.max_runtime_seconds,
            max_wait_time_in_seconds=spec.training.max_wait_seconds if spec.training.use_spot else None,
        ),
        # A spot interruption restarts the job; the script resumes from the last checkpoint here.
        checkpoint_config=CheckpointConfig(
            s3_uri=_run_uri(spec.artifacts_bucket, "checkpoints", ""),
            local_path=CONTAINER_CHECKPOINT_DIR,
        ),
        output_data_config=OutputDataConfig(
            s3_output_path=_run_uri(spec.artifacts_bucket, "models"), kms_key_id=spec.kms_key_arn
        ),
        networking=Networking(
            enable_network_isolation=spec.training.network_isolation,
            enable_inter_container_traffic_encryption=spec.training.inter_container_encryption,
        ),
        hyperparameters=_training_hyperparameters(spec, params),
    ).with_metric_definitions(
        [MetricDefinition(name=d["Name"], regex=d["Regex"]) for d in spec.metric_definitions]
    )
    dataset = _dataset_uri(prepare)
    step_args = trainer.train(
        input_data_config=[
            InputData(channel_name="train", data_source=_join(dataset, "train", "")),
            InputData(channel_name="validation", data_source=_join(dataset, "validation", "")),
            InputData(channel_name="manifest", data_source=_join(dataset, MANIFEST_FILE)),
            *_code_channel(spec),
        ]
    )
    return TrainingStep(name=TRAIN_STEP, step_args=step_args)


def _training_hyperparameters(spec: PipelineDefinitionSpec, params: _Parameters) -> dict[str, Any]:
    """The stack's hyperparameters, the built-in task's, and script mode's own keys."""
    configured: dict[str, Any] = {
        name: _hyperparameter_text(v) for name, v in spec.training.hyperparameters.items()
    }
    task = spec.builtin_task
    if task is not None:
        configured["task"] = task
    if task is not None or "epochs" in configured:
        configured["epochs"] = params.training_epochs  # mlctl train --epochs sets it per execution
    return {**spec.hyperparameters, **configured, **_script_mode(spec)}


def _script_bundle(spec: PipelineDefinitionSpec) -> tuple[str, str] | None:
    """The entry point and bundle script mode runs: the team's, the platform's for a built-in task,
    or None for a team's own image without source (it runs its own entry point)."""
    if spec.training.source is not None:
        assert spec.source_code_uri is not None  # checked in __post_init__
        return spec.training.source.entry_point, spec.source_code_uri
    if spec.training.image is None:
        return PLATFORM_ENTRY_POINT, spec.code_uri
    return None


def _code_channel(spec: PipelineDefinitionSpec) -> list[Any]:
    """The bundle as the "code" channel: with network isolation the container cannot reach S3, so
    the toolkit unpacks it from the channel (as the SDK's estimators do)."""
    from sagemaker.core.training.configs import InputData

    script = _script_bundle(spec)
    return [] if script is None else [InputData(channel_name=CODE_CHANNEL, data_source=script[1])]


def _script_mode(spec: PipelineDefinitionSpec) -> dict[str, str]:
    """What the framework image's training toolkit needs to run a bundle's entry point."""
    script = _script_bundle(spec)
    if script is None:
        return {}
    # The built-in tasks' train.py is DistributedDataParallel-aware (one worker per GPU); a team's
    # script gets torchrun when it asks for several instances.
    distributed = spec.training.source is None or spec.training.instance_count > 1
    keys = {
        SCRIPT_PROGRAM: script[0],
        SCRIPT_SUBMIT_DIRECTORY: f"/opt/ml/input/data/{CODE_CHANNEL}/{PurePosixPath(script[1]).name}",
        SCRIPT_REGION: spec.region,
        SCRIPT_LOG_LEVEL: "20",
    }
    if distributed:
        keys[SCRIPT_TORCH_DISTRIBUTED] = "true"
    return keys


def _hyperparameter_text(value: str | int | float | bool) -> str:
    """SageMaker hyperparameters are strings; booleans as the toolkit decodes them (JSON)."""
    return json.dumps(value) if isinstance(value, bool) else str(value)


def _evaluate_step(
    spec: PipelineDefinitionSpec, session: PipelineSession, prepare: ProcessingStep, train: TrainingStep
) -> tuple[ProcessingStep, PropertyFile]:
    from sagemaker.core.workflow.properties import PropertyFile
    from sagemaker.mlops.workflow.steps import ProcessingStep

    report = PropertyFile(name=EVALUATION_REPORT, output_name="evaluation", path=EVALUATION_FILE)
    code, script = _script(spec, "evaluate", "training_jobs.evaluate")
    step_args = _processor(spec, session, "evaluate", _EVALUATION_LAUNCHER).run(
        code=code,
        inputs=[
            _s3_input("model", train.properties.ModelArtifacts.S3ModelArtifacts),
            _s3_input("test", _join(_dataset_uri(prepare), "test", "")),
            *_serving_inputs(spec, prepare),
            *_generic_evaluation_inputs(spec, prepare),
        ],
        outputs=[_s3_output("evaluation", _run_uri(spec.artifacts_bucket, "evaluation"))],
        arguments=[
            *script,
            "--model-dir",
            str(_PROCESSING / "input" / "model"),
            "--test-dir",
            str(_PROCESSING / "input" / "test"),
            "--output-dir",
            str(_EVALUATION_OUTPUT),
            *_generic_evaluation_arguments(spec),
        ],
    )
    return ProcessingStep(name=EVALUATE_STEP, step_args=step_args, property_files=[report]), report


def _scores_a_teams_model(spec: PipelineDefinitionSpec) -> bool:
    """The platform's evaluator scoring a model of the team's code (it brought no evaluation script)."""
    source = spec.training.source
    return spec.builtin_task is None and (source is None or source.evaluate is None)


def _generic_evaluation_inputs(spec: PipelineDefinitionSpec, prepare: ProcessingStep) -> list[Any]:
    """The dataset's manifest (its classes and version) for the generic evaluator of a team's model."""
    if not _scores_a_teams_model(spec):
        return []
    return [_s3_input("manifest", _join(_dataset_uri(prepare), MANIFEST_FILE), _GENERIC_MANIFEST.parent)]


def _generic_evaluation_arguments(spec: PipelineDefinitionSpec) -> list[str]:
    if not _scores_a_teams_model(spec) or spec.training.dataset is None:
        return []
    return ["--problem", spec.training.dataset.problem, "--manifest", str(_GENERIC_MANIFEST)]


def _serving_inputs(spec: PipelineDefinitionSpec, prepare: ProcessingStep) -> list[Any]:
    """The generic preparer's input schema and baseline, for the evaluation launcher to publish
    beside the report (a team's own preparation script makes none)."""
    if spec.training.dataset is None or (spec.training.source and spec.training.source.prepare):
        return []
    stems = {name: name.split(".")[0] for name in (INPUT_SCHEMA_FILE, BASELINE_FILE)}
    return [
        _s3_input(f"serving-{stem}", _join(_dataset_uri(prepare), name), _SERVING_INPUT / stem)
        for name, stem in stems.items()
    ]


def _register_step(  # noqa: PLR0917 - the steps it reads from
    spec: PipelineDefinitionSpec,
    session: PipelineSession,
    params: _Parameters,
    prepare: ProcessingStep,
    train: TrainingStep,
    evaluation: tuple[ProcessingStep, PropertyFile],
) -> ModelStep:
    from sagemaker.core.model_metrics import MetricsSource, ModelMetrics
    from sagemaker.core.workflow.functions import Join, JsonGet
    from sagemaker.mlops.workflow.model_step import ModelStep
    from sagemaker.serve.model_builder import ModelBuilder

    evaluate, report = evaluation

    def reported(json_path: str) -> JsonGet:
        return JsonGet(step_name=evaluate.name, property_file=report, json_path=json_path)

    report_uri = _join(
        evaluate.properties.ProcessingOutputConfig.Outputs["evaluation"].S3Output.S3Uri, EVALUATION_FILE
    )
    builder = ModelBuilder(
        image_uri=spec.serving_image_uri or _image_uri(spec, spec.inference_instance_type, "inference"),
        env_vars=dict(spec.serving_environment),
        s3_model_data_url=train.properties.ModelArtifacts.S3ModelArtifacts,
        role_arn=spec.role_arn,
        sagemaker_session=session,
        dependencies=None,  # the default packs local files and uploads them
    )
    step_args = builder.register(
        model_package_group_name=spec.model_package_group_name,
        content_types=["application/json"],
        response_types=["application/json"],
        inference_instances=[spec.inference_instance_type],
        transform_instances=[spec.inference_instance_type],
        approval_status=params.approval_status,
        model_metrics=ModelMetrics(
            model_statistics=MetricsSource(content_type="application/json", s3_uri=report_uri)
        ),
        description=f"{spec.model_name}{_task_text(spec)}, gated on {spec.training.evaluation_metric}",
        # What the registry, mlctl and the champion gate read (handlers/registry/client.py): each
        # metric of evaluation.json, the dataset version it was trained on, the job and its epochs.
        # Join turns JsonGet's number into the string a metadata value must be.
        customer_metadata_properties={
            "model": spec.model_name,
            **({"task": spec.builtin_task} if spec.builtin_task else {}),
            TRIGGER_DATASET_VERSION_KEY: params.dataset_version,
            # The dataset version from Prepare's manifest: an evaluation script need not repeat it.
            DATASET_VERSION_KEY: JsonGet(
                step_name=prepare.name, property_file=DATASET_MANIFEST, json_path=DATASET_VERSION_PATH
            ),
            TRAINING_JOB_KEY: train.properties.TrainingJobName,
            f"{HYPERPARAMETER_PREFIX}epochs": params.training_epochs,
            **{
                f"{METRIC_PREFIX}{metric}": Join(
                    on="",
                    values=[
                        JsonGet(
                            step_name=evaluate.name, property_file=report, json_path=metric_json_path(metric)
                        )
                    ],
                )
                for metric in _reported_metrics(spec)
            },
            # Which way each is better, as the report states it (the champion gate reads these).
            **{
                f"{METRIC_DIRECTION_PREFIX}{metric}": reported(direction_json_path(metric))
                for metric in _reported_metrics(spec)
            },
        },
    )
    return ModelStep(name=REGISTER_STEP, step_args=step_args)


def _reported_metrics(spec: PipelineDefinitionSpec) -> tuple[str, ...]:
    """The metrics the registration records: every metric the platform's evaluator writes for a
    built-in task; the gate's metric for a team's evaluation script (its whole report is the
    version's model quality statistics)."""
    task = spec.builtin_task
    if task is None:
        return (spec.training.evaluation_metric,)
    return REGRESSION_METRICS if TASKS[task].kind == REGRESSION else CLASSIFICATION_METRICS


def _task_text(spec: PipelineDefinitionSpec) -> str:
    return f" for task {spec.builtin_task}" if spec.builtin_task else " (the team's training code)"


def _fail_step(spec: PipelineDefinitionSpec, params: _Parameters) -> FailStep:
    from sagemaker.core.workflow.functions import Join
    from sagemaker.mlops.workflow.fail_step import FailStep

    return FailStep(
        name=FAIL_STEP,
        error_message=Join(
            on=" ",
            values=[
                f"Model not registered: {spec.training.evaluation_metric} on the test split does not meet",
                params.evaluation_threshold,
                f"in the direction {EVALUATION_FILE} states (see step {EVALUATE_STEP})",
            ],
        ),
    )


def _condition_step(
    spec: PipelineDefinitionSpec,
    params: _Parameters,
    evaluate: ProcessingStep,
    report: PropertyFile,
    *,
    if_true: ModelStep,
    if_false: FailStep,
) -> ConditionStep:
    """The metric against the threshold in the direction the report states for it.

    Conditions of a step must all hold, and SageMaker has no And: "higher is better => value >=
    threshold" is ``direction == lower OR value >= threshold``, and its mirror for lower. A report
    without the metric or its direction fails the step (JsonGet finds nothing).
    """
    from sagemaker.core.workflow.conditions import (
        ConditionEquals,
        ConditionGreaterThanOrEqualTo,
        ConditionLessThanOrEqualTo,
        ConditionOr,
    )
    from sagemaker.core.workflow.functions import JsonGet
    from sagemaker.mlops.workflow.condition_step import ConditionStep

    def reported(path: str) -> JsonGet:
        return JsonGet(step_name=evaluate.name, property_file=report, json_path=path)

    metric = reported(spec.metric_json_path)
    direction = reported(direction_json_path(spec.training.evaluation_metric))
    threshold = params.evaluation_threshold
    return ConditionStep(
        name=CONDITION_STEP,
        conditions=[
            ConditionOr(
                conditions=[
                    ConditionEquals(left=direction, right=LOWER),
                    ConditionGreaterThanOrEqualTo(left=metric, right=threshold),
                ]
            ),
            ConditionOr(
                conditions=[
                    ConditionEquals(left=direction, right=HIGHER),
                    ConditionLessThanOrEqualTo(left=metric, right=threshold),
                ]
            ),
        ],
        if_steps=[if_true],
        else_steps=[if_false],
    )
