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

The jobs run the code tarball at ``code_uri`` (the ``training_jobs`` and ``models`` packages)
as ``python -m training_jobs.<step>``: the scripts use package-relative imports, so a
one-line launcher unpacks the tarball and runs the module. Container image URIs (and their
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
    DATASET_VERSION_KEY,
    HYPERPARAMETER_PREFIX,
    METRIC_PREFIX,
    TRAINING_JOB_KEY,
    TRIGGER_DATASET_VERSION_KEY,
    lower_is_better,
)
from handlers.common.instance_types import has_instance_storage
from infra.stack_config import TrainingConfig
from training_jobs.evaluation_report import (
    CLASSIFICATION_METRICS,
    DATASET_VERSION_PATH,
    EVALUATION_FILE,
    REGRESSION_METRICS,
    metric_json_path,
)
from training_jobs.prepare import MANIFEST_FILE
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

_PROCESSING = PurePosixPath("/opt/ml/processing")
_TRAINING_CODE_CHANNEL = PurePosixPath("/opt/ml/input/data/code")
# ScriptProcessor appends the code file's container path to the command: the shell gets it as $0.
_PROCESSING_LAUNCHER = (
    'set -eu; mkdir -p /tmp/src; tar -xzf "$0" -C /tmp/src; cd /tmp/src; exec python3 -m "$@"'
)
# ModelTrainer sets a container entry point only for SourceCode, which uploads driver files under
# a timestamped key; the definition gets this launcher instead (see _with_training_launcher).
# torchrun starts one worker per GPU; several instances meet at algo-1 (SageMaker's host names).
_TRAINING_LAUNCHER = (
    'set -eu; mkdir -p /opt/ml/code; tar -xzf "$0" -C /opt/ml/code; cd /opt/ml/code; '
    "g=$(nvidia-smi -L 2>/dev/null | wc -l); exec torchrun {rendezvous} "
    "--nproc-per-node=$((g > 0 ? g : 1)) -m training_jobs.train"
)
_CONTAINER_ARGUMENT_MAX = 256  # CreateTrainingJob / CreateProcessingJob limit per entry point item

# The newest PyTorch DLC the SDK's image table has for both training and inference on py311.
FRAMEWORK_VERSION = "2.5"
PY_VERSION = "py311"


