"""Create the offline plan's resources in the emulator, under the names the Pulumi program declares,
for local mode and tests; types local mode does not need are skipped and reported
(docs/local-platform.md).
"""

from __future__ import annotations

import io
import json
import zipfile
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.offline import Plan, PlannedResource

ENCRYPTION_TYPE = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
# The code of an emulated function: a placeholder, as local mode runs its handler from the project.
PLACEHOLDER_CODE_NOTE = (
    "The local Lambda runtime imports this function's handler from the project checkout.\n"
)


@dataclass
class AppliedStack:
    """What was created, what was skipped, and how planned identifiers map to the emulator's."""

    created: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    # Settings the emulator cannot honour, kept in the plan (and its tests) but not handed over.
    emulator_gaps: list[str] = field(default_factory=list)
    identifiers: dict[str, str] = field(default_factory=dict)
    # API Gateway's identifiers, per kind (``restApi``, ``resource``, ...): a REST API and its usage
    # plan share a planned id, which is also the API's name (an alarm dimension), so they stay out
    # of ``identifiers``.
    gateway_ids: dict[tuple[str, str], str] = field(default_factory=dict)

    def created_types(self) -> Counter[str]:
        """How many resources of each type the emulator holds."""
        return Counter(entry.split(" ", 1)[0] for entry in self.created)

    def skipped_types(self) -> Counter[str]:
        """How many resources of each type are not emulated."""
        return Counter(entry.split(" ", 1)[0] for entry in self.skipped)

    def resolve_json(self, document: Any) -> str:
        """A JSON document (text or parsed) as text, with planned identifiers inside it resolved."""
        parsed = json.loads(document) if isinstance(document, str) else document
        return json.dumps(self.resolve(parsed), sort_keys=True)

    def resolve(self, value: Any) -> Any:
        """``value`` with every planned identifier replaced by the emulator's."""
        if isinstance(value, str):
            return self.identifiers.get(value, value)
        if isinstance(value, Mapping):
            return {key: self.resolve(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        return value


class LocalApplier:
    """Applies a :class:`Plan` through boto3 clients (``s3``, ``kms``, ``sagemaker``, ``sns``) pointed
    at the emulator. IAM roles, Lambda functions, EventBridge rules, CloudWatch alarms and dashboard,
    and the REST API's declaration are created when ``clients`` also has ``iam``, ``lambda``,
    ``events``, ``cloudwatch`` and ``apigateway``; without one of them, its types are not emulated."""

    def __init__(self, clients: Mapping[str, Any], region: str) -> None:
        self._s3 = clients["s3"]
        self._kms = clients["kms"]
        self._sagemaker = clients["sagemaker"]
        self._sns = clients["sns"]
        self._iam: Any = clients.get("iam")
        self._lambda: Any = clients.get("lambda")
        self._events: Any = clients.get("events")
        self._cloudwatch: Any = clients.get("cloudwatch")
        self._apigateway: Any = clients.get("apigateway")
        self._region = region
        self._handlers: dict[str, Callable[[Mapping[str, Any], AppliedStack, PlannedResource], None]] = {
            "aws:kms/key:Key": self._key,
            "aws:kms/alias:Alias": self._alias,
            "aws:s3/bucket:Bucket": self._bucket,
            "aws:s3/bucketVersioning:BucketVersioning": self._versioning,
            "aws:s3/bucketOwnershipControls:BucketOwnershipControls": self._ownership,
            "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": self._public_access_block,
            ENCRYPTION_TYPE: self._encryption,
            "aws:s3/bucketPolicy:BucketPolicy": self._policy,
            "aws:s3/bucketLogging:BucketLogging": self._logging,
            "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": self._lifecycle,
            "aws:s3/bucketNotification:BucketNotification": self._notification,
            "aws:s3/bucketObjectv2:BucketObjectv2": self._object,
            "aws:sagemaker/modelPackageGroup:ModelPackageGroup": self._model_package_group,
            "aws:sagemaker/pipeline:Pipeline": self._pipeline,
            "aws:sns/topic:Topic": self._topic,
            "aws:sns/topicPolicy:TopicPolicy": self._topic_policy,
        }
        if self._iam is not None:
            self._handlers["aws:iam/role:Role"] = self._role
            self._handlers["aws:iam/rolePolicy:RolePolicy"] = self._role_policy
        if self._lambda is not None:
            self._handlers["aws:lambda/function:Function"] = self._function
            self._handlers["aws:lambda/permission:Permission"] = self._permission
            self._handlers["aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig"] = (
                self._event_invoke_config
            )
        if self._events is not None:
            self._handlers["aws:cloudwatch/eventRule:EventRule"] = self._rule
            self._handlers["aws:cloudwatch/eventTarget:EventTarget"] = self._target
        if self._cloudwatch is not None:
            self._handlers["aws:cloudwatch/metricAlarm:MetricAlarm"] = self._alarm
            self._handlers["aws:cloudwatch/dashboard:Dashboard"] = self._dashboard
        if self._apigateway is not None:
            self._handlers.update(
                {
                    f"aws:apigateway/{kind[0].lower()}{kind[1:]}:{kind}": handler
                    for kind, handler in (
                        ("RestApi", self._rest_api),
                        ("Resource", self._api_resource),
                        ("Model", self._api_model),
                        ("RequestValidator", self._request_validator),
                        ("Method", self._method),
                        ("Integration", self._integration),
                        ("Response", self._gateway_response),
                        ("Deployment", self._deployment),
                        ("Stage", self._stage),
                        ("MethodSettings", self._method_settings),
                        ("Account", self._api_account),
                        ("ApiKey", self._api_key),
                        ("UsagePlan", self._usage_plan),
                        ("UsagePlanKey", self._usage_plan_key),
                    )
                }
            )

    def apply(self, plan: Plan) -> AppliedStack:
        applied = AppliedStack()
        for resource in plan.in_dependency_order():
            handler = self._handlers.get(resource.type)
            if not resource.custom or resource.type.startswith("pulumi:providers:"):
                continue
            if handler is None:
                applied.skipped.append(f"{resource.type} {resource.name}")
                continue
            handler(applied.resolve(dict(resource.inputs)), applied, resource)
            applied.created.append(f"{resource.type} {resource.name}")
        return applied

    # --- KMS ------------------------------------------------------------------------------------------

    def _key(self, inputs: Mapping[str, Any], applied: AppliedStack, planned: PlannedResource) -> None:
        metadata = self._kms.create_key(
            Description=inputs.get("description", planned.name), Policy=inputs["policy"]
        )["KeyMetadata"]
        if inputs.get("enableKeyRotation"):
            self._kms.enable_key_rotation(KeyId=metadata["KeyId"])
        applied.identifiers[planned.outputs["arn"]] = metadata["Arn"]
        applied.identifiers[planned.id] = metadata["KeyId"]

    def _alias(self, inputs: Mapping[str, Any], applied: AppliedStack, planned: PlannedResource) -> None:
        self._kms.create_alias(AliasName=inputs["name"], TargetKeyId=inputs["targetKeyId"])

    # --- S3 -------------------------------------------------------------------------------------------

    def _bucket(self, inputs: Mapping[str, Any], applied: AppliedStack, planned: PlannedResource) -> None:
        location = (
            {}
            if self._region == "us-east-1"
            else {"CreateBucketConfiguration": {"LocationConstraint": self._region}}
        )
        self._s3.create_bucket(Bucket=inputs["bucket"], **location)

    def _versioning(self, inputs: Mapping[str, Any], applied: AppliedStack, planned: PlannedResource) -> None:
        status = inputs["versioningConfiguration"]["status"]
        self._s3.put_bucket_versioning(Bucket=inputs["bucket"], VersioningConfiguration={"Status": status})

    def _ownership(self, inputs: Mapping[str, Any], applied: AppliedStack, planned: PlannedResource) -> None:
        rule = {"ObjectOwnership": inputs["rule"]["objectOwnership"]}
        self._s3.put_bucket_ownership_controls(Bucket=inputs["bucket"], OwnershipControls={"Rules": [rule]})

    def _public_access_block(
        self, inputs: Mapping[str, Any], applied: AppliedStack, planned: PlannedResource
    ) -> None:
        flags = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
        configuration = {flag[0].upper() + flag[1:]: bool(inputs.get(flag, False)) for flag in flags}
        self._s3.put_public_access_block(
            Bucket=inputs["bucket"], PublicAccessBlockConfiguration=configuration
        )

    def _encryption(self, inputs: Mapping[str, Any], applied: AppliedStack, planned: PlannedResource) -> None:
        rules = []
        for rule in inputs["rules"]:
            default = rule["applyServerSideEncryptionByDefault"]
            by_default = {"SSEAlgorithm": default["sseAlgorithm"]}
            if default.get("kmsMasterKeyId"):
                by_default["KMSMasterKeyID"] = default["kmsMasterKeyId"]
            rules.append(
                {
                    "ApplyServerSideEncryptionByDefault": by_default,
                    "BucketKeyEnabled": bool(rule.get("bucketKeyEnabled")),
                }
            )
        self._s3.put_bucket_encryption(
            Bucket=inputs["bucket"], ServerSideEncryptionConfiguration={"Rules": rules}
        )

    def _policy(self, inputs: Mapping[str, Any], applied: AppliedStack, planned: PlannedResource) -> None:
        document = inputs["policy"]
        policy = json.loads(document) if isinstance(document, str) else dict(document)
        # moto evaluates bucket policies without their conditions, so a conditional Deny (TLS-only)
        # would deny every request, TLS or not. Those statements stay in AWS, not in the emulator.
        kept = []
        for statement in policy["Statement"]:
            if statement["Effect"] == "Deny" and "Condition" in statement:
                applied.emulator_gaps.append(
                    f"{inputs['bucket']}: {statement.get('Sid', 'Deny')} (conditional deny)"
                )
            else:
                kept.append(statement)
        if kept:
            self._s3.put_bucket_policy(
                Bucket=inputs["bucket"], Policy=json.dumps({**policy, "Statement": kept})
            )

    def _logging(self, inputs: Mapping[str, Any], applied: AppliedStack, planned: PlannedResource) -> None:
        enabled = {"TargetBucket": inputs["targetBucket"], "TargetPrefix": inputs.get("targetPrefix", "")}
        self._s3.put_bucket_logging(Bucket=inputs["bucket"], BucketLoggingStatus={"LoggingEnabled": enabled})

    def _lifecycle(self, inputs: Mapping[str, Any], applied: AppliedStack, planned: PlannedResource) -> None:
        rules = [_lifecycle_rule(rule) for rule in inputs["rules"]]
        self._s3.put_bucket_lifecycle_configuration(
            Bucket=inputs["bucket"], LifecycleConfiguration={"Rules": rules}
        )

    def _notification(
        self, inputs: Mapping[str, Any], applied: AppliedStack, planned: PlannedResource
    ) -> None:
        configuration: dict[str, Any] = {"EventBridgeConfiguration": {}} if inputs.get("eventbridge") else {}
        self._s3.put_bucket_notification_configuration(
            Bucket=inputs["bucket"], NotificationConfiguration=configuration
        )

    def _object(self, inputs: Mapping[str, Any], applied: AppliedStack, planned: PlannedResource) -> None:
        source = inputs["source"]  # a FileAsset: the training code bundle
        with Path(source.path).open("rb") as body:
            self._s3.put_object(Bucket=inputs["bucket"], Key=inputs["key"], Body=body)

    # --- SageMaker and SNS ----------------------------------------------------------------------------

    def _model_package_group(
        self, inputs: Mapping[str, Any], applied: AppliedStack, planned: PlannedResource
    ) -> None:
        self._sagemaker.create_model_package_group(
            ModelPackageGroupName=inputs["modelPackageGroupName"],
            ModelPackageGroupDescription=inputs.get("modelPackageGroupDescription", ""),
        )

    def _pipeline(self, inputs: Mapping[str, Any], applied: AppliedStack, planned: PlannedResource) -> None:
        # The definition holds planned identifiers (the key's ARN) inside its JSON text.
        definition = json.dumps(applied.resolve(json.loads(inputs["pipelineDefinition"])), sort_keys=True)
        self._sagemaker.create_pipeline(
            PipelineName=inputs["pipelineName"],
            PipelineDisplayName=inputs.get("pipelineDisplayName", inputs["pipelineName"]),
            PipelineDefinition=definition,
            PipelineDescription=inputs.get("pipelineDescription", ""),
            RoleArn=inputs["roleArn"],
        )

    def _topic(self, inputs: Mapping[str, Any], applied: AppliedStack, planned: PlannedResource) -> None:
        arn = self._sns.create_topic(Name=inputs["name"])["TopicArn"]
        applied.identifiers[planned.outputs["arn"]] = arn

    def _topic_policy(
        self, inputs: Mapping[str, Any], applied: AppliedStack, planned: PlannedResource
    ) -> None:
        self._sns.set_topic_attributes(
            TopicArn=inputs["arn"],
            AttributeName="Policy",
            AttributeValue=applied.resolve_json(inputs["policy"]),
        )

    # --- IAM --------------------------------------------------------------------------------------------

    def _role(self, inputs: Mapping[str, Any], applied: AppliedStack, planned: PlannedResource) -> None:
        role = self._iam.create_role(
            RoleName=inputs["name"],
            AssumeRolePolicyDocument=applied.resolve_json(inputs["assumeRolePolicy"]),
            Description=inputs.get("description", ""),
            MaxSessionDuration=int(inputs.get("maxSessionDuration", 3600)),
        )["Role"]
        applied.identifiers[planned.outputs["arn"]] = role["Arn"]

    def _role_policy(
        self, inputs: Mapping[str, Any], applied: AppliedStack, planned: PlannedResource
    ) -> None:
        self._iam.put_role_policy(
            RoleName=inputs["role"],
            PolicyName=inputs.get("name") or planned.id,
            PolicyDocument=applied.resolve_json(inputs["policy"]),
        )

    # --- Lambda -----------------------------------------------------------------------------------------

    def _function(self, inputs: Mapping[str, Any], applied: AppliedStack, planned: PlannedResource) -> None:
        name = inputs["name"]
        variables = (inputs.get("environment") or {}).get("variables") or {}
        created = self._lambda.create_function(
            FunctionName=name,
            Runtime=inputs["runtime"],
            Role=inputs["role"],
            Handler=inputs["handler"],
            Code={"ZipFile": _placeholder_code()},
            Description=inputs.get("description", ""),
            Timeout=int(inputs.get("timeout", 3)),
            MemorySize=int(inputs.get("memorySize", 128)),
            Environment={"Variables": {str(key): str(value) for key, value in variables.items()}},
            TracingConfig={"Mode": (inputs.get("tracingConfig") or {}).get("mode", "PassThrough")},
            Architectures=list(inputs.get("architectures") or ["x86_64"]),
            **({"KMSKeyArn": inputs["kmsKeyArn"]} if inputs.get("kmsKeyArn") else {}),
        )
        applied.identifiers[planned.outputs["arn"]] = created["FunctionArn"]
        if inputs.get("reservedConcurrentExecutions") is not None:
            self._lambda.put_function_concurrency(
                FunctionName=name, ReservedConcurrentExecutions=int(inputs["reservedConcurrentExecutions"])
            )
        if inputs.get("layers"):
            applied.emulator_gaps.append(f"{name}: layers (its handler runs with the project's packages)")

    def _permission(self, inputs: Mapping[str, Any], applied: AppliedStack, planned: PlannedResource) -> None:
        self._lambda.add_permission(
            FunctionName=inputs["function"],
            StatementId=inputs.get("statementId") or planned.id,
            Action=inputs["action"],
            Principal=inputs["principal"],
            **({"SourceArn": inputs["sourceArn"]} if inputs.get("sourceArn") else {}),
        )

    def _event_invoke_config(
        self, inputs: Mapping[str, Any], applied: AppliedStack, planned: PlannedResource
    ) -> None:
        settings: dict[str, Any] = {"FunctionName": inputs["functionName"]}
        if inputs.get("maximumRetryAttempts") is not None:
            settings["MaximumRetryAttempts"] = int(inputs["maximumRetryAttempts"])
        if inputs.get("maximumEventAgeInSeconds") is not None:
            settings["MaximumEventAgeInSeconds"] = int(inputs["maximumEventAgeInSeconds"])
        destinations = inputs.get("destinationConfig") or {}
        translated = {
            key: {"Destination": destinations[name]["destination"]}
            for name, key in (("onFailure", "OnFailure"), ("onSuccess", "OnSuccess"))
            if name in destinations
        }
        if translated:
            settings["DestinationConfig"] = translated
        self._lambda.put_function_event_invoke_config(**settings)

    # --- EventBridge ------------------------------------------------------------------------------------

    def _rule(self, inputs: Mapping[str, Any], applied: AppliedStack, planned: PlannedResource) -> None:
        settings: dict[str, Any] = {
            "Name": inputs["name"],
            "Description": inputs.get("description", ""),
            "State": inputs.get("state") or "ENABLED",
        }
        if inputs.get("eventPattern"):
            settings["EventPattern"] = applied.resolve_json(inputs["eventPattern"])
        if inputs.get("scheduleExpression"):
            settings["ScheduleExpression"] = inputs["scheduleExpression"]
        arn = self._events.put_rule(**settings)["RuleArn"]
        applied.identifiers[planned.outputs["arn"]] = arn

    def _target(self, inputs: Mapping[str, Any], applied: AppliedStack, planned: PlannedResource) -> None:
        self._events.put_targets(Rule=inputs["rule"], Targets=[_event_target(inputs, planned.id)])

    # --- CloudWatch -------------------------------------------------------------------------------------

    def _alarm(self, inputs: Mapping[str, Any], applied: AppliedStack, planned: PlannedResource) -> None:
        self._cloudwatch.put_metric_alarm(**_alarm_settings(inputs))

    def _dashboard(self, inputs: Mapping[str, Any], applied: AppliedStack, planned: PlannedResource) -> None:
        self._cloudwatch.put_dashboard(
            DashboardName=inputs["dashboardName"], DashboardBody=inputs["dashboardBody"]
        )

    # --- API Gateway: the REST API as declared; emulator/api_gateway.py serves its requests --------------

    def _gateway_id(self, applied: AppliedStack, kind: str, planned_id: str) -> str:
        return applied.gateway_ids.get((kind, planned_id), planned_id)

    def _api_id(self, inputs: Mapping[str, Any], applied: AppliedStack) -> str:
        return self._gateway_id(applied, "restApi", inputs.get("restApi") or inputs["restApiId"])

    def _resource_id(self, inputs: Mapping[str, Any], applied: AppliedStack, key: str) -> str:
        """The resource ``inputs[key]`` names; the API's root when the plan leaves it out (the root's id
        is an output of the REST API, unknown offline)."""
        if not inputs.get(key):
            return applied.gateway_ids[("root", inputs["restApi"])]
        return self._gateway_id(applied, "resource", inputs[key])

    def _rest_api(self, inputs: Mapping[str, Any], applied: AppliedStack, planned: PlannedResource) -> None:
        types = (inputs.get("endpointConfiguration") or {}).get("types") or ["REGIONAL"]
        api = self._apigateway.create_rest_api(
            name=inputs["name"],
            description=inputs.get("description", ""),
            apiKeySource=inputs.get("apiKeySource") or "HEADER",
            endpointConfiguration={"types": [types] if isinstance(types, str) else list(types)},
        )
        applied.gateway_ids[("restApi", planned.id)] = api["id"]
        resources = self._apigateway.get_resources(restApiId=api["id"])["items"]
        root = next(resource["id"] for resource in resources if resource["path"] == "/")
        applied.gateway_ids[("root", planned.id)] = root

    def _api_resource(
        self, inputs: Mapping[str, Any], applied: AppliedStack, planned: PlannedResource
    ) -> None:
        created = self._apigateway.create_resource(
            restApiId=self._api_id(inputs, applied),
            parentId=self._resource_id(inputs, applied, "parentId"),
            pathPart=inputs["pathPart"],
        )
        applied.gateway_ids[("resource", planned.id)] = created["id"]

    def _api_model(self, inputs: Mapping[str, Any], applied: AppliedStack, planned: PlannedResource) -> None:
        self._apigateway.create_model(
            restApiId=self._api_id(inputs, applied),
            name=inputs["name"],
            description=inputs.get("description", ""),
            schema=inputs.get("schema", ""),
            contentType=inputs["contentType"],
        )

    def _request_validator(
        self, inputs: Mapping[str, Any], applied: AppliedStack, planned: PlannedResource
    ) -> None:
        created = self._apigateway.create_request_validator(
            restApiId=self._api_id(inputs, applied),
            name=inputs.get("name") or planned.id,
            validateRequestBody=bool(inputs.get("validateRequestBody")),
            validateRequestParameters=bool(inputs.get("validateRequestParameters")),
        )
        applied.gateway_ids[("requestValidator", planned.id)] = created["id"]

    def _method(self, inputs: Mapping[str, Any], applied: AppliedStack, planned: PlannedResource) -> None:
        settings: dict[str, Any] = {
            "restApiId": self._api_id(inputs, applied),
            "resourceId": self._resource_id(inputs, applied, "resourceId"),
            "httpMethod": inputs["httpMethod"],
            "authorizationType": inputs["authorization"],
            "apiKeyRequired": bool(inputs.get("apiKeyRequired")),
        }
        if inputs.get("requestValidatorId"):
            validator = self._gateway_id(applied, "requestValidator", inputs["requestValidatorId"])
            settings["requestValidatorId"] = validator
        for name in ("requestModels", "requestParameters"):
            if inputs.get(name):
                settings[name] = dict(inputs[name])
        self._apigateway.put_method(**settings)

    def _integration(
        self, inputs: Mapping[str, Any], applied: AppliedStack, planned: PlannedResource
    ) -> None:
        settings: dict[str, Any] = {
            "restApiId": self._api_id(inputs, applied),
            "resourceId": self._resource_id(inputs, applied, "resourceId"),
            "httpMethod": inputs["httpMethod"],
            "type": inputs["type"],
        }
        for name, key in (("integrationHttpMethod", "integrationHttpMethod"), ("uri", "uri")):
            if inputs.get(name):
                settings[key] = inputs[name]
        if inputs.get("timeoutMilliseconds") is not None:
            settings["timeoutInMillis"] = int(inputs["timeoutMilliseconds"])
        self._apigateway.put_integration(**settings)

    def _gateway_response(
        self, inputs: Mapping[str, Any], applied: AppliedStack, planned: PlannedResource
    ) -> None:
        settings: dict[str, Any] = {
            "restApiId": self._api_id(inputs, applied),
            "responseType": inputs["responseType"],
        }
        if inputs.get("statusCode"):
            settings["statusCode"] = str(inputs["statusCode"])
        for name in ("responseParameters", "responseTemplates"):
            if inputs.get(name):
                settings[name] = dict(inputs[name])
        self._apigateway.put_gateway_response(**settings)

    def _deployment(self, inputs: Mapping[str, Any], applied: AppliedStack, planned: PlannedResource) -> None:
        created = self._apigateway.create_deployment(
            restApiId=self._api_id(inputs, applied), description=inputs.get("description", "")
        )
        applied.gateway_ids[("deployment", planned.id)] = created["id"]

    def _stage(self, inputs: Mapping[str, Any], applied: AppliedStack, planned: PlannedResource) -> None:
        api_id = self._api_id(inputs, applied)
        self._apigateway.create_stage(
            restApiId=api_id,
            stageName=inputs["stageName"],
            deploymentId=self._gateway_id(applied, "deployment", inputs["deployment"]),
            description=inputs.get("description", ""),
            tracingEnabled=bool(inputs.get("xrayTracingEnabled")),
        )
        logs = inputs.get("accessLogSettings") or {}
        operations = [
            {"op": "replace", "path": f"/accessLogSettings/{key}", "value": str(logs[name])}
            for name, key in (("destinationArn", "destinationArn"), ("format", "format"))
            if logs.get(name)
        ]
        if operations:
            self._apigateway.update_stage(
                restApiId=api_id, stageName=inputs["stageName"], patchOperations=operations
            )

    def _method_settings(
        self, inputs: Mapping[str, Any], applied: AppliedStack, planned: PlannedResource
    ) -> None:
        operations = [
            {"op": "replace", "path": f"/{inputs['methodPath']}/{path}", "value": _patch_value(value)}
            for name, value in (inputs.get("settings") or {}).items()
            if (path := METHOD_SETTING_PATHS.get(name)) is not None
        ]
        self._apigateway.update_stage(
            restApiId=self._api_id(inputs, applied),
            stageName=inputs["stageName"],
            patchOperations=operations,
        )

    def _api_account(
        self, inputs: Mapping[str, Any], applied: AppliedStack, planned: PlannedResource
    ) -> None:
        if inputs.get("cloudwatchRoleArn"):
            operation = {"op": "replace", "path": "/cloudwatchRoleArn", "value": inputs["cloudwatchRoleArn"]}
            self._apigateway.update_account(patchOperations=[operation])

    def _api_key(self, inputs: Mapping[str, Any], applied: AppliedStack, planned: PlannedResource) -> None:
        created = self._apigateway.create_api_key(
            name=inputs.get("name") or planned.id,
            description=inputs.get("description", ""),
            enabled=bool(inputs.get("enabled", True)),
        )
        applied.gateway_ids[("apiKey", planned.id)] = created["id"]

    def _usage_plan(self, inputs: Mapping[str, Any], applied: AppliedStack, planned: PlannedResource) -> None:
        settings: dict[str, Any] = {
            "name": inputs["name"],
            "description": inputs.get("description", ""),
            "apiStages": [
                {"apiId": self._gateway_id(applied, "restApi", stage["apiId"]), "stage": stage["stage"]}
                for stage in inputs.get("apiStages") or []
            ],
        }
        throttle = inputs.get("throttleSettings")
        if throttle:
            settings["throttle"] = {
                "burstLimit": int(throttle["burstLimit"]),
                "rateLimit": float(throttle["rateLimit"]),
            }
        quota = inputs.get("quotaSettings")
        if quota:
            settings["quota"] = {
                "limit": int(quota["limit"]),
                "period": quota["period"],
                **({"offset": int(quota["offset"])} if quota.get("offset") is not None else {}),
            }
        created = self._apigateway.create_usage_plan(**settings)
        applied.gateway_ids[("usagePlan", planned.id)] = created["id"]

    def _usage_plan_key(
        self, inputs: Mapping[str, Any], applied: AppliedStack, planned: PlannedResource
    ) -> None:
        self._apigateway.create_usage_plan_key(
            usagePlanId=self._gateway_id(applied, "usagePlan", inputs["usagePlanId"]),
            keyId=self._gateway_id(applied, "apiKey", inputs["keyId"]),
            keyType=inputs["keyType"],
        )


# A stage's method settings (Pulumi's names) as UpdateStage's patch paths take them.
METHOD_SETTING_PATHS = {
    "metricsEnabled": "metrics/enabled",
    "loggingLevel": "logging/loglevel",
    "dataTraceEnabled": "logging/dataTrace",
    "throttlingBurstLimit": "throttling/burstLimit",
    "throttlingRateLimit": "throttling/rateLimit",
    "cachingEnabled": "caching/enabled",
    "cacheTtlInSeconds": "caching/ttlInSeconds",
    "cacheDataEncrypted": "caching/dataEncrypted",
    "requireAuthorizationForCacheControl": "caching/requireAuthorizationForCacheControl",
    "unauthorizedCacheControlHeaderStrategy": "caching/unauthorizedCacheControlHeaderStrategy",
}


def _patch_value(value: Any) -> str:
    """A setting's value as a patch operation's text (``true``, ``40``, ``20.0``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _alarm_settings(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """A provider metric alarm (camelCase, floats from the mock runtime) as PutMetricAlarm takes it:
    one metric, or metric math over ``metricQueries``."""
    settings: dict[str, Any] = {
        "AlarmName": inputs["name"],
        "ComparisonOperator": inputs["comparisonOperator"],
        "EvaluationPeriods": int(inputs["evaluationPeriods"]),
        "ActionsEnabled": bool(inputs.get("actionsEnabled", True)),
    }
    for name, key in (
        ("alarmDescription", "AlarmDescription"),
        ("namespace", "Namespace"),
        ("metricName", "MetricName"),
        ("statistic", "Statistic"),
        ("extendedStatistic", "ExtendedStatistic"),
        ("unit", "Unit"),
        ("treatMissingData", "TreatMissingData"),
        ("evaluateLowSampleCountPercentiles", "EvaluateLowSampleCountPercentile"),
        ("thresholdMetricId", "ThresholdMetricId"),
    ):
        if inputs.get(name):
            settings[key] = inputs[name]
    for name, key in (("period", "Period"), ("datapointsToAlarm", "DatapointsToAlarm")):
        if inputs.get(name) is not None:
            settings[key] = int(inputs[name])
    if inputs.get("threshold") is not None:
        settings["Threshold"] = float(inputs["threshold"])
    for name, key in (
        ("alarmActions", "AlarmActions"),
        ("okActions", "OKActions"),
        ("insufficientDataActions", "InsufficientDataActions"),
    ):
        if inputs.get(name):
            settings[key] = list(inputs[name])
    if inputs.get("dimensions"):
        settings["Dimensions"] = _dimensions(inputs["dimensions"])
    if inputs.get("metricQueries"):
        settings["Metrics"] = [_metric_query(query) for query in inputs["metricQueries"]]
    return settings


def _metric_query(query: Mapping[str, Any]) -> dict[str, Any]:
    """One of an alarm's ``metricQueries`` as a MetricDataQuery."""
    translated: dict[str, Any] = {"Id": query["id"], "ReturnData": bool(query.get("returnData", False))}
    for name, key in (("expression", "Expression"), ("label", "Label"), ("accountId", "AccountId")):
        if query.get(name):
            translated[key] = query[name]
    if query.get("period") is not None:
        translated["Period"] = int(query["period"])
    metric = query.get("metric")
    if metric:
        stat: dict[str, Any] = {
            "Metric": {
                "Namespace": metric["namespace"],
                "MetricName": metric["metricName"],
                "Dimensions": _dimensions(metric.get("dimensions") or {}),
            },
            "Period": int(metric["period"]),
            "Stat": metric["stat"],
        }
        if metric.get("unit"):
            stat["Unit"] = metric["unit"]
        translated["MetricStat"] = stat
    return translated


def _dimensions(dimensions: Mapping[str, Any]) -> list[dict[str, str]]:
    return [{"Name": str(name), "Value": str(value)} for name, value in dimensions.items()]


def _placeholder_code() -> bytes:
    """A small zip standing in for the stack's code archive."""
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as out:
        out.writestr("LOCAL.txt", PLACEHOLDER_CODE_NOTE)
    return archive.getvalue()


def _event_target(inputs: Mapping[str, Any], default_id: str) -> dict[str, Any]:
    """A provider event target (camelCase) as PutTargets takes it."""
    target: dict[str, Any] = {"Id": inputs.get("targetId") or default_id, "Arn": inputs["arn"]}
    if inputs.get("roleArn"):
        target["RoleArn"] = inputs["roleArn"]
    retry = inputs.get("retryPolicy")
    if retry:
        target["RetryPolicy"] = {
            "MaximumRetryAttempts": int(retry["maximumRetryAttempts"]),
            "MaximumEventAgeInSeconds": int(retry["maximumEventAgeInSeconds"]),
        }
    for field_name, key in (("input", "Input"), ("inputPath", "InputPath")):
        if inputs.get(field_name):
            target[key] = inputs[field_name]
    pipeline = inputs.get("sagemakerPipelineTarget")
    if pipeline:
        parameters = pipeline.get("pipelineParameterLists") or []
        target["SageMakerPipelineParameters"] = {
            "PipelineParameterList": [{"Name": p["name"], "Value": p["value"]} for p in parameters]
        }
    return target


def _lifecycle_rule(rule: Mapping[str, Any]) -> dict[str, Any]:
    """A provider lifecycle rule (camelCase, floats from the mock runtime) as the S3 API takes it."""
    translated: dict[str, Any] = {
        "ID": rule["id"],
        "Status": rule["status"],
        "Filter": {"Prefix": rule["filter"]["prefix"]},
    }
    if "abortIncompleteMultipartUpload" in rule:
        days = int(rule["abortIncompleteMultipartUpload"]["daysAfterInitiation"])
        translated["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": days}
    if "expiration" in rule:
        translated["Expiration"] = {"Days": int(rule["expiration"]["days"])}
    if "noncurrentVersionExpiration" in rule:
        days = int(rule["noncurrentVersionExpiration"]["noncurrentDays"])
        translated["NoncurrentVersionExpiration"] = {"NoncurrentDays": days}
    return translated
