"""SageMaker: endpoint configs, models, notebooks, pipeline training/processing steps, autoscaling."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from policy.rules import ADVISORY, MANDATORY, OURS, Context, Rule, as_list, dig, number

ENDPOINT_CONFIG = "aws:sagemaker/endpointConfiguration:EndpointConfiguration"
MODEL = "aws:sagemaker/model:Model"
NOTEBOOK = "aws:sagemaker/notebookInstance:NotebookInstance"
PIPELINE = "aws:sagemaker/pipeline:Pipeline"
SCALABLE_TARGET = "aws:appautoscaling/target:Target"
SCALING_POLICY = "aws:appautoscaling/policy:Policy"
PROD_MIN_INSTANCES = 2
# Families whose instances carry local NVMe storage: SageMaker refuses a volume KMS key for them
# (the instance store is encrypted by the hardware).
INSTANCE_STORAGE_FAMILIES = frozenset(
    {"g4dn", "g5", "g6", "g6e", "gr6", "p3dn", "p4d", "p4de", "p5", "p5e", "p5en", "trn1", "trn1n",
     "trn2", "x2iedn", "c5d", "m5d", "r5d", "c6id", "m6id", "r6id"}
)  # fmt: skip
StepCheck = Callable[[Mapping[str, Any], Mapping[str, Any]], "str | None"]


def has_instance_storage(instance_type: Any) -> bool:
    match = re.fullmatch(r"ml\.([a-z0-9]+)\.[a-z0-9]+", str(instance_type or ""))
    return match is not None and match.group(1) in INSTANCE_STORAGE_FAMILIES


# --------------------------------------------------------------------- endpoint configuration


def _variants(props: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [v for v in as_list(props.get("productionVariants")) if isinstance(v, Mapping)]


def _endpoint_volume_kms(props: Mapping[str, Any], _: Context) -> str | None:
    if props.get("kmsKeyArn"):
        return None
    types = sorted({str(v.get("instanceType")) for v in _variants(props)})
    return f"endpoint config has no volume KMS key (instance types {types})"


def _endpoint_no_key_on_storage(props: Mapping[str, Any], _: Context) -> str | None:
    if not props.get("kmsKeyArn"):
        return None
    local = sorted(
        {str(v.get("instanceType")) for v in _variants(props) if has_instance_storage(v.get("instanceType"))}
    )
    return (
        f"SageMaker refuses a volume KMS key on instance types with local storage: {local}" if local else None
    )


def _capture_enabled(props: Mapping[str, Any], _: Context) -> str | None:
    return None if dig(props, "dataCaptureConfig", "enableCapture") is True else "data capture is off"


def _capture_kms(props: Mapping[str, Any], _: Context) -> str | None:
    if props.get("dataCaptureConfig") is None:
        return None
    return None if dig(props, "dataCaptureConfig", "kmsKeyId") else "captured data has no KMS key"


def _prod_instance_count(props: Mapping[str, Any], ctx: Context) -> str | None:
    if not ctx.is_prod:
        return None
    few = [str(v.get("variantName")) for v in _variants(props)
           if (number(v.get("initialInstanceCount")) or 0) < PROD_MIN_INSTANCES]  # fmt: skip
    return f"prod variants with fewer than {PROD_MIN_INSTANCES} instances: {few}" if few else None


def endpoint_volume_key_waivable(props: Mapping[str, Any]) -> bool:
    """Every variant of the endpoint config runs on an instance type with local NVMe storage."""
    variants = _variants(props)
    return bool(variants) and all(has_instance_storage(v.get("instanceType")) for v in variants)


# ---------------------------------------------------------------- model and notebook instance


def _network_isolation(props: Mapping[str, Any], _: Context) -> str | None:
    return None if props.get("enableNetworkIsolation") is True else "model network isolation is off"


def _notebook(
    key: str, wanted: str | None, message: str
) -> Callable[[Mapping[str, Any], Context], str | None]:
    def check(props: Mapping[str, Any], _: Context) -> str | None:
        value = props.get(key)
        ok = bool(value) if wanted is None else value == wanted
        return None if ok else message

    return check


# ------------------------------------------------------------------- pipeline definition steps


def pipeline_steps(
    props: Mapping[str, Any], step_type: str
) -> list[tuple[Mapping[str, Any], Mapping[str, Any]]]:
    """(step, parameter defaults) for each step of ``step_type`` in the pipeline definition."""
    definition: Any = props.get("pipelineDefinition")
    if isinstance(definition, str):
        try:
            definition = json.loads(definition)
        except ValueError:
            return []
    if not isinstance(definition, Mapping):
        return []
    defaults = {
        str(p.get("Name")): p.get("DefaultValue")
        for p in as_list(definition.get("Parameters"))
        if isinstance(p, Mapping)
    }
    return [
        (step, defaults)
        for step in _all_steps(as_list(definition.get("Steps")))
        if step.get("Type") == step_type
    ]


def _all_steps(steps: list[Any]) -> list[Mapping[str, Any]]:
    """The steps, and those nested in Condition steps (IfSteps/ElseSteps), depth first."""
    found: list[Mapping[str, Any]] = []
    for step in steps:
        if not isinstance(step, Mapping):
            continue
        found.append(step)
        arguments = step.get("Arguments") or {}
        if isinstance(arguments, Mapping):
            found += _all_steps(as_list(arguments.get("IfSteps")) + as_list(arguments.get("ElseSteps")))
    return found


def resolve(value: Any, defaults: Mapping[str, Any]) -> Any:
    """A pipeline value, with ``{"Get": "Parameters.X"}`` replaced by the parameter's default."""
    if isinstance(value, Mapping) and str(value.get("Get", "")).startswith("Parameters."):
        return defaults.get(str(value["Get"]).removeprefix("Parameters."))
    return value