@dataclass(frozen=True)
class PipelineDefinitionSpec:
    """Everything the definition depends on: resolved names and ARNs, and the stack's training settings.

    ``code_uri`` is an ``s3://`` URI of a ``.tar.gz`` holding the packages ``training_jobs/``
    and ``models/``. ``training`` is the stack's ``training`` section, read as it is (its task is what
    ``training_jobs`` prepares and trains); ``model_name`` (e.g. ``digits-cnn``) is recorded on the
    registered model package.
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
    metric_definitions: Sequence[Mapping[str, str]] = ()
    hyperparameters: Mapping[str, str] = field(default_factory=dict)
    processing_instance_type: str = "ml.m5.xlarge"
    processing_max_runtime_seconds: int = 4 * 3600
    # The newest PyTorch release the SDK's image table has for both training and inference on
    # py311 (2.6 exists only for py312).
    framework_version: str = FRAMEWORK_VERSION
    py_version: str = PY_VERSION

    def __post_init__(self) -> None:
        if not (self.code_uri.startswith("s3://") and self.code_uri.endswith(".tar.gz")):
            raise ValueError(f"code_uri must be an s3:// URI of a .tar.gz, got {self.code_uri!r}")

    @property
    def lower_is_better(self) -> bool:
        return lower_is_better(self.training.evaluation_metric)

    @property
    def metric_json_path(self) -> str:
        """Where evaluate.py puts the metric in evaluation.json."""
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
            if_true=_register_step(spec, session, params, train, (evaluate, report)),
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
    return json.dumps(_with_training_launcher(definition, spec), sort_keys=True, indent=1)


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
        # A hyperparameter, so a string; the task's own default unless an execution says otherwise.
        training_epochs=ParameterString(
            "TrainingEpochs", default_value=str(TASKS[spec.training.task].defaults.get("epochs", 10))
        ),
    )


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
    "handlers.common.contracts",
    "handlers.common.instance_types",
    "training_jobs.evaluation_report",
    "training_jobs.prepare",
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


def _processor(spec: PipelineDefinitionSpec, session: PipelineSession, job: str) -> Any:
    from sagemaker.core.network import NetworkConfig
    from sagemaker.core.processing import ScriptProcessor

    return ScriptProcessor(
        role=spec.role_arn,
        image_uri=_image_uri(spec, spec.processing_instance_type, "training"),
        command=["/bin/sh", "-c", _PROCESSING_LAUNCHER],
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


def _s3_input(name: str, s3_uri: Any) -> Any:
    from sagemaker.core.shapes import ProcessingInput, ProcessingS3Input

    return ProcessingInput(
        input_name=name,
        s3_input=ProcessingS3Input(
            s3_uri=s3_uri,
            s3_data_type="S3Prefix",
            s3_input_mode="File",
            local_path=str(_PROCESSING / "input" / name),
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
    from sagemaker.mlops.workflow.steps import ProcessingStep

    # A run prepares everything under InputDataUri (prepare dedupes across batches); the dataset
    # version is the manifest's content hash. DatasetVersion says what started the run (lineage).
    # One output holds train/ validation/ test/ quarantine/ and manifest.json (prepare.py's layout):
    # the manifest is a file at the root, and output folders must not nest.
    raw = params.input_data_uri
    step_args = _processor(spec, session, "prepare").run(
        code=spec.code_uri,
        inputs=[_s3_input("raw", raw)],
        outputs=[_s3_output("dataset", _run_uri(spec.processed_bucket, "processed"))],
        arguments=[
            "training_jobs.prepare",
            "--task",
            spec.training.task,
            "--input-dir",
            str(_PROCESSING / "input" / "raw"),
            "--output-dir",
            str(_PROCESSING / "output" / "dataset"),
        ],
    )
    return ProcessingStep(name=PREPARE_STEP, step_args=step_args)


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
        # A GPU image: the instance type parameter may change per run, the spec's is the default.
        training_image=_image_uri(spec, spec.training.instance_type, "training"),
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
        # A spot interruption restarts the job; train.py resumes from the last checkpoint here.
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
        # train.py rejects unknown hyperparameters; the task selects the architecture.
        hyperparameters={
            **spec.hyperparameters,
            "task": spec.training.task,
            "epochs": params.training_epochs,
        },
    ).with_metric_definitions(
        [MetricDefinition(name=d["Name"], regex=d["Regex"]) for d in spec.metric_definitions]
    )
    dataset = _dataset_uri(prepare)
    step_args = trainer.train(
        input_data_config=[
            InputData(channel_name="train", data_source=_join(dataset, "train", "")),
            InputData(channel_name="validation", data_source=_join(dataset, "validation", "")),
            InputData(channel_name="manifest", data_source=_join(dataset, MANIFEST_FILE)),
            InputData(channel_name="code", data_source=spec.code_uri),
        ]
    )
    return TrainingStep(name=TRAIN_STEP, step_args=step_args)


def _evaluate_step(
    spec: PipelineDefinitionSpec, session: PipelineSession, prepare: ProcessingStep, train: TrainingStep
) -> tuple[ProcessingStep, PropertyFile]:
    from sagemaker.core.workflow.properties import PropertyFile
    from sagemaker.mlops.workflow.steps import ProcessingStep

    report = PropertyFile(name=EVALUATION_REPORT, output_name="evaluation", path=EVALUATION_FILE)
    step_args = _processor(spec, session, "evaluate").run(
        code=spec.code_uri,
        inputs=[
            _s3_input("model", train.properties.ModelArtifacts.S3ModelArtifacts),
            _s3_input("test", _join(_dataset_uri(prepare), "test", "")),
        ],
        outputs=[_s3_output("evaluation", _run_uri(spec.artifacts_bucket, "evaluation"))],
        arguments=[
            "training_jobs.evaluate",
            "--model-dir",
            str(_PROCESSING / "input" / "model"),
            "--test-dir",
            str(_PROCESSING / "input" / "test"),
            "--output-dir",
            str(_PROCESSING / "output" / "evaluation"),
        ],
    )
    return ProcessingStep(name=EVALUATE_STEP, step_args=step_args, property_files=[report]), report


def _register_step(
    spec: PipelineDefinitionSpec,
    session: PipelineSession,
    params: _Parameters,
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
        image_uri=_image_uri(spec, spec.inference_instance_type, "inference"),
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
        description=(
            f"{spec.model_name} for task {spec.training.task}, gated on {spec.training.evaluation_metric}"
        ),
        # What the registry, mlctl and the champion gate read (handlers/registry/client.py): each
        # metric of evaluation.json, the dataset version it was trained on, the job and its epochs.
        # Join turns JsonGet's number into the string a metadata value must be.
        customer_metadata_properties={
            "model": spec.model_name,
            "task": spec.training.task,
            TRIGGER_DATASET_VERSION_KEY: params.dataset_version,
            DATASET_VERSION_KEY: reported(DATASET_VERSION_PATH),
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
        },
    )
    return ModelStep(name=REGISTER_STEP, step_args=step_args)


def _reported_metrics(spec: PipelineDefinitionSpec) -> tuple[str, ...]:
    """The metrics evaluate.py writes for the stack's task."""
    regression = TASKS[spec.training.task].kind == REGRESSION
    return REGRESSION_METRICS if regression else CLASSIFICATION_METRICS


