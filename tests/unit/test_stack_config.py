"""The stack configuration schema: shipped stacks load, bad settings are rejected by key, value and rule."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from infra.stack_config import (
    Environment,
    StackConfigError,
    UnknownStackError,
    load_stack_config,
    parse_stack_config,
    read_stack_values,
    to_pulumi_config,
)

BASE = {"aws:region": "us-east-1", "ml-platform:environment": "dev", "ml-platform:namePrefix": "mlp-test"}
PROD_BASE = {
    **BASE,
    "ml-platform:environment": "prod",
    "ml-platform:serving": {"instanceType": "ml.g5.xlarge", "minInstances": 2, "maxInstances": 4},
    "ml-platform:logRetentionDays": 365,
    "ml-platform:budget": {"monthlyUsd": 1000},
}


def rejection(values: dict[str, Any]) -> StackConfigError:
    with pytest.raises(StackConfigError) as caught:
        parse_stack_config(values, source="test")
    return caught.value


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_shipped_stacks_load(stack: str) -> None:
    config = load_stack_config(stack)
    assert config.environment is Environment(stack)
    assert config.name_prefix == f"mlp-{stack}"


def test_prod_stack_has_the_differences_a_real_team_keeps() -> None:
    prod = load_stack_config("prod")
    assert prod.serving.min_instances >= 2
    assert prod.serving.gpu
    assert prod.deployment.strategy.value in {"canary", "linear"}
    assert prod.log_retention_days >= 365
    assert prod.budget.monthly_usd is not None


def test_defaults_are_secure_and_complete() -> None:
    config = parse_stack_config(BASE)
    assert config.data.raw_retention_days is None  # raw data never expires by default
    assert (
        config.training.use_spot and config.training.max_wait_seconds >= config.training.max_runtime_seconds
    )
    assert config.api.lambda_timeout_seconds < 29  # below API Gateway's integration timeout


def test_config_as_the_pulumi_engine_hands_it_over_parses_the_same() -> None:
    # GIVEN the dev stack's values encoded as Pulumi passes them to a program (all strings, objects as JSON)
    values = read_stack_values("dev")
    # WHEN both forms are parsed THEN they give the same configuration
    assert parse_stack_config(to_pulumi_config(values)) == parse_stack_config(values)


BAD_CONFIGS = [
    pytest.param(
        {"ml-platform:serving": {"minInstances": 3, "maxInstances": 2}},
        "ml-platform:serving.minInstances",
        "3",
        "must be <= serving.maxInstances (2)",
        id="min-above-max",
    ),
    pytest.param(
        {
            **PROD_BASE,
            "ml-platform:serving": {"instanceType": "ml.m5.large", "minInstances": 2, "maxInstances": 4},
        },
        "ml-platform:serving.instanceType",
        "'ml.m5.large'",
        "needs a GPU instance family",
        id="gpu-endpoint-on-cpu-instance-in-prod",
    ),
    pytest.param(
        {"aws:region": "us-middle-1"},
        "aws:region",
        "'us-middle-1'",
        "allowed: af-south-1",
        id="unknown-region",
    ),
    pytest.param(
        {
            **PROD_BASE,
            "ml-platform:serving": {"instanceType": "ml.g5.xlarge", "minInstances": 1, "maxInstances": 4},
        },
        "ml-platform:serving.minInstances",
        "1",
        "prod endpoints need at least 2 instances",
        id="prod-with-one-instance",
    ),
    pytest.param(
        {"ml-platform:data": {"processedNoncurrentDays": -5}},
        "ml-platform:data.processedNoncurrentDays",
        "-5",
        "greater than 0",
        id="negative-retention",
    ),
    pytest.param(
        {"ml-platform:deployment": {"strategy": "blue-green-ish"}},
        "ml-platform:deployment.strategy",
        "'blue-green-ish'",
        "'all-at-once', 'canary' or 'linear'",
        id="unknown-deployment-strategy",
    ),
    pytest.param(
        {"ml-platform:environment": "qa"},
        "ml-platform:environment",
        "'qa'",
        "'dev', 'staging' or 'prod'",
        id="unknown-env",
    ),
    pytest.param(
        {"ml-platform:logRetentionDays": 31},
        "ml-platform:logRetentionDays",
        "31",
        "not a CloudWatch Logs retention period",
        id="log-retention-not-allowed",
    ),
    pytest.param(
        {"ml-platform:serving": {"minInstances": 1, "maxInstance": 3}},
        "ml-platform:serving.maxInstance",
        "3",
        "unknown key; allowed keys here: container, dataCapturePercent, gpu, instanceType, maxInstances",
        id="typo-in-key",
    ),
    pytest.param(
        {"ml-platform:training": {"useSpot": True, "maxRuntimeSeconds": 7200, "maxWaitSeconds": 3600}},
        "ml-platform:training.maxWaitSeconds",
        "3600",
        "with useSpot, must be >= training.maxRuntimeSeconds (7200)",
        id="spot-wait-below-runtime",
    ),
    pytest.param(
        {"ml-platform:training": {"evaluationMetric": "metrics.accuracy"}},
        "ml-platform:training.evaluationMetric",
        "'metrics.accuracy'",
        "should match pattern",
        id="evaluation-metric-not-a-plain-name",
    ),
    pytest.param(
        {"ml-platform:training": {"instanceType": "p3.2xlarge"}},
        "ml-platform:training.instanceType",
        "'p3.2xlarge'",
        "should match pattern",
        id="instance-type-without-ml-prefix",
    ),
    pytest.param(
        {"ml-platform:api": {"auth": "none"}},
        "ml-platform:api.auth",
        "'none'",
        "'api-key' or 'iam'",
        id="no-api-auth",
    ),
    pytest.param(
        {"ml-platform:api": {"lambdaTimeoutSeconds": 30}},
        "ml-platform:api.lambdaTimeoutSeconds",
        "30",
        "less than or equal to 28",
        id="lambda-timeout-above-api-gateway",
    ),
    pytest.param(
        {**PROD_BASE, "ml-platform:deployment": {"strategy": "all-at-once"}},
        "ml-platform:deployment.strategy",
        "'all-at-once'",
        "'canary' or 'linear'",
        id="prod-all-at-once",
    ),
    pytest.param(
        {**PROD_BASE, "ml-platform:deployment": {"rollbackAlarms": ["5xx-rate"]}},
        "ml-platform:deployment.rollbackAlarms",
        "['5xx-rate']",
        "at least the '5xx-rate' and 'model-latency-p99' alarms",
        id="prod-without-latency-rollback-alarm",
    ),
    pytest.param(
        {**PROD_BASE, "ml-platform:budget": {}},
        "ml-platform:budget.monthlyUsd",
        "None",
        "prod needs a monthly budget",
        id="prod-without-budget",
    ),
    pytest.param(
        {"ml-platform:deployment": {"strategy": "linear", "linearStepPercent": 1, "bakingSeconds": 3600}},
        "ml-platform:deployment.bakingSeconds",
        "3600",
        "must fit SageMaker's 27000 s deployment limit",
        id="linear-rollout-longer-than-sagemaker-allows",
    ),
    pytest.param(
        {"ml-platform:serving": {"modelPackageArn": "arn:aws:sagemaker:us-east-1:123456789012:model/x"}},
        "ml-platform:serving.modelPackageArn",
        "'arn:aws:sagemaker:us-east-1:123456789012:model/x'",
        "should match pattern",
        id="not-a-model-package-version",
    ),
    pytest.param(
        {"ml-platform:serving": {"variants": [{"name": "a"}, {"name": "b", "shadow": True}]}},
        "ml-platform:serving.variants[1].shadow",
        "True",
        "shadow variants are not supported",
        id="shadow-variant-refused-with-the-reason",
    ),
    pytest.param(
        {"ml-platform:alarms": {"confidenceWarn": 0.8, "confidenceRetrain": 0.85}},
        "ml-platform:alarms.confidenceRetrain",
        "0.85",
        "must be below alarms.confidenceWarn (0.8)",
        id="retrain-threshold-above-warn",
    ),
    pytest.param(
        {"ml-platform:namePrefix": "ML_Platform"},
        "ml-platform:namePrefix",
        "'ML_Platform'",
        "should match pattern",
        id="prefix",
    ),
    pytest.param(
        {"ml-platform:tags": {"aws:owner": "me"}},
        "ml-platform:tags",
        "{'aws:owner': 'me'}",
        "reserved prefix",
        id="aws-tag",
    ),
    pytest.param(
        {"ml-platfrom:environment": "dev"},
        "ml-platfrom:environment",
        "'(set)'",
        "unknown config namespace",
        id="ns",
    ),
    pytest.param(
        {
            "ml-platform:serving": {"variants": [{"name": "a"}, {"name": "a"}]},
            "ml-platform:deployment": {"strategy": "all-at-once"},
        },
        "ml-platform:serving.variants",
        "['a', 'a']",
        "variant names must be unique",
        id="duplicate-variants",
    ),
    pytest.param(
        {"ml-platform:environment": "prod", "ml-platform:serving": {"offHours": {"instances": 1}}},
        "ml-platform:serving.offHours",
        "'set'",
        "non-prod stacks only",
        id="prod-off-hours",
    ),
    pytest.param(
        {"ml-platform:serving": {"minInstances": 1, "offHours": {"instances": 2}}},
        "ml-platform:serving.offHours.instances",
        "2",
        "must be <= serving.minInstances (1)",
        id="off-hours-above-min",
    ),
    pytest.param(
        {"ml-platform:serving": {"offHours": {"scaleDown": "rate(1 day)"}}},
        "ml-platform:serving.offHours.scaleDown",
        "'rate(1 day)'",
        "cron(...) with 6 fields",
        id="off-hours-not-cron",
    ),
    pytest.param(
        {"ml-platform:serving": {"container": "docker"}},
        "ml-platform:serving.container",
        "'docker'",
        "'platform' or 'sagemaker-dlc'",
        id="unknown-serving-container",
    ),
    pytest.param(
        {"ml-platform:serving": {"precision": "int8"}},
        "ml-platform:serving.precision",
        "'int8'",
        "'float32', 'float16' or 'bfloat16'",
        id="unknown-serving-precision",
    ),
    pytest.param(
        {"ml-platform:serving": {"container": "sagemaker-dlc", "precision": "bfloat16"}},
        "ml-platform:serving.precision",
        "'bfloat16'",
        "(serving.container: sagemaker-dlc): allowed with it: float32",
        id="half-precision-with-the-dlc",
    ),
]


@pytest.mark.parametrize(("overrides", "key", "value", "allowed"), BAD_CONFIGS)
def test_bad_config_is_rejected_naming_key_value_and_what_is_allowed(
    overrides: dict[str, Any], key: str, value: str, allowed: str
) -> None:
    base = PROD_BASE if overrides.get("ml-platform:environment") == "prod" else BASE
    error = rejection({**base, **overrides})
    matching = [issue for issue in error.issues if issue.key == key]
    assert matching, f"no issue for {key}: {error}"
    message = str(matching[0])
    assert message.startswith(f"{key} = {value}: ")
    assert allowed in message
    assert key in str(error)


@pytest.mark.parametrize("precision", ["float32", "float16", "bfloat16"])
def test_the_platform_container_takes_every_precision(precision: str) -> None:
    # GIVEN a stack serving with the platform's model server in a precision
    config = parse_stack_config({**BASE, "ml-platform:serving": {"precision": precision}})
    # THEN it loads, and the platform's image is the default container
    assert config.serving.precision.value == precision
    assert config.serving.container.value == "platform"


def test_the_dlc_serves_in_float32() -> None:
    # GIVEN a stack serving with SageMaker's PyTorch image, precision left alone or float32
    for serving in ({"container": "sagemaker-dlc"}, {"container": "sagemaker-dlc", "precision": "float32"}):
        # THEN it loads
        assert parse_stack_config({**BASE, "ml-platform:serving": serving}).serving.container.value == (
            "sagemaker-dlc"
        )


def test_all_problems_are_reported_at_once() -> None:
    error = rejection({**PROD_BASE, "ml-platform:logRetentionDays": 30, "ml-platform:budget": {}})
    assert {issue.key for issue in error.issues} == {
        "ml-platform:logRetentionDays",
        "ml-platform:budget.monthlyUsd",
    }


def test_a_missing_required_key_is_named() -> None:
    error = rejection({"aws:region": "us-east-1", "ml-platform:environment": "dev"})
    assert [str(issue) for issue in error.issues] == [
        "ml-platform:namePrefix = None: required key is missing"
    ]


def test_an_unknown_stack_names_the_available_ones(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.alpha.yaml").write_text(yaml_config(BASE))
    (tmp_path / "Pulumi.beta.yaml").write_text(yaml_config(BASE))
    with pytest.raises(UnknownStackError) as caught:
        load_stack_config("gamma", tmp_path)
    assert str(caught.value) == "unknown stack 'gamma': no Pulumi.gamma.yaml; available stacks: alpha, beta"


@pytest.mark.parametrize("stack", ["../dev", "dev/../prod", ""])
def test_stack_names_cannot_escape_the_project(stack: str) -> None:
    with pytest.raises(UnknownStackError):
        load_stack_config(stack)


def test_a_stack_file_without_a_config_mapping_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.odd.yaml").write_text("config: [1, 2]\n")
    with pytest.raises(StackConfigError, match="config = \\[1, 2\\]: must be a mapping"):
        load_stack_config("odd", tmp_path)


def yaml_config(values: dict[str, Any]) -> str:
    return json.dumps({"config": values})  # JSON is YAML


def test_the_configurable_tasks_are_the_tasks_training_knows() -> None:
    from typing import get_args  # noqa: PLC0415

    from infra.stack_config import TrainingTask  # noqa: PLC0415
    from training_jobs.tasks import TASKS  # noqa: PLC0415

    assert sorted(get_args(TrainingTask)) == sorted(TASKS)


# --- a team's own training code and data ----------------------------------------------------------

TEAM_SOURCE = {"dir": "examples/tabular-classifier/src", "entryPoint": "train.py", "evaluate": "evaluate.py"}
TEAM_DATASET = {"format": "csv", "target": "churned", "categorical": ["contract"]}


def team_training(**changes: Any) -> dict[str, Any]:
    training: dict[str, Any] = {"source": TEAM_SOURCE, "dataset": TEAM_DATASET, **changes}
    return {**BASE, "ml-platform:training": {k: v for k, v in training.items() if v is not None}}


def issue_for(values: dict[str, Any], key: str) -> str:
    error = rejection(values)
    matching = [str(issue) for issue in error.issues if issue.key == key]
    assert matching, f"no issue for {key}: {error}"
    return matching[0]


def test_a_teams_source_folder_data_and_hyperparameters_are_accepted() -> None:
    config = parse_stack_config(team_training(hyperparameters={"epochs": 40, "dropout": 0.1}), source="test")
    assert config.training.source is not None and config.training.source.evaluate == "evaluate.py"
    assert config.training.hyperparameters == {"epochs": 40, "dropout": 0.1}
    assert config.training.dataset is not None and config.training.dataset.categorical == ("contract",)


@pytest.mark.parametrize(
    ("changes", "key", "allowed"),
    [
        ({"task": "digits"}, "ml-platform:training.task", "remove it when training.source"),
        ({"dataset": None}, "ml-platform:training.dataset", "needs its data declared"),
        (
            {"source": {**TEAM_SOURCE, "evaluate": None}, "dataset": {"format": "jsonl"}},
            "ml-platform:training.source.evaluate",
            "tabular splits only",
        ),
        (
            {"source": {**TEAM_SOURCE, "entryPoint": "tran.py"}},
            "ml-platform:training.source.entryPoint",
            "file",
        ),
        ({"source": {**TEAM_SOURCE, "dir": "examples/nowhere"}}, "ml-platform:training.source.dir", "folder"),
        (
            {"source": {**TEAM_SOURCE, "dir": "../outside"}},
            "ml-platform:training.source.dir",
            "inside the project",
        ),
        ({"dataset": {"format": "csv"}}, "ml-platform:training.dataset.target", "target column"),
        ({"dataset": {**TEAM_DATASET, "format": "xlsx"}}, "ml-platform:training.dataset.format", "csv"),
        ({"image": "my-image:latest"}, "ml-platform:training.image", "pattern"),
    ],
)
def test_a_teams_training_settings_are_checked_naming_the_key(
    changes: dict[str, Any], key: str, allowed: str
) -> None:
    assert allowed in issue_for(team_training(**changes), key)


def test_a_teams_code_on_tabular_data_may_leave_evaluation_to_the_platform() -> None:
    config = parse_stack_config(team_training(source={**TEAM_SOURCE, "evaluate": None}), source="test")
    assert config.training.source is not None and config.training.source.evaluate is None


def test_the_example_team_stack_loads() -> None:
    config = load_stack_config("example-churn")
    assert config.training.source is not None
    assert config.training.dataset is not None and config.training.dataset.local_sample is not None
