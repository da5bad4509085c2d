"""The PredictionApi component: REST API, its Lambda, roles and logs.

The real program runs under the mock runtime; the powertools layer comes from the fake zip the infra
conftest puts in a temporary layer cache, so no plan touches the package index.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

import infra.api
import infra.functions
import infra.offline
from infra.api import deployment_spec
from infra.gateway_responses import gateway_answer
from infra.offline import Plan, PlannedResource
from infra.stack_config import ApiAuth, load_stack_config
from tests.infra.conftest import as_list, cached_plan, function_statements, policy_document

ACCOUNT = "123456789012"
# Actions AWS cannot scope to a resource; the only ones allowed on "*", each with a reason in the code.
UNSCOPABLE_ACTIONS = {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}
SECRET_LIKE = re.compile(r"SECRET|PASSWORD|TOKEN|KEY|CREDENTIAL", re.IGNORECASE)


@pytest.fixture(params=["dev", "prod"], scope="module")
def plan(request: pytest.FixtureRequest) -> Plan:
    """dev: API key + usage plan, built layer; prod: IAM auth, WAF."""
    return cached_plan(request.param)


# --- helpers -----------------------------------------------------------------------------------------


def component(plan: Plan) -> PlannedResource:
    (resource,) = plan.of_type("mlplatform:index:PredictionApi")
    return resource


def function(plan: Plan, key: str) -> PlannedResource:
    return plan.named(f"api-{key}")


def config_of(plan: Plan):
    return load_stack_config(plan.stack)


def endpoint_arn(plan: Plan) -> str:
    return f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:endpoint/mlp-{plan.stack}-endpoint"


def rest_api_id(plan: Plan) -> str:
    return plan.named("api-rest-api").id


def render(template: str) -> dict[str, Any]:
    """A VTL template with API Gateway's $context values filled in, parsed as JSON."""
    text = template.replace("$context.error.messageString", '"Invalid request body"')
    return json.loads(re.sub(r"\$context\.[\w.]+", "x", text))


FUNCTIONS = ("predict-api",)


# --- the component -----------------------------------------------------------------------------------


def test_every_resource_is_a_child_of_the_component_named_after_it(plan: Plan) -> None:
    children = plan.children_of(component(plan))
    assert len(children) > 40
    assert all(child.name.startswith("api-") for child in children)
    for name in ("api-rest-api", "api-predict-api", "api-stage"):
        assert plan.named(name).parent_urn == component(plan).urn, name


def test_outputs_name_the_api_and_its_parts(plan: Plan) -> None:
    outputs = plan.outputs
    api_id = rest_api_id(plan)
    assert outputs["apiUrl"] == f"https://{api_id}.execute-api.us-east-1.amazonaws.com/live"
    assert outputs["apiId"] == api_id
    assert outputs["apiStageName"] == plan.named("api-stage").inputs["stageName"] == "live"
    assert outputs["predictApiFunctionName"] == f"mlp-{plan.stack}-predict-api"
    assert outputs["predictApiFunctionArn"] == function(plan, "predict-api").outputs["arn"]


# --- the Lambda functions ----------------------------------------------------------------------------


@pytest.mark.parametrize("key", FUNCTIONS)
def test_functions_are_traced_bounded_and_sized_explicitly(plan: Plan, key: str) -> None:
    inputs = function(plan, key).inputs
    assert inputs["tracingConfig"] == {"mode": "Active"}
    assert inputs["reservedConcurrentExecutions"] > 0
    assert inputs["memorySize"] >= 128
    assert 0 < inputs["timeout"] <= 900
    assert inputs["runtime"] == "python3.11"
    assert inputs["architectures"] == ["x86_64"]  # the layer is built for manylinux2014_x86_64


