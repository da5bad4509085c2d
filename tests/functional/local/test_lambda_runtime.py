"""The local Lambda runtime: a function's handler runs in its own process with exactly the
environment the function declares plus what Lambda's runtime sets, never the user's AWS identity;
a failing invocation is retried and then sent to the on-failure topic, as asynchronous invocations
are in AWS; every handler process is in the process ledger and stopped with the runtime.

moto (in-process) holds the functions; the handlers are ``tests.functional.local.lambda_handlers``.
"""

from __future__ import annotations

import io
import json
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from emulator import lambda_invoke, processes
from emulator.invocations import INVOCATIONS_FILE, InvocationRecord, read_invocations
from emulator.isolation import EMULATOR_CREDENTIALS
from emulator.lambdas import LocalLambdaRuntime

EVENTS = Path(__file__).resolve().parents[2] / "events"
REGION = "us-east-1"
AWS_URL = "http://127.0.0.1:4566"  # what the handlers are told; these ones call no AWS
HANDLERS = "tests.functional.local.lambda_handlers"
WAIT_S = 60.0
DECLARED = {
    "MODEL_PACKAGE_GROUP": "mlp-dev-models",
    "LOG_LEVEL": "INFO",
    "POWERTOOLS_SERVICE_NAME": "deployer",
}
# A user's AWS identity in the shell that runs the platform.
USER_AWS = {
    "AWS_PROFILE": "someones-admin-profile",
    "AWS_ACCESS_KEY_ID": "AKIAUSERSOWNACCESSKEY",
    "AWS_SECRET_ACCESS_KEY": "users-own-secret-access-key",
}
# What Lambda's runtime sets, plus the emulator's endpoint and the isolation from the user's files.
RUNTIME_VARIABLES = {
    "_HANDLER", "AWS_EXECUTION_ENV", "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION", "AWS_LAMBDA_INITIALIZATION_TYPE", "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR", "LANG", "TZ", "PATH", "PYTHONPATH",
    "AWS_ENDPOINT_URL", "AWS_SAM_LOCAL", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_EC2_METADATA_DISABLED",
}  # fmt: skip


@dataclass
class Lambdas:
    clients: dict[str, Any]
    runtime: LocalLambdaRuntime
    role: str
    topic: str
    inbox: str  # an SQS queue subscribed to the topic
    log_dir: Path
    ledger: Path

    def create(self, name: str, handler: str, *, retries: int = 2, timeout: int = 30) -> str:
        """A function as the stack declares the deployer (reserved concurrency 1, failures to the
        topic); returns its ARN."""
        created = self.clients["lambda"].create_function(
            FunctionName=name,
            Runtime="python3.11",
            Role=self.role,
            Handler=f"{HANDLERS}.{handler}",
            Code={"ZipFile": placeholder_zip()},
            Timeout=timeout,
            MemorySize=256,
            Environment={"Variables": DECLARED},
        )
        self.clients["lambda"].put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
        self.clients["lambda"].put_function_event_invoke_config(
            FunctionName=name,
            MaximumRetryAttempts=retries,
            DestinationConfig={"OnFailure": {"Destination": self.topic}},
        )
        return str(created["FunctionArn"])

    def records(self, function: str, final: int = 1) -> list[InvocationRecord]:
        """The function's invocation records, once ``final`` invocations have ended."""
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            records = [r for r in read_invocations(self.log_dir / INVOCATIONS_FILE) if r.function == function]
            if sum(r.final for r in records) >= final:
                return records
            time.sleep(0.05)
        raise AssertionError(f"{function}: fewer than {final} invocations ended")


def client(service: str) -> Any:
    return boto3.client(service, region_name=REGION)  # type: ignore[call-overload]


def placeholder_zip() -> bytes:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as out:
        out.writestr("LOCAL.txt", "runs from the project\n")
    return archive.getvalue()


def approval_event() -> dict[str, Any]:
    return dict(json.loads((EVENTS / "eventbridge_model_package_approved.json").read_text()))


