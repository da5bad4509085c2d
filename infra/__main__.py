"""The ml-platform Pulumi program: read config once, build the components, export their outputs."""

import pulumi

from handlers.deployer.settings import MODEL_SERVER_PRECISION_ENV
from infra.alerts import Alerts, AlertsArgs
from infra.api import PredictionApi, PredictionApiArgs
from infra.context import create_stack_context, load_stack_config_from_pulumi
from infra.data_lake import DataLake, DataLakeArgs
from infra.deployer import Deployer, DeployerArgs
from infra.functions import FunctionSettings
from infra.images import ServingImages, ServingImagesArgs, checkout_tags, served_images
from infra.lambda_code import build_lambda_code
from infra.monitoring import Monitoring, MonitoringArgs
from infra.registry import ModelRegistry, ModelRegistryArgs
from infra.serving import InferenceEndpoint, InferenceEndpointArgs
from infra.training import TrainingPipeline, TrainingPipelineArgs
from training_jobs.metrics import METRIC_DEFINITIONS

config = load_stack_config_from_pulumi()  # bad config stops here, before any resource
context = create_stack_context(config)

data_lake = DataLake(
    "data-lake",
    DataLakeArgs(
        stack=context.identity,
        data=config.data,
    ),
    opts=context.component_opts(),
)
# One handlers zip and one layer for every function of the stack.
functions = FunctionSettings(
    name_prefix=config.name_prefix,
    account_id=context.account_id,
    kms_key_arn=data_lake.key.arn,
    log_retention_days=config.log_retention_days,
    code=build_lambda_code(
        config.name_prefix, config.api.powertools_layer_arn, pulumi.ResourceOptions(provider=context.provider)
    ),
)
images = ServingImages(
    "images",
    ServingImagesArgs(stack=context.identity, kms_key_arn=data_lake.key.arn, tags=checkout_tags()),
    opts=context.component_opts(),
)
# What models serve with (serving.container), per instance family: the pipeline registers the
# endpoint family's, and the deployer creates every model with its endpoint's family's.
served = served_images(config.serving, images, config.region)
serving_environment = {MODEL_SERVER_PRECISION_ENV: config.serving.precision.value}
registry = ModelRegistry("registry", ModelRegistryArgs(stack=context.identity), opts=context.component_opts())
training = TrainingPipeline(
    "training",
    TrainingPipelineArgs(
        stack=context.identity,
        bucket_names=data_lake.bucket_names,
        bucket_arns=data_lake.bucket_arns,
        kms_key_arn=data_lake.key.arn,
        model_package_group_name=registry.group.model_package_group_name,
        training=config.training,
        serving_instance_type=config.serving.instance_type,
        serving_image_uri=served.for_instance_type(config.serving.instance_type),
        serving_environment=serving_environment,
        metric_definitions=METRIC_DEFINITIONS,
    ),
    opts=context.component_opts(),
)
alerts = Alerts(
    "alerts",
    AlertsArgs(
        stack=context.identity,
        kms_key_arn=data_lake.key.arn,
        email=config.alarms.notification_email,
    ),
    opts=context.component_opts(),
)
serving = InferenceEndpoint(
    "serving",
    InferenceEndpointArgs(
        stack=context.identity,
        endpoint_name=config.endpoint_name,
        kms_key_arn=data_lake.key.arn,
        bucket_names=data_lake.bucket_names,
        bucket_arns=data_lake.bucket_arns,
        model_package_group_name=registry.group.model_package_group_name,
        serving=config.serving,
        deployment=config.deployment,
        alarms=config.alarms,
        alarm_topic_arn=alerts.topic.arn,
        image_repository_arns=served.repository_arns,
    ),
    opts=context.component_opts(),
)
prediction_api = PredictionApi(
    "api",
    PredictionApiArgs(
        stack=context.identity,
        endpoint_name=config.endpoint_name,
        kms_key_arn=data_lake.key.arn,
        bucket_names=data_lake.bucket_names,
        bucket_arns=data_lake.bucket_arns,
        api=config.api,
        functions=functions,
    ),
    opts=context.component_opts(),
)
deployer = Deployer(
    "deployer",
    DeployerArgs(
        stack=context.identity,
        environment=config.environment.value,
        endpoint_name=config.endpoint_name,
        model_package_group_name=registry.group_name,
        model_role_arn=serving.role.arn,
        kms_key_arn=data_lake.key.arn,
        capture_uri=serving.capture_uri,
        serving=config.serving,
        deployment=config.deployment,
        rollback_alarm_names=[alarm.name for alarm in serving.rollback_alarms.values()],
        rollback_alarm_arns=[alarm.arn for alarm in serving.rollback_alarms.values()],
        alarm_topic_arn=alerts.topic.arn,
        artifacts_bucket=data_lake.bucket_names["artifacts"],
        artifacts_bucket_arn=data_lake.bucket_arns["artifacts"],
        functions=functions,
        serving_image_uris=served.uris,
        promotion_margin=config.training.promotion_margin,
    ),
    opts=context.component_opts(),
)
monitoring = Monitoring(
    "monitoring",
    MonitoringArgs(
        stack=context.identity,
        endpoint_name=config.endpoint_name,
        variant_name=config.serving.variants[0].name,
        function_names={
            "predict-api": prediction_api.api_function.name,
            "deployer": deployer.function.name,
        },
        api_name=prediction_api.rest_api.name,
        api_stage=prediction_api.stage_name,
        training_metrics=[definition["Name"] for definition in METRIC_DEFINITIONS],
        alarms=config.alarms,
        budget=config.budget,
        cost_tag=("ml-platform:stack", config.name_prefix),
        alarm_topic_arn=alerts.topic.arn,
        kms_key_arn=data_lake.key.arn,
        capture_uri=serving.capture_uri,
        bucket_names=data_lake.bucket_names,
        bucket_arns=data_lake.bucket_arns,
        pipeline_name=training.pipeline.pipeline_name,
        pipeline_arn=training.pipeline.arn,
        functions=functions,
    ),
    opts=context.component_opts(),
)

