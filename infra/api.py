"""PredictionApi: the authenticated HTTPS prediction API.

- A regional REST API (the operations of ``handlers.api.openapi.OPERATIONS``: ``POST /v1/predict``,
  ``GET /v1/health``, ``GET /v1/openapi.json``, and catch-alls, so unknown routes and wrong methods
  reach the Lambda, which answers 404/405 in the documented error format), API key +
  usage plan or IAM authorization on every method, request validation, JSON gateway responses, JSON
  access logs, X-Ray, stage throttling and an optional WAF (:mod:`infra.waf`).
- The API Lambda (``handlers.api``), allowed to invoke only this stack's endpoint.

See docs/api.md for the error contract and the function's environment.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from handlers.api.endpoint_client import ENDPOINT_NAME_ENV, LAMBDA_TIMEOUT_ENV
from handlers.api.openapi import API_AUTH_ENV, OPERATIONS, PREDICT_PATH, resource_paths
from handlers.api.request import MAX_BODY_BYTES_ENV
from handlers.common.contracts import INPUT_SCHEMA_KEY, METRICS_NAMESPACE
from handlers.common.input_schema import SCHEMA_URI_ENV
from infra.context import StackIdentity
from infra.functions import FunctionBuilder, FunctionSettings
from infra.gateway_responses import (
    GATEWAY_RESPONSES,
    RETRY_AFTER_RESPONSES,
    RETRY_AFTER_SECONDS,
    gateway_response_template,
)
from infra.iam import policy_document, service_assume_role_policy
from infra.lambda_package import HANDLER_ENTRYPOINTS
from infra.stack_config import ApiAuth, ApiConfig
from infra.waf import web_acl

COMPONENT_TYPE = "mlplatform:index:PredictionApi"
STAGE_NAME = "live"
API_GATEWAY_TIMEOUT_SECONDS = 29  # REST API integrations give up after 29 s

# What a prediction request must look like before the Lambda sees it (JSON Schema draft 4): any
# JSON. The served model's input schema is not known when the stack is planned (the deployer
# publishes each approved version's own, and a model brought from elsewhere may have none, its
# requests passing through as sent), so a narrower model here would refuse requests the served
# model takes. The Lambda checks them against the schema in force (handlers/api/openapi.py
# describes that check).
PREDICT_REQUEST_SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-04/schema#",
    "title": "PredictRequest",
    "description": "A JSON body; the API checks it against the served model's input schema, if it has one",
}

# One JSON object per request. messageString is already a quoted JSON string; the rest are quoted here.
ACCESS_LOG_FIELDS = {
    "requestId": "$context.requestId",
    "extendedRequestId": "$context.extendedRequestId",
    "requestTime": "$context.requestTimeEpoch",
    "ip": "$context.identity.sourceIp",
    "userAgent": "$context.identity.userAgent",
    "caller": "$context.identity.caller",
    "apiKeyId": "$context.identity.apiKeyId",
    "httpMethod": "$context.httpMethod",
    "resourcePath": "$context.resourcePath",
    "path": "$context.path",
    "protocol": "$context.protocol",
    "status": "$context.status",
    "responseLength": "$context.responseLength",
    "responseLatency": "$context.responseLatency",
    "integrationStatus": "$context.integration.status",
    "integrationLatency": "$context.integration.latency",
    "errorType": "$context.error.responseType",
    "wafStatus": "$context.waf.status",
    "xrayTraceId": "$context.xrayTraceId",
}


def access_log_format() -> str:
    """The stage's access-log line: JSON, one object per request."""
    fields = [f'"{name}":"{value}"' for name, value in ACCESS_LOG_FIELDS.items()]
    fields.append('"errorMessage":$context.error.messageString')
    return "{" + ",".join(fields) + "}"


def deployment_spec(auth: ApiAuth) -> str:
    """Everything a deployment snapshot holds that is decided here: routes, auth, model, responses."""
    return json.dumps(
        {
            "routes": [[r.key, r.parent, r.path_part, list(r.methods)] for r in ROUTES],
            "auth": auth.value,
            "validated": list(VALIDATED_METHOD),
            "model": PREDICT_REQUEST_SCHEMA,
            "responses": GATEWAY_RESPONSES,
            "retry_after": list(RETRY_AFTER_RESPONSES),
            "timeout_ms": API_GATEWAY_TIMEOUT_SECONDS * 1000,
        },
        sort_keys=True,
    )