@pytest.fixture
def lambdas(aws_credentials: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Lambdas]:
    ledger = tmp_path / processes.LEDGER_FILE
    monkeypatch.setenv(processes.LEDGER_ENV, str(ledger))
    with mock_aws():
        clients = {service: client(service) for service in ("iam", "lambda", "sns", "sqs")}
        trust = {"Version": "2012-10-17", "Statement": []}
        role = clients["iam"].create_role(RoleName="function", AssumeRolePolicyDocument=json.dumps(trust))
        topic = clients["sns"].create_topic(Name="mlp-dev-alerts")["TopicArn"]
        inbox = clients["sqs"].create_queue(QueueName="alerts-inbox")["QueueUrl"]
        queue_arn = clients["sqs"].get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])
        clients["sns"].subscribe(
            TopicArn=topic,
            Protocol="sqs",
            Endpoint=queue_arn["Attributes"]["QueueArn"],
            Attributes={"RawMessageDelivery": "true"},
        )
        log_dir = tmp_path / "lambda"
        runtime = LocalLambdaRuntime(
            clients.__getitem__, region=REGION, aws_url=AWS_URL, log_dir=log_dir, retry_delays=(0.0,)
        )
        try:
            yield Lambdas(clients, runtime, role["Role"]["Arn"], topic, inbox, log_dir, ledger)
        finally:
            runtime.stop()