pulumi.export("environment", config.environment.value)
pulumi.export("region", config.region)
pulumi.export("bucketNames", data_lake.bucket_names)
pulumi.export("bucketArns", data_lake.bucket_arns)
pulumi.export("kmsKeyArn", data_lake.key.arn)
pulumi.export("modelPackageGroupName", registry.group.model_package_group_name)
pulumi.export("trainingPipelineName", training.pipeline.pipeline_name)
pulumi.export("trainingPipelineArn", training.pipeline.arn)
pulumi.export("trainingRoleArn", training.role.arn)
pulumi.export("apiUrl", prediction_api.api_url)
pulumi.export("apiId", prediction_api.rest_api.id)
pulumi.export("apiStageName", prediction_api.stage_name)
pulumi.export("apiKeyId", prediction_api.api_key.id if prediction_api.api_key else None)
pulumi.export("predictApiFunctionName", prediction_api.api_function.name)
pulumi.export("predictApiFunctionArn", prediction_api.api_function.arn)
pulumi.export("alertTopicArn", alerts.topic.arn)
pulumi.export("endpointName", config.endpoint_name)
pulumi.export("modelRoleArn", serving.role.arn)
pulumi.export("dataCaptureUri", serving.capture_uri)
pulumi.export("rollbackAlarmNames", [alarm.name for alarm in serving.rollback_alarms.values()])
pulumi.export("deployerFunctionName", deployer.function.name)
# The images models serve with, per instance family (mlctl models register reads them), and the
# platform images' repositories (the images workflow pushes there).
pulumi.export("servingImages", served.uris)
pulumi.export(
    "servingImageRepositories", {kind: repo.repository_url for kind, repo in images.repositories.items()}
)
pulumi.export("dashboardName", monitoring.dashboard.dashboard_name)
