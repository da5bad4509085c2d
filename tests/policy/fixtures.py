"""Minimal good properties per resource type, and per rule the one change that must make it fire."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

from policy.rules import Resource

Props = dict[str, Any]
Mutation = Callable[[Props], Props]
KEY = "arn:aws:kms:us-east-1:123456789012:key/k"
TOPIC = "arn:aws:sns:us-east-1:123456789012:alerts"


def _walk(props: Props, path: str) -> tuple[Any, str]:
    *parents, leaf = path.split(".")
    node: Any = props
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node, leaf


def drop(path: str) -> Mutation:
    def mutate(props: Props) -> Props:
        node, leaf = _walk(props, path)
        del node[leaf]
        return props

    return mutate


def put(path: str, value: Any) -> Mutation:
    def mutate(props: Props) -> Props:
        node, leaf = _walk(props, path)
        if isinstance(node, list):
            node[int(leaf)] = value
        else:
            node[leaf] = value
        return props

    return mutate


def in_document(key: str, mutation: Mutation) -> Mutation:
    """Apply ``mutation`` to the JSON document held (as a string) in ``props[key]``."""

    def mutate(props: Props) -> Props:
        props[key] = json.dumps(mutation(json.loads(props[key])))
        return props

    return mutate


def doc(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


TLS_DENY = {
    "Sid": "DenyInsecureTransport",
    "Effect": "Deny",
    "Principal": {"AWS": "*"},
    "Action": "*",
    "Resource": "*",
    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
}
SERVICE_ALLOW = {
    "Sid": "ServicePublishes",
    "Effect": "Allow",
    "Principal": {"Service": "events.amazonaws.com"},
    "Action": "sns:Publish",
    "Resource": TOPIC,
    "Condition": {"StringEquals": {"aws:SourceAccount": "123456789012"}},
}
PUBLIC_ALLOW = {
    "Sid": "Public",
    "Effect": "Allow",
    "Principal": "*",
    "Action": "s3:GetObject",
    "Resource": "*",
}

PIPELINE_DEFINITION = {
    "Parameters": [{"Name": "TrainingInstanceType", "Type": "String", "DefaultValue": "ml.m5.xlarge"}],
    "Steps": [
        {
            "Name": "Prepare",
            "Type": "Processing",
            "Arguments": {
                "NetworkConfig": {"EnableNetworkIsolation": True},
                "ProcessingOutputConfig": {"KmsKeyId": KEY, "Outputs": []},
                "ProcessingResources": {
                    "ClusterConfig": {
                        "InstanceCount": 1,
                        "InstanceType": "ml.m5.xlarge",
                        "VolumeKmsKeyId": KEY,
                    }
                },
                "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
            },
        },
        {
            "Name": "Train",
            "Type": "Training",
            "Arguments": {
                "EnableInterContainerTrafficEncryption": True,
                "EnableManagedSpotTraining": True,
                "EnableNetworkIsolation": True,
                "CheckpointConfig": {"S3Uri": "s3://artifacts/checkpoints/"},
                "OutputDataConfig": {"KmsKeyId": KEY, "S3OutputPath": "s3://artifacts/models"},
                "ResourceConfig": {
                    "InstanceCount": 2,
                    "InstanceType": {"Get": "Parameters.TrainingInstanceType"},
                    "VolumeKmsKeyId": KEY,
                },
                "StoppingCondition": {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200},
                "VpcConfig": {"Subnets": ["subnet-1"], "SecurityGroupIds": ["sg-1"]},
            },
        },
    ],
}


def step(index: int, mutation: Mutation) -> Mutation:
    """Apply ``mutation`` to a step's Arguments inside the pipeline definition."""

    def mutate(definition: Props) -> Props:
        mutation(definition["Steps"][index]["Arguments"])
        return definition

    return in_document("pipelineDefinition", mutate)