@dataclass
class PredictionApiArgs:
    """Inputs of a :class:`PredictionApi`.

    Parameters
    ----------
    stack: where the API lives (name prefix, region, account, partition).
    endpoint_name: the SageMaker endpoint the API invokes (created by the serving component); the
        API's role may invoke exactly this endpoint.
    kms_key_arn: the stack key: the function reads the input schema (SSE-KMS) with it.
    bucket_names, bucket_arns: the data lake's buckets, by purpose (raw, processed, artifacts...).
    api: the stack's API settings.
    functions: the stack's shared Lambda settings (code, layer, log retention and key).
    input_schema_key: where the model's input schema lives in the artifacts bucket.
    manage_account_logging_role: set API Gateway's account-wide CloudWatch role (one per account and
        region, needed for access logs); False where another stack in the same account and region
        already sets it.
    """

    stack: StackIdentity
    endpoint_name: str
    kms_key_arn: pulumi.Input[str]
    bucket_names: dict[str, pulumi.Output[str]]
    bucket_arns: dict[str, pulumi.Output[str]]
    api: ApiConfig
    functions: FunctionSettings
    input_schema_key: str = INPUT_SCHEMA_KEY
    manage_account_logging_role: bool = True


@dataclass(frozen=True)
class _Route:
    """One API Gateway resource: its path below the root and the methods it answers."""

    key: str  # used in resource names
    parent: str | None  # key of the parent route; None: the root resource
    path_part: str | None  # None: the root resource itself
    methods: tuple[str, ...]


def _routes() -> tuple[_Route, ...]:
    """The REST API's resources: one per path of the API's operations and each ancestor."""
    routes = [_Route("root", None, None, ("ANY",)), _Route("root-proxy", "root", "{proxy+}", ("ANY",))]
    keys = {"/": "root"}
    for path in resource_paths()[1:]:
        parent_path, _, part = path.rpartition("/")
        key = keys[path] = part.replace(".", "-")  # logical names: "predict", "openapi-json"
        methods = (*OPERATIONS.get(path, ()), "ANY")
        routes.append(_Route(key, keys[parent_path or "/"], part, methods))
        routes.append(_Route(f"{key}-proxy", key, "{proxy+}", ("ANY",)))
    return tuple(routes)


# Every level gets an ANY method and a greedy child: without them API Gateway itself answers an
# unknown path or a wrong method with 403 "Missing Authentication Token"; with them the Lambda answers
# 404/405 in the documented format. The specific method (POST predict, GET health) wins over ANY.
ROUTES = _routes()
VALIDATED_METHOD = (PREDICT_PATH.rsplit("/", 1)[-1], "POST")