def _instance_type(step: Mapping[str, Any], defaults: Mapping[str, Any]) -> Any:
    arguments = step.get("Arguments") or {}
    if step.get("Type") == "Training":
        return resolve(dig(arguments, "ResourceConfig", "InstanceType"), defaults)
    return resolve(dig(arguments, "ProcessingResources", "ClusterConfig", "InstanceType"), defaults)


def _volume_key(step: Mapping[str, Any]) -> Any:
    arguments = step.get("Arguments") or {}
    if step.get("Type") == "Training":
        return dig(arguments, "ResourceConfig", "VolumeKmsKeyId")
    return dig(arguments, "ProcessingResources", "ClusterConfig", "VolumeKmsKeyId")


def _steps_rule(step_type: str, check: StepCheck) -> Callable[[Mapping[str, Any], Context], str | None]:
    def run(props: Mapping[str, Any], _: Context) -> str | None:
        failures = []
        for step, defaults in pipeline_steps(props, step_type):
            message = check(step, defaults)
            if message:
                failures.append(f"{step.get('Name', '?')}: {message}")
        return "; ".join(failures) or None

    return run


def _arg(*path: str) -> Callable[[Mapping[str, Any]], Any]:
    return lambda step: dig(step.get("Arguments") or {}, *path)


def _requires(getter: Callable[[Mapping[str, Any]], Any], message: str, value: Any = None) -> StepCheck:
    def check(step: Mapping[str, Any], _: Mapping[str, Any]) -> str | None:
        found = getter(step)
        ok = bool(found) if value is None else found == value
        return None if ok else message

    return check


def _volume_kms_missing(step: Mapping[str, Any], defaults: Mapping[str, Any]) -> str | None:
    if _volume_key(step):
        return None
    return f"no volume KMS key (instance type {_instance_type(step, defaults)})"


def _no_key_on_storage(step: Mapping[str, Any], defaults: Mapping[str, Any]) -> str | None:
    instance_type = _instance_type(step, defaults)
    if _volume_key(step) and has_instance_storage(instance_type):
        return f"VolumeKmsKeyId on {instance_type}, which has local storage: SageMaker refuses the job"
    return None