ROLE_POLICY = doc(
    {"Sid": "Read", "Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "arn:aws:s3:::b/*"},
    {"Sid": "Token", "Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"},
    {
        "Sid": "Metrics",
        "Effect": "Allow",
        "Action": "cloudwatch:PutMetricData",
        "Resource": "*",
        "Condition": {"StringEquals": {"cloudwatch:namespace": "ml-platform"}},
    },
    {
        "Sid": "Pass",
        "Effect": "Allow",
        "Action": "iam:PassRole",
        "Resource": "arn:aws:iam::123456789012:role/r",
        "Condition": {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
    },
)
TRUST = doc(
    {
        "Sid": "Lambda",
        "Effect": "Allow",
        "Principal": {"Service": "lambda.amazonaws.com"},
        "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"aws:SourceAccount": "123456789012"}},
    }
)
SSE_KMS = {"applyServerSideEncryptionByDefault": {"sseAlgorithm": "aws:kms", "kmsMasterKeyId": KEY}}

GOOD: dict[str, Props] = {
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": {
        "bucket": "b",
        "blockPublicAcls": True,
        "blockPublicPolicy": True,
        "ignorePublicAcls": True,
        "restrictPublicBuckets": True,
    },
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls": {
        "bucket": "b",
        "rule": {"objectOwnership": "BucketOwnerEnforced"},
    },
    "aws:s3/bucket:Bucket": {"bucket": "b", "forceDestroy": False},
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": {
        "bucket": "b",
        "rules": [{**SSE_KMS, "bucketKeyEnabled": True}],
    },
    "aws:s3/bucketVersioning:BucketVersioning": {
        "bucket": "b",
        "versioningConfiguration": {"status": "Enabled"},
    },
    "aws:s3/bucketPolicy:BucketPolicy": {"bucket": "b", "policy": doc(TLS_DENY)},
    "aws:s3/bucketLogging:BucketLogging": {"bucket": "b", "targetBucket": "logs", "targetPrefix": "b/"},
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": {
        "bucket": "mlp-dev-raw-1-us-east-1",
        "rules": [
            {
                "id": "abort",
                "status": "Enabled",
                "filter": {"prefix": ""},
                "abortIncompleteMultipartUpload": {"daysAfterInitiation": 7},
            },
            {
                "id": "noncurrent",
                "status": "Enabled",
                "filter": {"prefix": ""},
                "noncurrentVersionExpiration": {"noncurrentDays": 30},
            },
        ],
    },
    "aws:kms/key:Key": {
        "enableKeyRotation": True,
        "deletionWindowInDays": 30,
        "policy": doc(
            {
                "Sid": "Account",
                "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::1:root"},
                "Action": "kms:*",
                "Resource": "*",
            }
        ),
    },
    "aws:sns/topic:Topic": {"name": "alerts", "kmsMasterKeyId": KEY},
    "aws:sns/topicPolicy:TopicPolicy": {"arn": TOPIC, "policy": doc(SERVICE_ALLOW, TLS_DENY)},
    "aws:sqs/queue:Queue": {"name": "dlq", "kmsMasterKeyId": KEY},
    "aws:sqs/queuePolicy:QueuePolicy": {"queueUrl": "dlq", "policy": doc(SERVICE_ALLOW, TLS_DENY)},
    "aws:sagemaker/endpointConfiguration:EndpointConfiguration": {
        "kmsKeyArn": KEY,
        "productionVariants": [
            {"variantName": "primary", "instanceType": "ml.m5.large", "initialInstanceCount": 2}
        ],
        "dataCaptureConfig": {"enableCapture": True, "kmsKeyId": KEY, "destinationS3Uri": "s3://raw/capture"},
    },
    "aws:sagemaker/model:Model": {
        "executionRoleArn": "arn:aws:iam::1:role/m",
        "enableNetworkIsolation": True,
    },
    "aws:sagemaker/notebookInstance:NotebookInstance": {
        "kmsKeyId": KEY,
        "directInternetAccess": "Disabled",
        "rootAccess": "Disabled",
        "subnetId": "subnet-1",
    },
    "aws:sagemaker/pipeline:Pipeline": {
        "pipelineName": "p",
        "pipelineDefinition": json.dumps(PIPELINE_DEFINITION),
    },
    "aws:appautoscaling/target:Target": {"serviceNamespace": "sagemaker", "minCapacity": 2, "maxCapacity": 4},
    "aws:appautoscaling/policy:Policy": {
        "serviceNamespace": "sagemaker",
        "policyType": "TargetTrackingScaling",
        "targetTrackingScalingPolicyConfiguration": {
            "targetValue": 100,
            "predefinedMetricSpecification": {
                "predefinedMetricType": "SageMakerVariantInvocationsPerInstance"
            },
        },
    },
    "aws:lambda/function:Function": {
        "name": "fn",
        "runtime": "python3.11",
        "timeout": 25,
        "memorySize": 512,
        "kmsKeyArn": KEY,
        "reservedConcurrentExecutions": 5,
        "tracingConfig": {"mode": "Active"},
        "environment": {"variables": {"LOG_LEVEL": "INFO"}},
    },
    "aws:lambda/permission:Permission": {
        "function": "fn",
        "principal": "events.amazonaws.com",
        "action": "lambda:InvokeFunction",
        "sourceArn": "arn:aws:events:us-east-1:1:rule/r",
    },
    "aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig": {
        "functionName": "fn",
        "destinationConfig": {"onFailure": {"destination": TOPIC}},
    },
    "aws:apigateway/stage:Stage": {
        "stageName": "live",
        "xrayTracingEnabled": True,
        "accessLogSettings": {
            "destinationArn": "arn:aws:logs:us-east-1:1:log-group:access",
            "format": '{"requestId":"$context.requestId"}',
        },
    },
    "aws:apigateway/method:Method": {
        "httpMethod": "POST",
        "authorization": "NONE",
        "apiKeyRequired": True,
        "requestValidatorId": "v",
    },
    "aws:apigateway/methodSettings:MethodSettings": {
        "methodPath": "*/*",
        "settings": {
            "throttlingRateLimit": 20,
            "throttlingBurstLimit": 40,
            "dataTraceEnabled": False,
            "loggingLevel": "ERROR",
            "metricsEnabled": True,
        },
    },
    "aws:apigateway/integration:Integration": {"type": "AWS_PROXY", "timeoutMilliseconds": 29000},
    "aws:apigateway/usagePlan:UsagePlan": {"throttleSettings": {"rateLimit": 20, "burstLimit": 40}},
    "aws:apigateway/domainName:DomainName": {"domainName": "api.example.com", "securityPolicy": "TLS_1_2"},
    "aws:wafv2/webAcl:WebAcl": {"rules": [{"name": "rate", "priority": 0}]},
    "aws:iam/rolePolicy:RolePolicy": {"role": "r", "policy": ROLE_POLICY},
    "aws:iam/role:Role": {"name": "r", "assumeRolePolicy": TRUST},
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment": {
        "role": "r",
        "policyArn": "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    },
    "aws:iam/policyAttachment:PolicyAttachment": {"policyArn": "arn:aws:iam::1:policy/p", "roles": ["r"]},
    "aws:iam/userPolicy:UserPolicy": {"policy": ROLE_POLICY},
    "aws:cloudwatch/logGroup:LogGroup": {"name": "/aws/lambda/fn", "retentionInDays": 365, "kmsKeyId": KEY},
    "aws:cloudwatch/metricAlarm:MetricAlarm": {
        "alarmActions": [TOPIC],
        "actionsEnabled": True,
        "metricName": "Errors",
        "namespace": "AWS/Lambda",
        "dimensions": {"FunctionName": "fn"},
    },
    "aws:cloudwatch/eventTarget:EventTarget": {
        "rule": "r",
        "arn": TOPIC,
        "retryPolicy": {"maximumRetryAttempts": 3},
    },
    "aws:budgets/budget:Budget": {
        "limitAmount": "300.00",
        "notifications": [{"subscriberSnsTopicArns": [TOPIC], "threshold": 80}],
    },
}