def _fail_step(spec: PipelineDefinitionSpec, params: _Parameters) -> FailStep:
    from sagemaker.core.workflow.functions import Join
    from sagemaker.mlops.workflow.fail_step import FailStep

    wanted = "<=" if spec.lower_is_better else ">="
    return FailStep(
        name=FAIL_STEP,
        error_message=Join(
            on=" ",
            values=[
                f"Model not registered: {spec.training.evaluation_metric} on the test split is not {wanted}",
                params.evaluation_threshold,
                f"(see {EVALUATION_FILE} of step {EVALUATE_STEP})",
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
    from sagemaker.core.workflow.conditions import (
        ConditionGreaterThanOrEqualTo,
        ConditionLessThanOrEqualTo,
    )
    from sagemaker.core.workflow.functions import JsonGet
    from sagemaker.mlops.workflow.condition_step import ConditionStep

    metric = JsonGet(step_name=evaluate.name, property_file=report, json_path=spec.metric_json_path)
    compare = ConditionLessThanOrEqualTo if spec.lower_is_better else ConditionGreaterThanOrEqualTo
    return ConditionStep(
        name=CONDITION_STEP,
        conditions=[compare(left=metric, right=params.evaluation_threshold)],
        if_steps=[if_true],
        else_steps=[if_false],
    )


def _with_training_launcher(definition: dict[str, Any], spec: PipelineDefinitionSpec) -> dict[str, Any]:
    """Give the Train step the launcher that unpacks the code channel and runs torchrun."""
    if spec.training.instance_count == 1:
        rendezvous = "--standalone"
    else:
        rendezvous = (
            f"--nnodes={spec.training.instance_count} --rdzv-backend=c10d --rdzv-endpoint=algo-1:29400"
        )
    script = _TRAINING_LAUNCHER.format(rendezvous=rendezvous)
    code_file = str(_TRAINING_CODE_CHANNEL / PurePosixPath(spec.code_uri).name)
    for item in (script, code_file):
        if len(item) > _CONTAINER_ARGUMENT_MAX:
            raise ValueError(f"container argument longer than {_CONTAINER_ARGUMENT_MAX}: {item!r}")
    (train,) = (step for step in definition["Steps"] if step["Name"] == TRAIN_STEP)
    algorithm = train["Arguments"]["AlgorithmSpecification"]
    algorithm["ContainerEntrypoint"] = ["/bin/sh", "-c"]
    algorithm["ContainerArguments"] = [script, code_file]
    return definition