def _spot_checkpoints(step: Mapping[str, Any], _: Mapping[str, Any]) -> str | None:
    arguments = step.get("Arguments") or {}
    if arguments.get("EnableManagedSpotTraining") is not True:
        return None
    missing = []
    if not dig(arguments, "CheckpointConfig", "S3Uri"):
        missing.append("CheckpointConfig.S3Uri")
    if not dig(arguments, "StoppingCondition", "MaxWaitTimeInSeconds"):
        missing.append("StoppingCondition.MaxWaitTimeInSeconds")
    return f"spot training without {missing}" if missing else None


def _inter_container(step: Mapping[str, Any], defaults: Mapping[str, Any]) -> str | None:
    arguments = step.get("Arguments") or {}
    count = number(resolve(dig(arguments, "ResourceConfig", "InstanceCount"), defaults)) or 1
    if count > 1 and arguments.get("EnableInterContainerTrafficEncryption") is not True:
        return f"{int(count)} instances without inter-container traffic encryption"
    return None


def pipeline_volume_key_waivable(props: Mapping[str, Any]) -> bool:
    """Every step without a volume key runs on an instance type with local NVMe storage."""
    missing = [
        _instance_type(step, defaults)
        for kind in ("Training", "Processing")
        for step, defaults in pipeline_steps(props, kind)
        if not _volume_key(step)
    ]
    return bool(missing) and all(has_instance_storage(t) for t in missing)


def _both_steps(check: StepCheck) -> Callable[[Mapping[str, Any], Context], str | None]:
    training, processing = _steps_rule("Training", check), _steps_rule("Processing", check)

    def run(props: Mapping[str, Any], ctx: Context) -> str | None:
        return "; ".join(m for m in (training(props, ctx), processing(props, ctx)) if m) or None

    return run


# ------------------------------------------------------------------------------ autoscaling


def _sagemaker_scaling(props: Mapping[str, Any]) -> bool:
    return props.get("serviceNamespace") == "sagemaker"


def _prod_min_capacity(props: Mapping[str, Any], ctx: Context) -> str | None:
    if not (ctx.is_prod and _sagemaker_scaling(props)):
        return None
    capacity = number(props.get("minCapacity")) or 0
    return f"prod min capacity {capacity:g} < {PROD_MIN_INSTANCES}" if capacity < PROD_MIN_INSTANCES else None


def _target_tracking(props: Mapping[str, Any], _: Context) -> str | None:
    if not _sagemaker_scaling(props):
        return None
    if props.get("policyType") != "TargetTrackingScaling":
        return f"policy type {props.get('policyType')!r} is not target tracking"
    config = props.get("targetTrackingScalingPolicyConfiguration") or {}
    metric = dig(config, "predefinedMetricSpecification", "predefinedMetricType")
    if metric is None and config.get("customizedMetricSpecification") is None:
        return "target tracking has no metric"
    return None