def test_the_api_function_follows_the_api_config_and_stays_below_api_gateways_timeout(plan: Plan) -> None:
    api = config_of(plan).api
    inputs = function(plan, "predict-api").inputs
    assert inputs["timeout"] == api.lambda_timeout_seconds < 29
    assert inputs["memorySize"] == api.lambda_memory_mb
    assert inputs["reservedConcurrentExecutions"] == api.reserved_concurrency
    assert inputs["handler"] == "handlers.api.handler.lambda_handler"
    for route in plan.of_type("aws:apigateway/integration:Integration"):
        assert route.inputs["timeoutMilliseconds"] == 29_000


def test_the_api_environment_names_the_endpoint_schema_and_limits(plan: Plan) -> None:
    api = config_of(plan).api
    artifacts = plan.outputs["bucketNames"]["artifacts"]
    variables = function(plan, "predict-api").inputs["environment"]["variables"]
    assert variables == {
        "ENDPOINT_NAME": f"mlp-{plan.stack}-endpoint",
        "MODEL_INPUT_SCHEMA_URI": f"s3://{artifacts}/serving/input-schema.json",
        "LAMBDA_TIMEOUT_SECONDS": str(api.lambda_timeout_seconds),
        "MAX_BODY_BYTES": str(api.max_body_bytes),
        "API_AUTH": api.auth.value,
        "POWERTOOLS_SERVICE_NAME": "prediction-api",
        "POWERTOOLS_METRICS_NAMESPACE": "ml-platform",
        "LOG_LEVEL": "INFO",
    }


def test_no_environment_variable_of_any_function_holds_a_secret(plan: Plan) -> None:
    for resource in plan.of_type("aws:lambda/function:Function"):
        variables = resource.inputs["environment"]["variables"]
        assert variables
        # A variable named like a secret may only hold a reference to one (an ARN), never a value.
        named_like_secrets = [
            name
            for name, value in variables.items()
            if SECRET_LIKE.search(name) and not value.startswith("arn:")
        ]
        assert named_like_secrets == [], resource.name
        assert resource.inputs["kmsKeyArn"] == plan.outputs["kmsKeyArn"]


@pytest.mark.parametrize("key", FUNCTIONS)
def test_each_function_logs_json_to_its_own_encrypted_retained_group(plan: Plan, key: str) -> None:
    inputs = function(plan, key).inputs
    group = plan.named(f"api-{key}-logs")
    assert group.inputs["name"] == f"/aws/lambda/{inputs['name']}"
    assert inputs["loggingConfig"]["logFormat"] == "JSON"
    assert inputs["loggingConfig"]["logGroup"] == group.inputs["name"]
    # Created first, so Lambda never auto-creates the group without retention or KMS.
    assert group.urn in function(plan, key).dependencies


def test_every_log_group_has_the_configured_retention_and_the_stack_key(plan: Plan) -> None:
    config = config_of(plan)
    groups = plan.of_type("aws:cloudwatch/logGroup:LogGroup")
    assert len([g for g in groups if g.name.startswith("api-")]) == 3
    for group in groups:
        assert group.inputs["retentionInDays"] == config.log_retention_days, group.name
        assert group.inputs["kmsKeyId"] == plan.outputs["kmsKeyArn"], group.name
    if plan.stack == "prod":
        assert all(group.inputs["retentionInDays"] >= 365 for group in groups)