ALLOW = in_document  # readability in the table below


def add_statement(statement: dict[str, Any]) -> Mutation:
    return in_document("policy", lambda d: {**d, "Statement": [*d["Statement"], statement]})


def trust(mutation: Callable[[Props], Any]) -> Mutation:
    def change(document: Props) -> Props:
        mutation(document["Statement"][0])
        return document

    return in_document("assumeRolePolicy", change)


def _del(key: str) -> Callable[[Props], Props]:
    def change(node: Props) -> Props:
        del node[key]
        return node

    return change


def _set(key: str, value: Any) -> Callable[[Props], Props]:
    def change(node: Props) -> Props:
        node[key] = value
        return node

    return change


def _nested(path: str, change: Callable[[Props], Props]) -> Callable[[Props], Props]:
    def apply(node: Props) -> Props:
        target = node
        for part in path.split("."):
            target = target[part]
        change(target)
        return node

    return apply


def _training_instance_default(instance_type: str) -> Callable[[Props], Props]:
    def change(definition: Props) -> Props:
        definition["Parameters"][0]["DefaultValue"] = instance_type
        return definition

    return change


S3_PAB = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
SSE = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
LIFECYCLE = "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"
ENDPOINT = "aws:sagemaker/endpointConfiguration:EndpointConfiguration"
NOTEBOOK = "aws:sagemaker/notebookInstance:NotebookInstance"
PIPELINE = "aws:sagemaker/pipeline:Pipeline"
FUNCTION = "aws:lambda/function:Function"
PERMISSION = "aws:lambda/permission:Permission"
METHOD_SETTINGS = "aws:apigateway/methodSettings:MethodSettings"
STAGE = "aws:apigateway/stage:Stage"
ROLE_POLICY_TYPE = "aws:iam/rolePolicy:RolePolicy"
ROLE = "aws:iam/role:Role"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
BUDGET = "aws:budgets/budget:Budget"
TRAIN, PREPARE = 1, 0