class PredictionApi(pulumi.ComponentResource):
    """The REST API, its Lambda, their roles and logs, the usage plan and the optional WAF."""

    rest_api: aws.apigateway.RestApi
    stage: aws.apigateway.Stage
    api_function: aws.lambda_.Function
    api_key: aws.apigateway.ApiKey | None
    usage_plan: aws.apigateway.UsagePlan | None
    web_acl: aws.wafv2.WebAcl | None

    def __init__(
        self, name: str, args: PredictionApiArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(COMPONENT_TYPE, name, None, opts)
        if args.api.lambda_timeout_seconds >= API_GATEWAY_TIMEOUT_SECONDS:
            raise ValueError(f"the API Lambda's timeout must be below {API_GATEWAY_TIMEOUT_SECONDS} s")
        self._name = name
        self._args = args
        self.endpoint_arn = self._args.stack.arn("sagemaker", f"endpoint/{args.endpoint_name.lower()}")
        self.input_schema_uri = pulumi.Output.concat(
            "s3://", args.bucket_names["artifacts"], "/", args.input_schema_key
        )
        self.input_schema_arn = pulumi.Output.concat(
            args.bucket_arns["artifacts"], "/", args.input_schema_key
        )

        self._functions = FunctionBuilder(self, name, args.functions)

        self.api_function = self._api_function()
        self.rest_api = aws.apigateway.RestApi(
            f"{name}-rest-api",
            name=f"{args.stack.name_prefix}-prediction-api",
            description=(
                f"{args.stack.name_prefix}: predictions from the SageMaker endpoint {args.endpoint_name}"
            ),
            endpoint_configuration={"types": "REGIONAL"},
            api_key_source="HEADER",
            opts=self._child(),
        )
        self.execution_arn = self._args.stack.arn("execute-api", self.rest_api.id)
        self.stage_name = STAGE_NAME
        deployment = self._routes_and_deployment()
        self.stage = self._stage(deployment)
        aws.lambda_.Permission(
            f"{name}-api-invoke-permission",
            function=self.api_function.name,
            action="lambda:InvokeFunction",
            principal="apigateway.amazonaws.com",
            # This API's stage only; every method and path, as the catch-all routes reach the function.
            source_arn=pulumi.Output.concat(self.execution_arn, "/", STAGE_NAME, "/*/*"),
            opts=self._child(),
        )
        self.api_key, self.usage_plan = self._usage_plan()
        self.web_acl = (
            web_acl(
                name,
                args.stack,
                throttle_rate_per_second=args.api.throttle_rate_per_second,
                rest_api=self.rest_api,
                stage=self.stage,
                parent=self,
            )
            if args.api.waf
            else None
        )
        self.api_url = pulumi.Output.concat(
            "https://", self.rest_api.id, ".execute-api.", args.stack.region, ".amazonaws.com/", STAGE_NAME
        )

        self.register_outputs(
            {
                "apiUrl": self.api_url,
                "restApiId": self.rest_api.id,
                "stageName": STAGE_NAME,
                "apiKeyId": self.api_key.id if self.api_key else None,
                "apiFunctionName": self.api_function.name,
                "apiFunctionArn": self.api_function.arn,
                "webAclArn": self.web_acl.arn if self.web_acl else None,
            }
        )

    # --- helpers ---------------------------------------------------------------------------------------

    def _child(self, **kwargs: Any) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, **kwargs)

    # --- the API function ------------------------------------------------------------------------------

    def _api_function(self) -> aws.lambda_.Function:
        args = self._args
        api = args.api
        return self._functions.function(
            "predict-api",
            handler=HANDLER_ENTRYPOINTS["api"],
            description="Prediction API: validates requests and invokes the SageMaker endpoint",
            memory_mb=api.lambda_memory_mb,
            timeout_seconds=api.lambda_timeout_seconds,
            reserved_concurrency=api.reserved_concurrency,
            environment={
                ENDPOINT_NAME_ENV: args.endpoint_name,
                SCHEMA_URI_ENV: self.input_schema_uri,
                # The botocore timeouts derive from it: it must equal the function's timeout.
                LAMBDA_TIMEOUT_ENV: str(api.lambda_timeout_seconds),
                MAX_BODY_BYTES_ENV: str(api.max_body_bytes),
                # The served OpenAPI document names the same authorization as the methods.
                API_AUTH_ENV: api.auth.value,
                "POWERTOOLS_SERVICE_NAME": "prediction-api",
                "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
            },
            statements=[
                {
                    "Sid": "InvokeThisStacksEndpoint",
                    "Effect": "Allow",
                    "Action": "sagemaker:InvokeEndpoint",
                    "Resource": self.endpoint_arn,
                },
                {
                    "Sid": "ReadInputSchema",
                    "Effect": "Allow",
                    "Action": "s3:GetObject",
                    "Resource": self.input_schema_arn,
                },
                {
                    # The schema object is SSE-KMS and the environment is encrypted with the stack key.
                    "Sid": "DecryptWithStackKey",
                    "Effect": "Allow",
                    "Action": "kms:Decrypt",
                    "Resource": args.kms_key_arn,
                },
            ],
        )

    # --- the REST API ----------------------------------------------------------------------------------

    def _routes_and_deployment(self) -> aws.apigateway.Deployment:
        args = self._args
        name = self._name
        rest_api = self.rest_api
        invoke_uri = pulumi.Output.concat(
            "arn:",
            args.stack.partition,
            ":apigateway:",
            args.stack.region,
            ":lambda:path/2015-03-31/functions/",
            self.api_function.arn,
            "/invocations",
        )
        validator = aws.apigateway.RequestValidator(
            f"{name}-request-validator",
            rest_api=rest_api.id,
            name="body-and-parameters",
            validate_request_body=True,
            validate_request_parameters=True,
            opts=self._child(),
        )
        model = aws.apigateway.Model(
            f"{name}-predict-request-model",
            rest_api=rest_api.id,
            name="PredictRequest",
            description="A prediction request: JSON (checked by the API against the served model)",
            content_type="application/json",
            schema=json.dumps(PREDICT_REQUEST_SCHEMA),
            opts=self._child(),
        )
        resource_ids: dict[str, pulumi.Output[str]] = {}
        deployed: list[pulumi.Resource] = [validator, model]
        for route in ROUTES:
            if route.parent is None:
                resource_ids[route.key] = rest_api.root_resource_id
            else:
                resource = aws.apigateway.Resource(
                    f"{name}-{route.key}-resource",
                    rest_api=rest_api.id,
                    parent_id=resource_ids[route.parent],
                    path_part=str(route.path_part),
                    opts=self._child(),
                )
                resource_ids[route.key] = resource.id
                deployed.append(resource)
            for http_method in route.methods:
                deployed.extend(
                    self._method(
                        route,
                        http_method,
                        resource_id=resource_ids[route.key],
                        invoke_uri=invoke_uri,
                        validator=validator,
                        model=model,
                    )
                )
        deployed.extend(self._gateway_responses())
        return aws.apigateway.Deployment(
            f"{name}-deployment",
            rest_api=rest_api.id,
            description="Routes, methods, integrations, models and gateway responses of the prediction API",
            # A deployment is a snapshot: any change to what it holds must create a new one.
            triggers={"redeployment": self._deployment_fingerprint(deployed)},
            opts=self._child(depends_on=deployed),
        )

    def _method(
        self,
        route: _Route,
        http_method: str,
        *,
        resource_id: pulumi.Input[str],
        invoke_uri: pulumi.Input[str],
        validator: aws.apigateway.RequestValidator,
        model: aws.apigateway.Model,
    ) -> list[pulumi.Resource]:
        iam = self._args.api.auth is ApiAuth.IAM
        validated = (route.key, http_method) == VALIDATED_METHOD
        key = f"{self._name}-{route.key}-{http_method.lower()}"
        method = aws.apigateway.Method(
            key,
            rest_api=self.rest_api.id,
            resource_id=resource_id,
            http_method=http_method,
            # Every method is authenticated: signed IAM requests, or an API key in a usage plan.
            authorization="AWS_IAM" if iam else "NONE",
            api_key_required=not iam,
            request_validator_id=validator.id if validated else None,
            request_models={"application/json": model.name} if validated else None,
            opts=self._child(),
        )
        integration = aws.apigateway.Integration(
            f"{key}-integration",
            rest_api=self.rest_api.id,
            resource_id=resource_id,
            http_method=method.http_method,
            type="AWS_PROXY",
            integration_http_method="POST",
            uri=invoke_uri,
            timeout_milliseconds=API_GATEWAY_TIMEOUT_SECONDS * 1000,
            opts=self._child(),
        )
        return [method, integration]

    def _gateway_responses(self) -> list[pulumi.Resource]:
        responses: list[pulumi.Resource] = []
        for response_type, (status, code, message) in GATEWAY_RESPONSES.items():
            headers = (
                {"gatewayresponse.header.Retry-After": f"'{RETRY_AFTER_SECONDS}'"}
                if response_type in RETRY_AFTER_RESPONSES
                else None
            )
            responses.append(
                aws.apigateway.Response(
                    f"{self._name}-{response_type.lower().replace('_', '-')}-response",
                    rest_api_id=self.rest_api.id,
                    response_type=response_type,
                    status_code=status,
                    response_templates={"application/json": gateway_response_template(code, message)},
                    response_parameters=headers,
                    opts=self._child(),
                )
            )
        return responses

    def _deployment_fingerprint(self, deployed: list[pulumi.Resource]) -> pulumi.Output[str]:
        """Changes with the API's definition and with the ids of everything deployed (replacements)."""
        spec = deployment_spec(self._args.api.auth)
        ids = [resource.id for resource in deployed if isinstance(resource, pulumi.CustomResource)]
        return pulumi.Output.all(self.api_function.arn, *ids).apply(
            lambda known: hashlib.sha256(json.dumps([spec, *known]).encode()).hexdigest()
        )

    def _stage(self, deployment: aws.apigateway.Deployment) -> aws.apigateway.Stage:
        args = self._args
        api = args.api
        access_logs = self._functions.log_group(
            "api-access", f"/aws/apigateway/{args.stack.name_prefix}-prediction-api/access"
        )
        # Execution logs (errors only) go to the group API Gateway names itself; creating it first
        # gives it retention and the stack key.
        execution_logs = self._functions.log_group(
            "api-execution",
            pulumi.Output.concat("API-Gateway-Execution-Logs_", self.rest_api.id, "/", STAGE_NAME),
        )
        depends_on: list[pulumi.Resource] = [access_logs, execution_logs]
        if args.manage_account_logging_role:
            depends_on.append(self._account_logging_role())
        stage = aws.apigateway.Stage(
            f"{self._name}-stage",
            rest_api=self.rest_api.id,
            deployment=deployment.id,
            stage_name=STAGE_NAME,
            description="The prediction API's only stage",
            xray_tracing_enabled=True,
            access_log_settings={"destination_arn": access_logs.arn, "format": access_log_format()},
            opts=self._child(depends_on=depends_on),
        )
        aws.apigateway.MethodSettings(
            f"{self._name}-method-settings",
            rest_api=self.rest_api.id,
            stage_name=stage.stage_name,
            method_path="*/*",
            settings={
                "metrics_enabled": True,
                "logging_level": "ERROR",
                # Full request/response logging would put prediction inputs in the logs.
                "data_trace_enabled": False,
                "throttling_rate_limit": api.throttle_rate_per_second,
                "throttling_burst_limit": api.throttle_burst,
            },
            opts=self._child(),
        )
        return stage

    def _account_logging_role(self) -> aws.apigateway.Account:
        """API Gateway's CloudWatch role: account-wide per region, needed for access and execution logs."""
        args = self._args
        role = aws.iam.Role(
            f"{self._name}-apigateway-logs-role",
            name=f"{args.stack.name_prefix}-apigateway-logs",
            description="Lets API Gateway write REST API access and execution logs",
            assume_role_policy=service_assume_role_policy("apigateway.amazonaws.com", args.stack.account_id),
            opts=self._child(),
        )
        # Account-wide setting: scoped to API Gateway's log groups of this account and region (not
        # only this stack's), so another stack's API keeps logging when this role is the one set.
        groups = [
            self._args.stack.arn("logs", "log-group:/aws/apigateway/*"),
            self._args.stack.arn("logs", "log-group:API-Gateway-Execution-Logs_*"),
        ]
        policy = aws.iam.RolePolicy(
            f"{self._name}-apigateway-logs-policy",
            role=role.id,
            policy=policy_document(
                {
                    "Sid": "WriteApiGatewayLogs",
                    "Effect": "Allow",
                    "Action": [
                        "logs:CreateLogGroup",
                        "logs:CreateLogStream",
                        "logs:DescribeLogStreams",
                        "logs:PutLogEvents",
                    ],
                    "Resource": [*groups, *(pulumi.Output.concat(group, ":*") for group in groups)],
                },
                {
                    # DescribeLogGroups is authorized on the account's log-group space, not on a group.
                    "Sid": "FindLogGroups",
                    "Effect": "Allow",
                    "Action": "logs:DescribeLogGroups",
                    "Resource": self._args.stack.arn("logs", "log-group:*"),
                },
            ),
            opts=self._child(),
        )
        return aws.apigateway.Account(
            f"{self._name}-account",
            cloudwatch_role_arn=role.arn,
            opts=self._child(depends_on=[policy]),
        )

    def _usage_plan(self) -> tuple[aws.apigateway.ApiKey | None, aws.apigateway.UsagePlan | None]:
        args = self._args
        api = args.api
        if api.auth is not ApiAuth.API_KEY:
            return None, None
        plan = aws.apigateway.UsagePlan(
            f"{self._name}-usage-plan",
            name=f"{args.stack.name_prefix}-prediction-api",
            description="Callers of the prediction API; each key is throttled like the stage",
            api_stages=[{"api_id": self.rest_api.id, "stage": self.stage.stage_name}],
            throttle_settings={"rate_limit": api.throttle_rate_per_second, "burst_limit": api.throttle_burst},
            opts=self._child(),
        )
        # The key's value is generated by API Gateway and never appears in code, config or outputs.
        key = aws.apigateway.ApiKey(
            f"{self._name}-api-key",
            name=f"{args.stack.name_prefix}-prediction-api-default",
            description="Default caller of the prediction API",
            enabled=True,
            opts=self._child(),
        )
        aws.apigateway.UsagePlanKey(
            f"{self._name}-usage-plan-key",
            key_id=key.id,
            key_type="API_KEY",
            usage_plan_id=plan.id,
            opts=self._child(),
        )
        return key, plan