# --- IAM ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", FUNCTIONS)
def test_functions_are_assumed_only_by_lambda_for_this_account(plan: Plan, key: str) -> None:
    role = plan.named(f"api-{key}-role")
    assert function(plan, key).inputs["role"] == role.outputs["arn"]
    (statement,) = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
    assert statement["Principal"] == {"Service": "lambda.amazonaws.com"}
    assert statement["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}
    assert not role.inputs.get("managedPolicyArns")


def test_the_api_may_invoke_only_this_stacks_endpoint(plan: Plan) -> None:
    sagemaker = [
        (action, statement["Resource"])
        for statement in function_statements(plan, "api-predict-api")
        for action in as_list(statement["Action"])
        if action.startswith("sagemaker:")
    ]
    assert sagemaker == [("sagemaker:InvokeEndpoint", endpoint_arn(plan))]


def test_the_api_reads_only_the_schema_object_and_decrypts_with_the_stack_key(plan: Plan) -> None:
    by_sid = {s["Sid"]: s for s in function_statements(plan, "api-predict-api")}
    artifacts = plan.outputs["bucketArns"]["artifacts"]
    assert by_sid["ReadInputSchema"]["Action"] == "s3:GetObject"
    assert by_sid["ReadInputSchema"]["Resource"] == f"{artifacts}/serving/input-schema.json"
    assert by_sid["DecryptWithStackKey"]["Resource"] == plan.outputs["kmsKeyArn"]
    s3_actions = {a for s in by_sid.values() for a in as_list(s["Action"]) if a.startswith("s3:")}
    assert s3_actions == {"s3:GetObject"}


def all_component_statements(plan: Plan) -> list[dict[str, Any]]:
    policies = [p for p in plan.of_type("aws:iam/rolePolicy:RolePolicy") if p.name.startswith("api-")]
    assert len(policies) == 2  # the function and API Gateway's logging role
    return [s for policy in policies for s in policy_document(policy)["Statement"]]


def test_no_statement_allows_every_action(plan: Plan) -> None:
    for statement in all_component_statements(plan):
        actions = as_list(statement["Action"])
        assert "*" not in actions and not any(action.endswith(":*") for action in actions), statement


def test_only_the_xray_actions_use_a_wildcard_resource(plan: Plan) -> None:
    wildcard = [s for s in all_component_statements(plan) if "*" in as_list(s["Resource"])]
    assert wildcard
    for statement in wildcard:
        assert set(as_list(statement["Action"])) <= UNSCOPABLE_ACTIONS, statement["Sid"]


@pytest.mark.parametrize("key", FUNCTIONS)
def test_functions_write_only_their_own_log_group(plan: Plan, key: str) -> None:
    group_arn = plan.named(f"api-{key}-logs").outputs["arn"]
    by_sid = {s["Sid"]: s for s in function_statements(plan, f"api-{key}")}
    assert by_sid["WriteOwnLogs"]["Resource"] == [group_arn, f"{group_arn}:*"]


def test_invoke_permissions_carry_a_source_arn(plan: Plan) -> None:
    every_permission = plan.of_type("aws:lambda/permission:Permission")
    assert all(p.inputs.get("sourceArn") for p in every_permission)
    permissions = {p.name: p.inputs for p in every_permission if p.name.startswith("api-")}
    assert set(permissions) == {"api-api-invoke-permission"}
    api = permissions["api-api-invoke-permission"]
    assert api["principal"] == "apigateway.amazonaws.com"
    assert api["function"] == function(plan, "predict-api").inputs["name"]
    assert api["sourceArn"] == f"arn:aws:execute-api:us-east-1:{ACCOUNT}:{rest_api_id(plan)}/live/*/*"


# --- the REST API ------------------------------------------------------------------------------------


def methods(plan: Plan) -> list[PlannedResource]:
    return plan.of_type("aws:apigateway/method:Method")


def test_the_api_is_regional(plan: Plan) -> None:
    assert plan.named("api-rest-api").inputs["endpointConfiguration"]["types"] == "REGIONAL"


def test_the_routes_and_catch_alls_reach_the_function_through_proxy_integrations(plan: Plan) -> None:
    paths = {r.name: r.inputs["pathPart"] for r in plan.of_type("aws:apigateway/resource:Resource")}
    assert {
        paths["api-v1-resource"],
        paths["api-predict-resource"],
        paths["api-health-resource"],
        paths["api-openapi-json-resource"],
    } == {"v1", "predict", "health", "openapi.json"}
    assert paths["api-root-proxy-resource"] == "{proxy+}"
    declared = {m.name: m.inputs["httpMethod"] for m in methods(plan)}
    assert declared["api-predict-post"] == "POST"
    assert declared["api-health-get"] == declared["api-openapi-json-get"] == "GET"
    assert declared["api-root-proxy-any"] == declared["api-predict-any"] == "ANY"
    integrations = plan.of_type("aws:apigateway/integration:Integration")
    assert len(integrations) == len(methods(plan)) == 13
    function_arn = function(plan, "predict-api").outputs["arn"]
    for integration in integrations:
        assert integration.inputs["type"] == "AWS_PROXY"
        assert integration.inputs["integrationHttpMethod"] == "POST"
        assert integration.inputs["uri"] == (
            f"arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/{function_arn}/invocations"
        )


def test_every_method_requires_authentication(plan: Plan) -> None:
    iam = config_of(plan).api.auth is ApiAuth.IAM
    for method in methods(plan):
        inputs = method.inputs
        assert not (inputs["authorization"] == "NONE" and not inputs.get("apiKeyRequired")), method.name
        if iam:
            assert inputs["authorization"] == "AWS_IAM", method.name
        else:
            assert inputs["apiKeyRequired"] is True, method.name


def test_post_predict_is_validated_against_the_request_model(plan: Plan) -> None:
    validator = plan.named("api-request-validator")
    assert validator.inputs["validateRequestBody"] is True
    assert validator.inputs["validateRequestParameters"] is True
    predict = plan.named("api-predict-post").inputs
    assert predict["requestValidatorId"] == validator.id
    model = plan.named("api-predict-request-model").inputs
    assert predict["requestModels"] == {"application/json": model["name"]}
    schema = json.loads(model["schema"])
    # The served model's input schema is published at run time (or absent, for a model whose
    # requests pass through): the gateway's model takes any JSON, the Lambda checks the rest.
    assert schema["$schema"] == "http://json-schema.org/draft-04/schema#"
    assert not {"type", "oneOf", "required", "properties"} & set(schema)
    others = [m for m in methods(plan) if m.name != "api-predict-post"]
    assert all(not m.inputs.get("requestValidatorId") for m in others)


EXPECTED_RESPONSES = {
    "DEFAULT_4XX": None,
    "DEFAULT_5XX": None,
    "BAD_REQUEST_BODY": "400",
    "INVALID_API_KEY": "403",
    "MISSING_AUTHENTICATION_TOKEN": "403",
    "ACCESS_DENIED": "403",
    "REQUEST_TOO_LARGE": "413",
    "UNSUPPORTED_MEDIA_TYPE": "415",
    "THROTTLED": "429",
}


def test_gateway_errors_answer_in_the_documented_json_shape(plan: Plan) -> None:
    responses = {r.inputs["responseType"]: r.inputs for r in plan.of_type("aws:apigateway/response:Response")}
    for response_type, status in EXPECTED_RESPONSES.items():
        response = responses[response_type]
        assert response.get("statusCode") == status, response_type
        body = render(response["responseTemplates"]["application/json"])
        assert set(body) == {"error"}
        assert set(body["error"]) == {"code", "message", "request_id", "details"}
        assert body["error"]["request_id"] == "x"
    for inputs in responses.values():
        render(inputs["responseTemplates"]["application/json"])  # every template is JSON
    assert responses["THROTTLED"]["responseParameters"] == {"gatewayresponse.header.Retry-After": "'1'"}
    assert render(responses["REQUEST_TOO_LARGE"]["responseTemplates"]["application/json"])["error"][
        "code"
    ] == ("payload_too_large")


# The errors the local emulator answers itself, each with API Gateway's own status, plus two more.
LOCAL_GATEWAY_ERRORS = [
    ("MISSING_AUTHENTICATION_TOKEN", "403"),
    ("INVALID_API_KEY", "403"),
    ("REQUEST_TOO_LARGE", "413"),
    ("INTEGRATION_FAILURE", "502"),  # not customised: falls back to DEFAULT_5XX
    ("INTEGRATION_TIMEOUT", "504"),
    ("THROTTLED", "429"),
    ("RESOURCE_NOT_FOUND", "404"),  # not customised: falls back to DEFAULT_4XX
]


@pytest.mark.parametrize(("response_type", "status"), LOCAL_GATEWAY_ERRORS)
def test_the_local_gateway_renders_each_error_as_the_deployed_template_does(
    plan: Plan, response_type: str, status: str
) -> None:
    # GIVEN the deployed gateway responses (a type without its own falls back to DEFAULT_4XX/5XX)
    responses = {r.inputs["responseType"]: r.inputs for r in plan.of_type("aws:apigateway/response:Response")}
    deployed = responses.get(response_type) or responses[f"DEFAULT_{status[0]}XX"]
    template = deployed["responseTemplates"]["application/json"]
    aws_message, request_id = "Invalid request body", "req-1"
    rendered = json.loads(
        template.replace("$context.error.messageString", json.dumps(aws_message)).replace(
            "$context.requestId", request_id
        )
    )
    # WHEN the local emulator answers the same error
    answer = gateway_answer(response_type, int(status), aws_message, request_id)
    # THEN the caller gets the same status, body and headers as from the deployed API
    assert answer.body == rendered
    assert str(answer.status) == (deployed.get("statusCode") or status)
    retry_after = (deployed.get("responseParameters") or {}).get("gatewayresponse.header.Retry-After")
    assert answer.headers.get("Retry-After") == (retry_after.strip("'") if retry_after else None)


def test_the_deployment_waits_for_and_fingerprints_everything_it_snapshots(plan: Plan) -> None:
    deployment = plan.named("api-deployment")
    snapshot_types = {
        "aws:apigateway/method:Method",
        "aws:apigateway/integration:Integration",
        "aws:apigateway/resource:Resource",
        "aws:apigateway/model:Model",
        "aws:apigateway/response:Response",
    }
    for resource in plan.resources:
        if resource.type in snapshot_types:
            assert resource.urn in deployment.dependencies, resource.name
    assert re.fullmatch(r"[0-9a-f]{64}", deployment.inputs["triggers"]["redeployment"])
    assert plan.named("api-stage").inputs["deployment"] == deployment.id


def test_the_fingerprint_changes_with_the_api_definition_only(public_layer_plan: Plan, monkeypatch) -> None:
    plans = {"dev": cached_plan("dev"), "prod": cached_plan("prod"), "public": public_layer_plan}
    trigger = {
        name: plan.named("api-deployment").inputs["triggers"]["redeployment"] for name, plan in plans.items()
    }
    assert trigger["dev"] == trigger["public"]  # the layer is not part of the API
    assert trigger["dev"] != trigger["prod"]
    spec = deployment_spec(ApiAuth.API_KEY)
    assert deployment_spec(ApiAuth.IAM) != spec
    monkeypatch.setattr(infra.api, "PREDICT_REQUEST_SCHEMA", {"type": "object"})
    assert deployment_spec(ApiAuth.API_KEY) != spec
    monkeypatch.undo()
    monkeypatch.setattr(infra.api, "ROUTES", infra.api.ROUTES[:-1])
    assert deployment_spec(ApiAuth.API_KEY) != spec


def test_the_stage_logs_json_access_logs_and_traces(plan: Plan) -> None:
    stage = plan.named("api-stage").inputs
    assert stage["xrayTracingEnabled"] is True
    settings = stage["accessLogSettings"]
    assert settings["destinationArn"] == plan.named("api-api-access-logs").outputs["arn"]
    line = render(settings["format"])
    assert {"requestId", "ip", "status", "responseLatency", "integrationLatency", "errorMessage"} <= set(line)
    assert "$context.identity.sourceIp" in settings["format"]


def test_stage_throttling_comes_from_config_and_data_trace_is_off(plan: Plan) -> None:
    api = config_of(plan).api
    method_settings = plan.named("api-method-settings").inputs
    assert method_settings["methodPath"] == "*/*"
    assert method_settings["stageName"] == "live"
    assert method_settings["settings"] == {
        "metricsEnabled": True,
        "loggingLevel": "ERROR",
        "dataTraceEnabled": False,
        "throttlingRateLimit": api.throttle_rate_per_second,
        "throttlingBurstLimit": api.throttle_burst,
    }


def test_execution_logs_go_to_a_precreated_group(plan: Plan) -> None:
    group = plan.named("api-api-execution-logs")
    assert group.inputs["name"] == f"API-Gateway-Execution-Logs_{rest_api_id(plan)}/live"
    assert group.urn in plan.named("api-stage").dependencies


def test_api_gateway_may_log_only_to_api_gateway_log_groups(plan: Plan) -> None:
    account = plan.named("api-account")
    role = plan.named("api-apigateway-logs-role")
    assert account.inputs["cloudwatchRoleArn"] == role.outputs["arn"]
    assert account.urn in plan.named("api-stage").dependencies
    (statement, describe) = policy_document(plan.named("api-apigateway-logs-policy"))["Statement"]
    prefix = f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:"
    for resource in statement["Resource"]:
        assert resource.startswith((f"{prefix}/aws/apigateway/", f"{prefix}API-Gateway-Execution-Logs_"))
    assert describe["Resource"] == f"{prefix}*"
    assert plan.named("api-api-access-logs").inputs["name"].startswith("/aws/apigateway/")


def test_api_keys_and_a_usage_plan_exist_only_in_api_key_mode(plan: Plan) -> None:
    api = config_of(plan).api
    usage_plans = plan.of_type("aws:apigateway/usagePlan:UsagePlan")
    keys = plan.of_type("aws:apigateway/apiKey:ApiKey")
    plan_keys = plan.of_type("aws:apigateway/usagePlanKey:UsagePlanKey")
    if api.auth is ApiAuth.IAM:
        assert usage_plans == keys == plan_keys == []
        assert plan.outputs.get("apiKeyId") is None
        return
    (usage_plan,), (key,), (plan_key,) = usage_plans, keys, plan_keys
    assert usage_plan.inputs["apiStages"] == [{"apiId": rest_api_id(plan), "stage": "live"}]
    assert usage_plan.inputs["throttleSettings"] == {
        "rateLimit": api.throttle_rate_per_second,
        "burstLimit": api.throttle_burst,
    }
    assert plan_key.inputs == {"keyId": key.id, "keyType": "API_KEY", "usagePlanId": usage_plan.id}
    assert "value" not in key.inputs  # generated by API Gateway, never in code or config
    assert plan.outputs["apiKeyId"] == key.id


def test_a_waf_protects_the_stage_only_when_configured(plan: Plan) -> None:
    acls = plan.of_type("aws:wafv2/webAcl:WebAcl")
    associations = plan.of_type("aws:wafv2/webAclAssociation:WebAclAssociation")
    if not config_of(plan).api.waf:
        assert acls == associations == []
        return
    (acl,), (association,) = acls, associations
    assert acl.inputs["scope"] == "REGIONAL"
    rules = {rule["name"]: rule for rule in acl.inputs["rules"]}
    groups = {
        rule["statement"]["managedRuleGroupStatement"]["name"]
        for rule in rules.values()
        if "managedRuleGroupStatement" in rule["statement"]
    }
    assert groups == {"AWSManagedRulesCommonRuleSet", "AWSManagedRulesKnownBadInputsRuleSet"}
    rate = rules["rate-limit-per-ip"]
    assert rate["action"] == {"block": {}}
    assert rate["statement"]["rateBasedStatement"]["aggregateKeyType"] == "IP"
    assert len({rule["priority"] for rule in rules.values()}) == len(rules)
    assert association.inputs["webAclArn"] == acl.outputs["arn"]
    assert association.inputs["resourceArn"] == (
        f"arn:aws:apigateway:us-east-1::/restapis/{rest_api_id(plan)}/stages/live"
    )
