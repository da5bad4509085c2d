"""The pure parts: deployment config arithmetic, generated names, settings checks, event patterns."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import pytest

from handlers.common.errors import ConfigurationError
from handlers.common.instance_types import has_instance_storage
from handlers.deployer.plan import (
    approval_event_pattern,
    build_deployment_config,
    build_endpoint_config_request,
    build_model_request,
    endpoint_event_pattern,
    generated_name,
)
from handlers.deployer.settings import MAX_EXECUTION_TIMEOUT_SECONDS, DeploymentPolicy, DeploySettings
from handlers.registry.client import ModelVersion
from tests.functional.deployer.conftest import ALARMS, ENDPOINT, GROUP, IMAGE, KMS_KEY

NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
VERSION = ModelVersion(
    arn=f"arn:aws:sagemaker:us-east-1:123456789012:model-package/{GROUP}/7",
    group=GROUP,
    version=7,
    status="Approved",
    package_status="Completed",
    image_uri=IMAGE,
    artifact_uri="s3://bucket/run-7/model.tar.gz",
)
ENV = {
    "MODEL_PACKAGE_GROUP": GROUP,
    "ENDPOINT_NAME": ENDPOINT,
    "SAGEMAKER_EXECUTION_ROLE_ARN": "arn:aws:iam::123456789012:role/r",
    "KMS_KEY_ARN": KMS_KEY,
    "DATA_CAPTURE_S3_URI": "s3://bucket/data-capture",
    "AWS_REGION": "us-east-1",
}


@pytest.mark.parametrize("strategy", ["all-at-once", "canary", "linear"])
@pytest.mark.parametrize("baking", [0, 300, 600, 3600])
@pytest.mark.parametrize("step", [5, 25, 50])
@pytest.mark.parametrize("termination", [0, 120, 3600])
def test_the_execution_timeout_exceeds_the_sum_of_the_waits(
    strategy: str, baking: int, step: int, termination: int
) -> None:
    policy = DeploymentPolicy(
        strategy=strategy,
        linear_step_percent=step,
        baking_seconds=baking,
        termination_wait_seconds=termination,
    )
    steps = {"all-at-once": 1, "canary": 2, "linear": -(-100 // step)}[strategy]
    waits = steps * baking + termination
    if waits + policy.provisioning_allowance_seconds > MAX_EXECUTION_TIMEOUT_SECONDS:
        # Waits SageMaker's 8-hour limit cannot hold are refused before any deployment starts.
        with pytest.raises(ConfigurationError, match="limit"):
            build_deployment_config(policy)
        return
    blue_green = build_deployment_config(policy)["BlueGreenUpdatePolicy"]
    timeout = blue_green["MaximumExecutionTimeoutInSeconds"]
    assert waits < timeout <= MAX_EXECUTION_TIMEOUT_SECONDS
    assert timeout >= 600  # SageMaker's minimum
    assert blue_green["TrafficRoutingConfiguration"]["WaitIntervalInSeconds"] == baking
    assert blue_green["TerminationWaitInSeconds"] == termination


def test_rollback_alarms_are_named_and_absent_when_none() -> None:
    with_alarms = build_deployment_config(DeploymentPolicy(rollback_alarms=ALARMS))
    assert with_alarms["AutoRollbackConfiguration"] == {"Alarms": [{"AlarmName": name} for name in ALARMS]}
    assert "AutoRollbackConfiguration" not in build_deployment_config(DeploymentPolicy())


def test_names_are_valid_stable_and_change_with_content() -> None:
    settings = DeploySettings.from_env(ENV)
    model = build_model_request(settings, VERSION)
    config = build_endpoint_config_request(settings, model["ModelName"], VERSION)

    # valid SageMaker names that say which version they serve
    for name in (model["ModelName"], config["EndpointConfigName"]):
        assert NAME.match(name) and len(name) <= 63
        assert name.startswith(f"{GROUP}-v7-")
    # the same inputs give the same names (a retried event reuses them) ...
    assert build_model_request(settings, VERSION)["ModelName"] == model["ModelName"]
    # ... and any change gives a new config name, so the config in use is never touched
    bigger = replace(settings, instance_type="ml.g4dn.2xlarge")
    assert (
        build_endpoint_config_request(bigger, model["ModelName"], VERSION)["EndpointConfigName"]
        != (config["EndpointConfigName"])
    )
    next_version = replace(VERSION, version=8, arn=VERSION.arn[:-1] + "8")
    assert build_model_request(settings, next_version)["ModelName"] != model["ModelName"]


def test_a_long_group_name_still_gives_a_valid_name() -> None:
    long_group = "a" * 60 + "-models"
    name = generated_name(long_group, 123, {"x": 1})
    assert len(name) <= 63 and NAME.match(name) and name.endswith(name[-8:])
    assert "-v123-" in name


@pytest.mark.parametrize(
    ("instance_type", "local_storage"),
    [
        ("ml.g4dn.xlarge", True),
        ("ml.g5.2xlarge", True),
        ("ml.p4d.24xlarge", True),
        ("ml.m5d.large", True),
        ("ml.p3.2xlarge", False),
        ("ml.m5.xlarge", False),
        ("ml.c5.large", False),
        ("ml.inf2.xlarge", False),
    ],
)
def test_volume_kms_key_only_where_sagemaker_accepts_it(instance_type: str, local_storage: bool) -> None:
    settings = replace(DeploySettings.from_env(ENV), instance_type=instance_type)
    request = build_endpoint_config_request(settings, "m", VERSION)
    assert has_instance_storage(instance_type) is local_storage
    assert ("KmsKeyId" in request) is not local_storage
    assert request["DataCaptureConfig"]["KmsKeyId"] == KMS_KEY  # capture is always encrypted


def test_no_capture_config_when_sampling_is_off() -> None:
    settings = DeploySettings.from_env({**ENV, "DATA_CAPTURE_PERCENT": "0"})
    assert "DataCaptureConfig" not in build_endpoint_config_request(settings, "m", VERSION)


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"ENDPOINT_NAME": ""}, "ENDPOINT_NAME is not set"),
        ({"KMS_KEY_ARN": ""}, "KMS_KEY_ARN is not set"),
        ({"DEPLOYMENT_STRATEGY": "blue-green"}, "DEPLOYMENT_STRATEGY"),
        ({"INITIAL_INSTANCE_COUNT": "two"}, "not an integer"),
        ({"DATA_CAPTURE_S3_URI": ""}, "DATA_CAPTURE_S3_URI must be an s3:// URI"),
        ({"PRODUCTION_VARIANTS": '[{"name": "primary_variant"}]'}, "not a valid variant name"),
        ({"PRODUCTION_VARIANTS": '[{"name": "a"}, {"name": "a"}]'}, "variant names must be unique"),
        ({"PRODUCTION_VARIANTS": '[{"name": "a", "weight": 0}]'}, "every weight must be > 0"),
        ({"PRODUCTION_VARIANTS": "primary"}, "PRODUCTION_VARIANTS is not valid JSON"),
        ({"PRODUCTION_VARIANTS": "[]"}, "must be a JSON list"),
        ({"MIN_INSTANCES": "3", "MAX_INSTANCES": "2"}, "need 1 <= MIN_INSTANCES <= MAX_INSTANCES"),
        ({"INITIAL_INSTANCE_COUNT": "5", "MAX_INSTANCES": "4"}, "INITIAL_INSTANCE_COUNT must lie within"),
        ({"OFF_HOURS": '{"scaleDown": "cron(0 20 * * ? *)"}'}, "OFF_HOURS needs scaleDown and scaleUp"),
        ({"PROMOTION_MARGIN": "two percent"}, "PROMOTION_MARGIN='two percent' is not a number"),
        ({"PROMOTION_MARGIN": "nan"}, "PROMOTION_MARGIN='nan' is not a finite number"),
        ({"PROMOTION_MARGIN": "1.5"}, "PROMOTION_MARGIN must be 0..1"),
        ({"DEPLOYMENT_STRATEGY": "linear", "LINEAR_STEP_PERCENT": "5", "BAKING_SECONDS": "3600"}, "limit"),
        # prod rules
        ({"ENVIRONMENT": "prod", "INITIAL_INSTANCE_COUNT": "1"}, "INITIAL_INSTANCE_COUNT >= 2"),
        ({"ENVIRONMENT": "prod", "INITIAL_INSTANCE_COUNT": "2", "MIN_INSTANCES": "1"}, "MIN_INSTANCES >= 2"),
        (
            {
                "ENVIRONMENT": "prod",
                "INITIAL_INSTANCE_COUNT": "2",
                "OFF_HOURS": '{"scaleDown": "cron(0 20 * * ? *)", "scaleUp": "cron(0 7 * * ? *)"}',
            },
            "no OFF_HOURS",
        ),
        (
            {"ENVIRONMENT": "prod", "INITIAL_INSTANCE_COUNT": "2", "DEPLOYMENT_STRATEGY": "all-at-once"},
            "canary",
        ),
        (
            {"ENVIRONMENT": "prod", "INITIAL_INSTANCE_COUNT": "2", "BAKING_SECONDS": "60"},
            "BAKING_SECONDS >= 300",
        ),
        (
            {"ENVIRONMENT": "prod", "INITIAL_INSTANCE_COUNT": "2", "ROLLBACK_ALARM_NAMES": ALARMS[0]},
            "at least 2 ROLLBACK_ALARM_NAMES",
        ),
    ],
)
def test_bad_settings_are_named(overrides: dict[str, str], problem: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(problem)):
        DeploySettings.from_env({**ENV, "ROLLBACK_ALARM_NAMES": ",".join(ALARMS), **overrides})


def test_a_prod_stack_with_its_rules_met_is_accepted() -> None:
    settings = DeploySettings.from_env(
        {
            **ENV,
            "ENVIRONMENT": "prod",
            "INITIAL_INSTANCE_COUNT": "2",
            "ROLLBACK_ALARM_NAMES": f'["{ALARMS[0]}", "{ALARMS[1]}"]',
        }
    )
    assert settings.policy.rollback_alarms == ALARMS
    assert settings.policy.strategy == "canary"


def test_event_patterns_select_this_stack_only() -> None:
    approval: dict[str, Any] = approval_event_pattern(GROUP)
    assert approval["detail"] == {"ModelPackageGroupName": [GROUP], "ModelApprovalStatus": ["Approved"]}
    assert approval["detail-type"] == ["SageMaker Model Package State Change"]
    assert endpoint_event_pattern(ENDPOINT)["detail"] == {"EndpointName": [ENDPOINT]}


# --- the serving image and precision ---------------------------------------------------------------

CPU_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mlp-dev/serving-cpu:0123abcd"
GPU_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mlp-dev/serving-gpu:0123abcd"
IMAGES_ENV = {**ENV, "SERVING_IMAGE_CPU": CPU_IMAGE, "SERVING_IMAGE_GPU": GPU_IMAGE}


@pytest.mark.parametrize(
    ("instance_type", "expected"),
    [
        ("ml.m5.large", CPU_IMAGE),
        ("ml.c5.2xlarge", CPU_IMAGE),
        ("ml.g4dn.xlarge", GPU_IMAGE),
        ("ml.g5.2xlarge", GPU_IMAGE),
        ("ml.p4d.24xlarge", GPU_IMAGE),
    ],
)
@pytest.mark.parametrize("registered", [CPU_IMAGE, GPU_IMAGE, IMAGE])
def test_a_model_serves_with_the_image_of_its_endpoints_instance_family(
    instance_type: str, expected: str, registered: str
) -> None:
    # GIVEN the stack's images and an endpoint instance type, and a version registered with any image
    settings = DeploySettings.from_env({**IMAGES_ENV, "INSTANCE_TYPE": instance_type})
    # WHEN the deployer builds its CreateModel
    request = build_model_request(settings, replace(VERSION, image_uri=registered))
    # THEN the image is the endpoint family's: never the CUDA image on a CPU instance or back
    assert request["PrimaryContainer"]["Image"] == expected


def test_without_configured_images_a_model_serves_with_its_registered_image() -> None:
    # GIVEN settings without serving images (a deployer from before they existed)
    settings = DeploySettings.from_env(ENV)
    # THEN the version's own image serves, as before
    assert settings.serving_images is None
    assert build_model_request(settings, VERSION)["PrimaryContainer"]["Image"] == IMAGE


@pytest.mark.parametrize("precision", ["float32", "float16", "bfloat16"])
def test_the_stacks_precision_reaches_the_model_server_over_the_versions(precision: str) -> None:
    # GIVEN the stack's precision, and a version registered with another one
    settings = DeploySettings.from_env({**IMAGES_ENV, "SERVING_PRECISION": precision})
    model = replace(VERSION, environment={"MODEL_SERVER_PRECISION": "float16", "OTHER": "kept"})
    # WHEN the deployer builds its CreateModel
    environment = build_model_request(settings, model)["PrimaryContainer"]["Environment"]
    # THEN the model server runs in the stack's precision, and the version's other settings stay
    assert environment["MODEL_SERVER_PRECISION"] == precision
    assert environment["OTHER"] == "kept"


def test_the_precision_defaults_to_float32() -> None:
    environment = build_model_request(DeploySettings.from_env(ENV), VERSION)["PrimaryContainer"][
        "Environment"
    ]
    assert environment["MODEL_SERVER_PRECISION"] == "float32"


def test_a_change_of_image_gives_a_new_model_name() -> None:
    # The name hashes the content: a new image is a new model, never a change to one in use.
    cpu_env = {**IMAGES_ENV, "INSTANCE_TYPE": "ml.m5.large"}
    cpu = build_model_request(DeploySettings.from_env(cpu_env), VERSION)
    other = {**cpu_env, "SERVING_IMAGE_CPU": CPU_IMAGE.replace("0123abcd", "4567ef01")}
    assert build_model_request(DeploySettings.from_env(other), VERSION)["ModelName"] != cpu["ModelName"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"SERVING_IMAGE_CPU": CPU_IMAGE}, "SERVING_IMAGE_GPU is not set"),
        ({"SERVING_IMAGE_GPU": GPU_IMAGE}, "SERVING_IMAGE_CPU is not set"),
        ({"SERVING_PRECISION": "int8"}, "SERVING_PRECISION='int8' must be one of float32, float16, bfloat16"),
    ],
)
def test_bad_image_or_precision_settings_are_refused_naming_the_variable(
    overrides: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        DeploySettings.from_env({**ENV, **overrides})