T, P = "Training", "Processing"
RULES = [
    Rule("sagemaker-endpoint-volume-kms", "Endpoint configs encrypt the ML storage volume with KMS",
         ADVISORY, ("CKV_AWS_98",), (ENDPOINT_CONFIG,), _endpoint_volume_kms),
    Rule("sagemaker-endpoint-no-volume-kms-on-instance-storage",
         "No volume KMS key on instance types with local NVMe storage (SageMaker refuses it)", MANDATORY,
         (OURS,), (ENDPOINT_CONFIG,), _endpoint_no_key_on_storage),
    Rule("sagemaker-data-capture-enabled", "Endpoint configs capture requests and responses", MANDATORY,
         (OURS,), (ENDPOINT_CONFIG,), _capture_enabled),
    Rule("sagemaker-data-capture-kms", "Captured data is written with a KMS key", MANDATORY,
         (OURS,), (ENDPOINT_CONFIG,), _capture_kms),
    Rule("sagemaker-prod-instance-count", "Prod production variants start with at least 2 instances",
         MANDATORY, ("SageMaker.4",), (ENDPOINT_CONFIG,), _prod_instance_count),
    Rule("sagemaker-model-network-isolation", "Models run with network isolation", MANDATORY,
         ("CKV_AWS_370",), (MODEL,), _network_isolation),
    Rule("sagemaker-notebook-kms", "Notebook instances encrypt their volume with KMS", MANDATORY,
         ("CKV_AWS_22",), (NOTEBOOK,), _notebook("kmsKeyId", None, "notebook has no KMS key")),
    Rule("sagemaker-notebook-no-internet", "Notebook instances have no direct internet access", MANDATORY,
         ("CKV_AWS_122", "SageMaker.2"), (NOTEBOOK,),
         _notebook("directInternetAccess", "Disabled", "notebook has direct internet access")),
    Rule("sagemaker-notebook-no-root", "Notebook instances disable root access", MANDATORY,
         ("CKV_AWS_307", "SageMaker.3"), (NOTEBOOK,),
         _notebook("rootAccess", "Disabled", "notebook users have root access")),
    Rule("sagemaker-notebook-vpc", "Notebook instances run in a VPC subnet", MANDATORY,
         ("AwsSolutions-SM1",), (NOTEBOOK,), _notebook("subnetId", None, "notebook is not in a VPC")),
    Rule("sagemaker-training-output-kms", "Training steps encrypt their output with KMS", MANDATORY,
         (OURS,), (PIPELINE,),
         _steps_rule(T, _requires(_arg("OutputDataConfig", "KmsKeyId"), "no output KMS key"))),
    Rule("sagemaker-training-volume-kms", "Training and processing steps encrypt their volume with KMS",
         ADVISORY, ("CKV_AWS_98", OURS), (PIPELINE,), _both_steps(_volume_kms_missing)),
    Rule("sagemaker-pipeline-no-volume-kms-on-instance-storage",
         "No VolumeKmsKeyId on instance types with local NVMe storage (SageMaker refuses the job)",
         MANDATORY, (OURS,), (PIPELINE,), _both_steps(_no_key_on_storage)),
    Rule("sagemaker-training-inter-container-encryption",
         "Distributed training steps encrypt inter-container traffic", MANDATORY,
         (OURS,), (PIPELINE,), _steps_rule(T, _inter_container)),
    Rule("sagemaker-training-network-isolation", "Training steps run with network isolation", MANDATORY,
         (OURS,), (PIPELINE,),
         _steps_rule(T, _requires(_arg("EnableNetworkIsolation"), "network isolation is off", True))),
    Rule("sagemaker-training-vpc", "Training steps run in a VPC", ADVISORY, (OURS,), (PIPELINE,),
         _steps_rule(T, _requires(_arg("VpcConfig", "Subnets"), "no VPC config"))),
    Rule("sagemaker-training-max-runtime", "Training steps set a maximum runtime", MANDATORY,
         (OURS,), (PIPELINE,),
         _steps_rule(T, _requires(_arg("StoppingCondition", "MaxRuntimeInSeconds"), "no max runtime"))),
    Rule("sagemaker-training-spot-checkpoints", "Spot training checkpoints to S3 and bounds its wait",
         MANDATORY, (OURS,), (PIPELINE,), _steps_rule(T, _spot_checkpoints)),
    Rule("sagemaker-processing-output-kms", "Processing steps encrypt their output with KMS", MANDATORY,
         (OURS,), (PIPELINE,),
         _steps_rule(P, _requires(_arg("ProcessingOutputConfig", "KmsKeyId"), "no output KMS key"))),
    Rule("sagemaker-processing-network-isolation", "Processing steps run with network isolation",
         MANDATORY, (OURS,), (PIPELINE,),
         _steps_rule(P, _requires(_arg("NetworkConfig", "EnableNetworkIsolation"), "isolation off", True))),
    Rule("sagemaker-processing-max-runtime", "Processing steps set a maximum runtime", MANDATORY,
         (OURS,), (PIPELINE,),
         _steps_rule(P, _requires(_arg("StoppingCondition", "MaxRuntimeInSeconds"), "no max runtime"))),
    Rule("sagemaker-autoscaling-prod-min-capacity", "Prod endpoint autoscaling keeps at least 2 instances",
         MANDATORY, ("SageMaker.4", OURS), (SCALABLE_TARGET,), _prod_min_capacity),
    Rule("sagemaker-autoscaling-target-tracking", "Endpoint autoscaling uses target tracking on a metric",
         MANDATORY, (OURS,), (SCALING_POLICY,), _target_tracking),
]  # fmt: skip