# rule id -> (resource type, the change that must make exactly this rule fire on that resource)
CASES: dict[str, tuple[str, Mutation]] = {
    "s3-block-public-acls": (S3_PAB, put("blockPublicAcls", False)),
    "s3-block-public-policy": (S3_PAB, drop("blockPublicPolicy")),
    "s3-ignore-public-acls": (S3_PAB, put("ignorePublicAcls", False)),
    "s3-restrict-public-buckets": (S3_PAB, drop("restrictPublicBuckets")),
    "s3-acls-disabled": (
        "aws:s3/bucketOwnershipControls:BucketOwnershipControls",
        put("rule.objectOwnership", "ObjectWriter"),
    ),
    "s3-no-public-acl": ("aws:s3/bucket:Bucket", put("acl", "public-read")),
    "s3-default-encryption": (SSE, put("rules", [])),
    "s3-sse-kms-cmk": (SSE, put("rules.0.applyServerSideEncryptionByDefault", {"sseAlgorithm": "AES256"})),
    "s3-bucket-key": (SSE, drop("rules.0.bucketKeyEnabled")),
    "s3-versioning": (
        "aws:s3/bucketVersioning:BucketVersioning",
        put("versioningConfiguration.status", "Suspended"),
    ),
    "s3-tls-only": ("aws:s3/bucketPolicy:BucketPolicy", put("policy", doc())),
    "s3-no-public-principal": ("aws:s3/bucketPolicy:BucketPolicy", add_statement(PUBLIC_ALLOW)),
    "s3-access-log-target": ("aws:s3/bucketLogging:BucketLogging", drop("targetBucket")),
    "s3-lifecycle-filter": (LIFECYCLE, drop("rules.1.filter")),
    "s3-abort-multipart": (LIFECYCLE, drop("rules.0.abortIncompleteMultipartUpload")),
    "s3-noncurrent-days": (LIFECYCLE, drop("rules.1.noncurrentVersionExpiration.noncurrentDays")),
    "s3-raw-never-expires": (LIFECYCLE, put("rules.1.expiration", {"days": 365})),
    "kms-rotation": ("aws:kms/key:Key", drop("enableKeyRotation")),
    "kms-key-policy": ("aws:kms/key:Key", drop("policy")),
    "kms-no-public-principal": ("aws:kms/key:Key", add_statement({**PUBLIC_ALLOW, "Action": "kms:Decrypt"})),
    "kms-deletion-window": ("aws:kms/key:Key", put("deletionWindowInDays", 7)),
    "sns-kms": ("aws:sns/topic:Topic", drop("kmsMasterKeyId")),
    "sns-tls-only": ("aws:sns/topicPolicy:TopicPolicy", put("policy", doc(SERVICE_ALLOW))),
    "sns-no-public-principal": ("aws:sns/topicPolicy:TopicPolicy", add_statement(PUBLIC_ALLOW)),
    "sqs-kms": ("aws:sqs/queue:Queue", put("kmsMasterKeyId", "alias/aws/sqs")),
    "sqs-tls-only": ("aws:sqs/queuePolicy:QueuePolicy", put("policy", doc(SERVICE_ALLOW))),
    "sqs-no-public-principal": ("aws:sqs/queuePolicy:QueuePolicy", add_statement(PUBLIC_ALLOW)),
    "sagemaker-endpoint-volume-kms": (ENDPOINT, drop("kmsKeyArn")),
    "sagemaker-endpoint-no-volume-kms-on-instance-storage": (
        ENDPOINT,
        put("productionVariants.0.instanceType", "ml.g4dn.xlarge"),
    ),
    "sagemaker-data-capture-enabled": (ENDPOINT, put("dataCaptureConfig.enableCapture", False)),
    "sagemaker-data-capture-kms": (ENDPOINT, drop("dataCaptureConfig.kmsKeyId")),
    "sagemaker-prod-instance-count": (ENDPOINT, put("productionVariants.0.initialInstanceCount", 1)),
    "sagemaker-model-network-isolation": ("aws:sagemaker/model:Model", drop("enableNetworkIsolation")),
    "sagemaker-notebook-kms": (NOTEBOOK, drop("kmsKeyId")),
    "sagemaker-notebook-no-internet": (NOTEBOOK, put("directInternetAccess", "Enabled")),
    "sagemaker-notebook-no-root": (NOTEBOOK, drop("rootAccess")),
    "sagemaker-notebook-vpc": (NOTEBOOK, drop("subnetId")),
    "sagemaker-training-output-kms": (PIPELINE, step(TRAIN, _nested("OutputDataConfig", _del("KmsKeyId")))),
    "sagemaker-training-volume-kms": (
        PIPELINE,
        step(TRAIN, _nested("ResourceConfig", _del("VolumeKmsKeyId"))),
    ),
    "sagemaker-pipeline-no-volume-kms-on-instance-storage": (
        PIPELINE,
        in_document("pipelineDefinition", _training_instance_default("ml.g5.xlarge")),
    ),
    "sagemaker-training-inter-container-encryption": (
        PIPELINE,
        step(TRAIN, _del("EnableInterContainerTrafficEncryption")),
    ),
    "sagemaker-training-network-isolation": (PIPELINE, step(TRAIN, _set("EnableNetworkIsolation", False))),
    "sagemaker-training-vpc": (PIPELINE, step(TRAIN, _del("VpcConfig"))),
    "sagemaker-training-max-runtime": (
        PIPELINE,
        step(TRAIN, _nested("StoppingCondition", _del("MaxRuntimeInSeconds"))),
    ),
    "sagemaker-training-spot-checkpoints": (PIPELINE, step(TRAIN, _del("CheckpointConfig"))),
    "sagemaker-processing-output-kms": (
        PIPELINE,
        step(PREPARE, _nested("ProcessingOutputConfig", _del("KmsKeyId"))),
    ),
    "sagemaker-processing-network-isolation": (PIPELINE, step(PREPARE, _del("NetworkConfig"))),
    "sagemaker-processing-max-runtime": (PIPELINE, step(PREPARE, _del("StoppingCondition"))),
    "sagemaker-autoscaling-prod-min-capacity": ("aws:appautoscaling/target:Target", put("minCapacity", 1)),
    "sagemaker-autoscaling-target-tracking": (
        "aws:appautoscaling/policy:Policy",
        put("policyType", "StepScaling"),
    ),
    "lambda-tracing": (FUNCTION, put("tracingConfig.mode", "PassThrough")),
    "lambda-reserved-concurrency": (FUNCTION, drop("reservedConcurrentExecutions")),
    "lambda-env-kms": (FUNCTION, drop("kmsKeyArn")),
    "lambda-no-secrets-in-env": (FUNCTION, put("environment.variables.DB_PASSWORD", "hunter2")),
    "lambda-supported-runtime": (FUNCTION, put("runtime", "python3.7")),
    "lambda-explicit-timeout": (FUNCTION, drop("timeout")),
    "lambda-explicit-memory": (FUNCTION, drop("memorySize")),
    "lambda-permission-source-arn": (PERMISSION, drop("sourceArn")),
    "lambda-permission-no-wildcard": (PERMISSION, put("principal", "*")),
    "lambda-invoke-config-on-failure": (
        "aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig",
        drop("destinationConfig"),
    ),
    "apigw-access-logging": (STAGE, drop("accessLogSettings.destinationArn")),
    "apigw-access-log-json": (STAGE, put("accessLogSettings.format", "$context.requestId $context.status")),
    "apigw-xray": (STAGE, drop("xrayTracingEnabled")),
    "apigw-stage-cache-encrypted": (
        STAGE,
        lambda p: {**p, "cacheClusterEnabled": True, "cacheClusterEncrypted": False},
    ),
    "apigw-method-auth": ("aws:apigateway/method:Method", put("apiKeyRequired", False)),
    "apigw-request-validation": ("aws:apigateway/method:Method", drop("requestValidatorId")),
    "apigw-throttling": (METHOD_SETTINGS, drop("settings.throttlingBurstLimit")),
    "apigw-data-trace-off": (METHOD_SETTINGS, put("settings.dataTraceEnabled", True)),
    "apigw-execution-logging": (METHOD_SETTINGS, put("settings.loggingLevel", "OFF")),
    "apigw-cache-data-encrypted": (METHOD_SETTINGS, put("settings.cachingEnabled", True)),
    "apigw-integration-timeout": ("aws:apigateway/integration:Integration", drop("timeoutMilliseconds")),
    "apigw-usage-plan-throttle": ("aws:apigateway/usagePlan:UsagePlan", drop("throttleSettings")),
    "apigw-tls-policy": ("aws:apigateway/domainName:DomainName", put("securityPolicy", "TLS_1_0")),
    "waf-web-acl-rules": ("aws:wafv2/webAcl:WebAcl", put("rules", [])),
    "iam-no-admin": (
        ROLE_POLICY_TYPE,
        add_statement({"Sid": "Admin", "Effect": "Allow", "Action": "*", "Resource": "*"}),
    ),
    "iam-no-star-action": (
        ROLE_POLICY_TYPE,
        add_statement({"Sid": "All", "Effect": "Allow", "Action": "*", "Resource": "arn:aws:s3:::b"}),
    ),
    "iam-no-service-wildcard-action": (
        ROLE_POLICY_TYPE,
        add_statement({"Sid": "S3", "Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::b"}),
    ),
    "iam-no-not-action": (
        ROLE_POLICY_TYPE,
        add_statement(
            {"Sid": "Not", "Effect": "Allow", "NotAction": "iam:CreateUser", "Resource": "arn:aws:s3:::b"}
        ),
    ),
    "iam-no-star-resource": (
        ROLE_POLICY_TYPE,
        add_statement({"Sid": "Any", "Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}),
    ),
    "iam-put-metric-data-condition": (
        ROLE_POLICY_TYPE,
        add_statement(
            {"Sid": "AnyNamespace", "Effect": "Allow", "Action": "cloudwatch:PutMetricData", "Resource": "*"}
        ),
    ),
    "iam-pass-role-scoped": (
        ROLE_POLICY_TYPE,
        add_statement(
            {
                "Sid": "AnyService",
                "Effect": "Allow",
                "Action": "iam:PassRole",
                "Resource": "arn:aws:iam::123456789012:role/r",
            }
        ),
    ),
    "iam-no-managed-admin": (ROLE, put("managedPolicyArns", ["arn:aws:iam::aws:policy/AdministratorAccess"])),
    "iam-trust-services-only": (ROLE, trust(lambda s: s.update(Principal={"AWS": "arn:aws:iam::999:root"}))),
    "iam-trust-source-condition": (ROLE, trust(lambda s: s.pop("Condition"))),
    "iam-no-user-attachments": ("aws:iam/policyAttachment:PolicyAttachment", put("users", ["alice"])),
    "iam-no-user-inline-policy": ("aws:iam/userPolicy:UserPolicy", put("user", "alice")),
    "cw-log-retention": (LOG_GROUP, drop("retentionInDays")),
    "cw-log-retention-prod": (LOG_GROUP, put("retentionInDays", 30)),
    "cw-log-kms": (LOG_GROUP, drop("kmsKeyId")),
    "cw-alarm-action": (ALARM, put("alarmActions", [])),
    "cw-alarm-actions-enabled": (ALARM, put("actionsEnabled", False)),
    "cw-alarm-dimensions": (ALARM, drop("dimensions")),
    "events-target-retry": ("aws:cloudwatch/eventTarget:EventTarget", drop("retryPolicy")),
    "budget-notifications": (BUDGET, put("notifications", [])),
    "budget-limit": (BUDGET, drop("limitAmount")),
}


def mutated(type_: str, mutation: Mutation) -> Props:
    return mutation(copy.deepcopy(GOOD[type_]))


# ------------------------------------------------------------------ stack-rule fixtures


def _r(type_: str, logical: str, **props: Any) -> Resource:
    return Resource(
        type=type_, name=logical, urn=f"urn:pulumi:prod::ml-platform::{type_}::{logical}", props=props
    )


def good_stack() -> list[Resource]:
    """Two buckets (data, logs) with every companion resource, a function, a stage behind WAF."""
    resources: list[Resource] = []
    for bucket in ("data", "logs"):
        resources += [
            _r("aws:s3/bucket:Bucket", bucket, bucket=bucket),
            _r(S3_PAB, f"{bucket}-pab", **{**GOOD[S3_PAB], "bucket": bucket}),
            _r(
                "aws:s3/bucketOwnershipControls:BucketOwnershipControls",
                f"{bucket}-ownership",
                bucket=bucket,
                rule={"objectOwnership": "BucketOwnerEnforced"},
            ),
            _r(SSE, f"{bucket}-encryption", **{**GOOD[SSE], "bucket": bucket}),
            _r(
                "aws:s3/bucketVersioning:BucketVersioning",
                f"{bucket}-versioning",
                bucket=bucket,
                versioningConfiguration={"status": "Enabled"},
            ),
            _r("aws:s3/bucketPolicy:BucketPolicy", f"{bucket}-policy", bucket=bucket, policy=doc(TLS_DENY)),
            _r(LIFECYCLE, f"{bucket}-lifecycle", **{**GOOD[LIFECYCLE], "bucket": bucket}),
        ]
    resources += [
        _r("aws:s3/bucketLogging:BucketLogging", "data-logging", bucket="data", targetBucket="logs"),
        _r(FUNCTION, "fn", **GOOD[FUNCTION]),
        _r(LOG_GROUP, "fn-logs", **GOOD[LOG_GROUP]),
        _r(PERMISSION, "fn-permission", **GOOD[PERMISSION]),
        _r(
            "aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig",
            "fn-async",
            **GOOD["aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig"],
        ),
        _r(STAGE, "stage", **GOOD[STAGE]),
        _r(
            "aws:wafv2/webAclAssociation:WebAclAssociation",
            "waf",
            resourceArn="arn:aws:apigateway:us-east-1::/restapis/api/stages/live",
            webAclArn="arn:aws:wafv2:acl",
        ),
    ]
    return resources


# stack rule id -> (the resource removed from the good stack, the resources the violations name)
STACK_CASES: dict[str, tuple[str, str]] = {
    "s3-bucket-public-access-block": ("data-pab", "data"),
    "s3-bucket-ownership-controls": ("data-ownership", "data"),
    "s3-bucket-encryption": ("logs-encryption", "logs"),
    "s3-bucket-versioning": ("data-versioning", "data"),
    "s3-bucket-tls-policy": ("logs-policy", "logs"),
    "s3-bucket-access-logging": ("data-logging", "data logs"),
    "s3-bucket-lifecycle": ("data-lifecycle", "data"),
    "lambda-async-on-failure": ("fn-async", "fn"),
    "lambda-log-group": ("fn-logs", "fn"),
    "apigw-waf": ("waf", "stage"),
}