def test_the_handler_gets_exactly_the_declared_environment_and_never_the_users_identity(
    lambdas: Lambdas, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a function, and a user's AWS keys and profile in the environment that runs the platform
    arn = lambdas.create("mlp-dev-deployer", "report")
    for name, value in USER_AWS.items():
        monkeypatch.setenv(name, value)
    event = approval_event()
    # WHEN EventBridge's event invokes it
    request_id = lambdas.runtime.invoke_async(arn, event)
    (record,) = lambdas.records("mlp-dev-deployer")
    # THEN the handler ran once and answered
    assert (record.outcome, record.attempt, record.request_id) == ("succeeded", 1, request_id)
    assert record.event_id == event["id"] and record.detail_type == event["detail-type"]
    environment, context = record.result["environment"], record.result["context"]
    # AND its process had the declared variables and Lambda's own, nothing else
    assert set(environment) == set(DECLARED) | RUNTIME_VARIABLES
    assert {name: environment[name] for name in DECLARED} == DECLARED
    assert environment["AWS_LAMBDA_FUNCTION_NAME"] == "mlp-dev-deployer"
    assert environment["_HANDLER"] == f"{HANDLERS}.report"
    assert (environment["AWS_REGION"], environment["AWS_ENDPOINT_URL"]) == (REGION, AWS_URL)
    # AND the emulator's keys, none of the user's
    assert environment["AWS_ACCESS_KEY_ID"] == EMULATOR_CREDENTIALS.access_key_id
    assert not any(value in text for value in USER_AWS.values() for text in environment.values())
    # AND a context as Lambda's runtime gives it (what Powertools' inject_lambda_context reads)
    assert context["function_name"] == "mlp-dev-deployer" and context["memory_limit_in_mb"] == "256"
    assert context["invoked_function_arn"] == arn and context["aws_request_id"] == request_id
    assert 0 < context["remaining_ms"] <= 30_000
    # AND the function's log frames the invocation as CloudWatch does
    log = Path(record.log).read_text()
    assert f"START RequestId: {request_id}" in log and f"END RequestId: {request_id}" in log


def test_a_failing_invocation_is_retried_then_sent_to_the_on_failure_topic(lambdas: Lambdas) -> None:
    # GIVEN a function whose handler always raises, one retry allowed
    arn = lambdas.create("always-fails", "fail", retries=1)
    event = approval_event()
    # WHEN an event invokes it
    request_id = lambdas.runtime.invoke_async(arn, event)
    records = lambdas.records("always-fails")
    # THEN it ran twice under the same request id, both attempts failing with the handler's error
    assert [(r.attempt, r.outcome, r.request_id) for r in records] == [
        (1, "failed", request_id),
        (2, "failed", request_id),
    ]
    assert records[0].error == f"RuntimeError: cannot handle event {event['id']}"
    # AND after the last attempt Lambda's failure record went to the topic
    assert (records[0].sent_to, records[1].sent_to) == (None, lambdas.topic)
    messages = lambdas.clients["sqs"].receive_message(QueueUrl=lambdas.inbox, WaitTimeSeconds=1)["Messages"]
    (failure,) = [json.loads(message["Body"]) for message in messages]
    assert failure["requestContext"]["condition"] == "RetriesExhausted"
    assert failure["requestContext"]["approximateInvokeCount"] == 2
    assert failure["requestContext"]["requestId"] == request_id
    assert failure["requestPayload"] == event
    assert failure["responsePayload"]["errorType"] == "RuntimeError"


def test_a_handler_past_its_timeout_is_killed_and_the_attempt_fails(lambdas: Lambdas) -> None:
    # GIVEN a function with a one-second timeout whose handler never returns, no retry
    arn = lambdas.create("hangs", "hang", retries=0, timeout=1)
    # WHEN it is invoked
    lambdas.runtime.invoke_async(arn, approval_event())
    (record,) = lambdas.records("hangs")
    # THEN the attempt failed as Lambda reports a timeout, and its process was stopped
    assert record.outcome == "failed" and str(record.error).startswith("Sandbox.Timedout")
    (started,) = [entry for entry in processes.recorded(lambdas.ledger) if entry.role == "lambda hangs"]
    assert not started.running()


def test_stopping_the_runtime_stops_the_handlers_it_started(lambdas: Lambdas) -> None:
    # GIVEN a handler running (it is in the process ledger)
    arn = lambdas.create("runs-long", "hang", retries=0, timeout=300)
    lambdas.runtime.invoke_async(arn, approval_event())
    deadline = time.monotonic() + WAIT_S
    while not (running := [e for e in processes.recorded(lambdas.ledger) if e.role == "lambda runs-long"]):
        assert time.monotonic() < deadline, "the handler never started"
        time.sleep(0.05)
    assert running[0].running()
    # WHEN the runtime stops (the emulator stopping)
    lambdas.runtime.stop()
    # THEN the handler's process is gone
    assert not running[0].running()


@pytest.fixture
def invoke_api(lambdas: Lambdas) -> Iterator[Lambdas]:
    """Lambda's Invoke API answered by the local runtime (as the emulator process does)."""
    undo = lambda_invoke.extend_moto(lambdas.runtime)
    try:
        yield lambdas
    finally:
        undo()


def test_a_synchronous_invoke_returns_the_handlers_answer_and_records_one_attempt(
    invoke_api: Lambdas,
) -> None:
    # GIVEN a function the emulator holds
    invoke_api.create("reporter", "report")

    # WHEN a plain client invokes it and waits for the answer (aws lambda invoke, mlctl rollback)
    answer = invoke_api.clients["lambda"].invoke(
        FunctionName="reporter", Payload=json.dumps(approval_event()).encode()
    )

    # THEN the answer is the handler's own, from a process with the declared environment
    assert answer["StatusCode"] == 200 and "FunctionError" not in answer
    result = json.loads(answer["Payload"].read())
    assert result["event_id"] == approval_event()["id"]
    assert result["environment"]["MODEL_PACKAGE_GROUP"] == DECLARED["MODEL_PACKAGE_GROUP"]
    (record,) = invoke_api.records("reporter")
    assert (record.attempt, record.attempts_allowed, record.outcome) == (1, 1, "succeeded")


def test_a_failing_synchronous_invoke_is_the_callers_error_not_retried(invoke_api: Lambdas) -> None:
    # GIVEN a function whose handler raises
    invoke_api.create("failing", "fail")

    # WHEN it is invoked synchronously
    answer = invoke_api.clients["lambda"].invoke(
        FunctionName="failing", Payload=json.dumps(approval_event()).encode()
    )

    # THEN the caller gets Lambda's function error with the handler's message, after one attempt
    assert answer["FunctionError"] == "Unhandled"
    error = json.loads(answer["Payload"].read())
    assert error["errorType"] == "RuntimeError" and "cannot handle event" in error["errorMessage"]
    assert [r.attempt for r in invoke_api.records("failing")] == [1]


def test_invoking_an_unknown_function_is_resource_not_found(invoke_api: Lambdas) -> None:
    client = invoke_api.clients["lambda"]
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.invoke(FunctionName="no-such-function", Payload=b"{}")
