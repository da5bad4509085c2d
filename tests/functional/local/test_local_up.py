"""`mlctl local up`, end to end on CPU: the whole loop, then version 2 switched in blue/green
under continuous traffic, then `local down`.

One module-scoped platform (training twice is the slow part); the tests read what it left in the
emulated AWS and talk to it over HTTP like a user would.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from emulator.clients import emulator_client
from handlers.common.s3_uri import S3Uri
from mlctl import cli
from mlctl.local.commands import local_up, stop_platform
from mlctl.local.state import LocalState, process_alive
from mlctl.local.workflow import post_json

STACK = "dev"
EPOCHS = 4  # reaches the dev gate (accuracy >= 0.85); 2 epochs do not
DIGIT_PIXELS = [0, 5, 10, 16] * 16  # one 8x8 grey-level image, values 0..16


@dataclass
class Platform:
    state: LocalState
    state_dir: Path

    def client(self, service: str) -> Any:
        return emulator_client(service, self.state.region, self.state.aws_endpoint_url)

    def predict(self, body: Any) -> tuple[int, Any]:
        return post_json(f"{self.state.api_url}/v1/predict", body, self.state.api_key)


# A user's real AWS identity in the shell that runs `up`: none of it may reach what `up` starts,
# and a profile that does not exist must not break local mode.
USER_AWS = {
    "AWS_PROFILE": "no-such-profile",
    "AWS_ACCESS_KEY_ID": "AKIAUSERSKEYNOTLOCAL",
    "AWS_SECRET_ACCESS_KEY": "users-secret-not-for-local-mode",
}


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    state_dir = tmp_path_factory.mktemp("mlctl-local")
    try:
        with pytest.MonkeyPatch.context() as patch:
            for name, value in USER_AWS.items():
                patch.setenv(name, value)
            state = local_up(STACK, state_dir, manual_approval=False, epochs=EPOCHS)
        yield Platform(state, state_dir)
    finally:
        stop_platform(state_dir, quiet=True)


def _descendants(pid: int) -> list[int]:
    """Every running process below ``pid``."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        parent = int(text[text.rindex(")") + 2 :].split()[1])
        parents.setdefault(parent, []).append(int(stat.parent.name))
    found, pending = [], [pid]
    while pending:
        children = parents.get(pending.pop(), [])
        found.extend(children)
        pending.extend(children)
    return found


def test_no_process_the_platform_started_holds_the_users_aws_identity(platform: Platform) -> None:
    # GIVEN the emulator and everything it started (model servers among them)
    pids = [platform.state.emulator_pid, *_descendants(platform.state.emulator_pid)]
    environments = {}
    for pid in pids:
        try:
            environments[pid] = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
        except OSError:
            continue  # ended since
    assert len(environments) >= 2, "the emulator and at least one model server"
    # THEN none holds the user's keys or profile
    for environment in environments.values():
        assert not any(value in environment for value in USER_AWS.values())


def test_files_holding_the_api_key_are_readable_by_their_owner_only(platform: Platform) -> None:
    for name in ("state.json", "emulator.json"):
        path = platform.state_dir / name
        assert platform.state.api_key in path.read_text()
        assert path.stat().st_mode & 0o777 == 0o600, name


def _sample_image() -> dict[str, str]:
    return {"b64": base64.b64encode(bytes(DIGIT_PIXELS)).decode()}


def test_the_loop_leaves_artifacts_an_approved_version_and_a_serving_endpoint(platform: Platform) -> None:
    names = platform.state.outputs
    s3, sagemaker = platform.client("s3"), platform.client("sagemaker")
    # THEN the trained model is in the artifacts bucket, as a training job leaves it
    artifacts = names["bucketNames"]["artifacts"]
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=artifacts, Prefix="models/").get("Contents", [])]
    assert any(key.endswith("/output/model.tar.gz") for key in keys)
    # AND the registry holds an Approved version of it
    versions = sagemaker.list_model_packages(ModelPackageGroupName=names["modelPackageGroupName"])
    statuses = [v["ModelApprovalStatus"] for v in versions["ModelPackageSummaryList"]]
    assert statuses == ["Approved"]
    # AND the endpoint is InService in the SageMaker API, on the config the deployer created
    endpoint = sagemaker.describe_endpoint(EndpointName=names["endpointName"])
    assert endpoint["EndpointStatus"] == "InService"
    tags = {t["Key"]: t["Value"] for t in sagemaker.list_tags(ResourceArn=endpoint["EndpointArn"])["Tags"]}
    assert endpoint["EndpointConfigName"] == tags["ml-platform:expected-config"]


def test_predictions_come_back_over_http_through_the_lambda_handler(platform: Platform) -> None:
    # WHEN a client calls the API with its key
    status, body = platform.predict({"instances": [_sample_image()]})
    # THEN the API Lambda answers with the endpoint's prediction and confidence
    assert status == 200, body
    ((label,), (confidence,)) = body["predictions"], body["confidence"]
    assert label in {str(digit) for digit in range(10)} and 0.0 <= confidence <= 1.0
    # AND it names the registry version that answered (the deployer puts it in the container)
    assert body["model_version"] == "1"
    # AND without the key the gateway refuses before the handler runs
    status, _ = post_json(f"{platform.state.api_url}/v1/predict", {"instances": []}, "wrong-key")
    assert status == 403


def test_a_plain_boto3_client_with_only_the_emulators_url_reaches_the_local_endpoint(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a user's boto3, told nothing but AWS_ENDPOINT_URL (as `up --keep` prints it)
    monkeypatch.setenv("AWS_ENDPOINT_URL", platform.state.aws_endpoint_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "any")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "any")
    runtime = boto3.client("sagemaker-runtime", region_name=platform.state.region)
    # WHEN it invokes the stack's endpoint
    answer = runtime.invoke_endpoint(
        EndpointName=platform.state.outputs["endpointName"],
        ContentType="application/json",
        Body=json.dumps({"instances": [DIGIT_PIXELS]}),
    )
    # THEN the model server answers (not a canned reply)
    assert answer["InvokedProductionVariant"] == "primary"
    assert len(json.loads(answer["Body"].read())["predictions"]) == 1
    # AND an endpoint that does not exist is a ValidationError, as in AWS
    with pytest.raises(runtime.exceptions.ClientError) as unknown:
        runtime.invoke_endpoint(EndpointName="no-such-endpoint", ContentType="application/json", Body=b"{}")
    assert unknown.value.response["Error"]["Code"] == "ValidationError"
    assert "no-such-endpoint" in unknown.value.response["Error"]["Message"]
    # AND the invocations the platform does not serve say so, instead of pretending
    with pytest.raises(runtime.exceptions.ClientError) as asynchronous:
        runtime.invoke_endpoint_async(
            EndpointName=platform.state.outputs["endpointName"], InputLocation="s3://raw/x.json"
        )
    assert asynchronous.value.response["Error"]["Code"] == "ValidationError"
    assert "InvokeEndpointAsync is not supported" in asynchronous.value.response["Error"]["Message"]
    # AND the rest of AWS is still the emulator's (SageMaker's control plane, S3)
    endpoint = boto3.client("sagemaker", region_name=platform.state.region).describe_endpoint(
        EndpointName=platform.state.outputs["endpointName"]
    )
    assert endpoint["EndpointStatus"] == "InService"


def test_capture_files_are_written_and_drift_metrics_computed(platform: Platform) -> None:
    capture = S3Uri.parse(platform.state.outputs["dataCaptureUri"])
    listing = platform.client("s3").list_objects_v2(Bucket=capture.bucket, Prefix=capture.key)
    keys = [o["Key"] for o in listing["Contents"]]
    assert keys and all(key.endswith(".jsonl") for key in keys)
    metrics = platform.client("cloudwatch").list_metrics(Namespace="ml-platform")["Metrics"]
    drift_metrics = {m["MetricName"] for m in metrics}
    assert {"MeanConfidence", "MaxFeaturePSI"} <= drift_metrics, drift_metrics


def test_a_killed_model_server_is_replaced_and_predictions_continue(platform: Platform) -> None:
    # GIVEN the endpoint's model server, killed outright
    (server,) = _model_servers(platform)
    os.kill(server, signal.SIGKILL)
    # WHEN callers keep asking
    deadline = time.monotonic() + 60
    status, body = 0, None
    while time.monotonic() < deadline:
        status, body = platform.predict({"instances": [_sample_image()]})
        if status == 200:
            break
        time.sleep(0.5)
    # THEN a new server answers and the endpoint is still InService, as after SageMaker replaces an instance
    assert status == 200, body
    assert _model_servers(platform) and server not in _model_servers(platform)
    endpoint = platform.client("sagemaker").describe_endpoint(
        EndpointName=platform.state.outputs["endpointName"]
    )
    assert endpoint["EndpointStatus"] == "InService"


def test_version_2_switches_in_blue_green_without_a_failed_request(platform: Platform) -> None:
    sagemaker = platform.client("sagemaker")
    endpoint_name = platform.state.outputs["endpointName"]
    before = sagemaker.describe_endpoint(EndpointName=endpoint_name)["EndpointConfigName"]
    failures: list[Any] = []
    answered = [0]
    stop = threading.Event()
    body = {"instances": [_sample_image()]}

    def keep_calling() -> None:
        while not stop.is_set():
            status, answer = platform.predict(body)
            if status != 200:
                failures.append((status, answer))
            answered[0] += 1

    callers = [threading.Thread(target=keep_calling, daemon=True) for _ in range(3)]
    for caller in callers:
        caller.start()
    try:
        # WHEN a second `up` brings new data while clients keep calling
        state = local_up(STACK, platform.state_dir, manual_approval=False, epochs=EPOCHS)
    finally:
        stop.set()
        for caller in callers:
            caller.join(30)
    # THEN version 2 is registered, approved and served on a new config
    assert state.versions == [1, 2]
    after = sagemaker.describe_endpoint(EndpointName=endpoint_name)
    assert after["EndpointStatus"] == "InService" and after["EndpointConfigName"] != before
    # AND the champion gate compared it with version 1 and recorded its decision in the registry
    (latest, *_) = sagemaker.list_model_packages(
        ModelPackageGroupName=platform.state.outputs["modelPackageGroupName"], SortOrder="Descending"
    )["ModelPackageSummaryList"]
    entry = sagemaker.describe_model_package(ModelPackageName=latest["ModelPackageArn"])
    assert entry["CustomerMetadataProperties"]["comparison.decision"] == "promote"
    assert entry["CustomerMetadataProperties"]["comparison.champion"].endswith("/1")
    # AND the answers now come from version 2
    assert platform.predict({"instances": [_sample_image()]})[1]["model_version"] == "2"
    # AND no request failed during the switch
    assert answered[0] > 0
    assert failures == []


def test_mlctl_train_and_deploy_wait_work_against_the_local_platform(
    platform: Platform, capsys: pytest.CaptureFixture[str]
) -> None:
    state_file = str(platform.state_dir / "state.json")
    # WHEN a user retrains with `mlctl train --local` (the deployed pipeline, run by the emulator)
    code = cli.main(["train", "--local", "--state-file", state_file, "--epochs", "3", "--poll", "0.5"])
    out = capsys.readouterr().out
    # THEN it follows real steps to the end, not a Succeeded at 0 s
    assert code == 0, out
    for step in ("Prepare", "Train", "Evaluate", "CheckEvaluation", "RegisterModel"):
        assert f"step {step}: Succeeded" in out
    assert out.index("step Train: Executing") < out.index("step Train: Succeeded")
    # AND `mlctl deploy wait --local` smoke-tests the served version with its published input schema
    code = cli.main(["deploy", "wait", "--local", "--state-file", state_file, "--poll", "0"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "smoke request: HTTP 200" in out


def _executed_pipeline_version(platform: Platform, **parameters: str) -> Any:
    """StartPipelineExecution on the deployed definition (the emulator executes it); the version
    its RegisterModel step registered."""
    from handlers.registry.client import ModelRegistry  # noqa: PLC0415
    from mlctl.train import SUCCEEDED, follow_execution, list_steps  # noqa: PLC0415

    sagemaker = platform.client("sagemaker")
    arn = sagemaker.start_pipeline_execution(
        PipelineName=platform.state.outputs["trainingPipelineName"],
        PipelineParameters=[{"Name": name, "Value": value} for name, value in parameters.items()],
    )["PipelineExecutionArn"]
    outcome = follow_execution(sagemaker, arn, poll_seconds=0.5, say=lambda line: None)
    assert outcome.status == SUCCEEDED, outcome.failure_reason
    (register,) = [s for s in list_steps(sagemaker, arn) if s["StepName"] == "RegisterModel"]
    return ModelRegistry(sagemaker).describe(register["Metadata"]["RegisterModel"]["Arn"])


def _console_approve(platform: Platform, version: Any) -> None:
    """What the SageMaker console does: UpdateModelPackage, no champion gate of ours."""
    sagemaker = boto3.client(
        "sagemaker",
        region_name=platform.state.region,
        endpoint_url=platform.state.aws_endpoint_url,
        aws_access_key_id="console",
        aws_secret_access_key="console",
    )
    sagemaker.update_model_package(ModelPackageArn=version.arn, ModelApprovalStatus="Approved")


def _deployer_watch(platform: Platform) -> Any:
    from emulator.invocations import INVOCATIONS_FILE  # noqa: PLC0415
    from emulator.server import lambda_log_dir  # noqa: PLC0415
    from mlctl.local.deployer_watch import DeployerWatch  # noqa: PLC0415

    outputs = platform.state.outputs
    return DeployerWatch(
        platform.client("sagemaker"),
        platform.client("s3"),
        lambda_log_dir(platform.state_dir) / INVOCATIONS_FILE,
        str(outputs["deployerFunctionName"]),
        str(outputs["endpointName"]),
    )


def _scalable_variants(platform: Platform) -> dict[str, tuple[int, int]]:
    targets = platform.client("application-autoscaling").describe_scalable_targets(
        ServiceNamespace="sagemaker"
    )
    return {t["ResourceId"]: (t["MinCapacity"], t["MaxCapacity"]) for t in targets["ScalableTargets"]}


def _shuffled_labels_uri(platform: Platform, tmp_path: Path) -> str:
    """The task's raw data with its labels shuffled, under a prefix of its own: a model trained on
    it is worse than the served one, for sure."""
    import random  # noqa: PLC0415

    from training_jobs import datasets  # noqa: PLC0415
    from training_jobs.tasks import Record, get_task, read_records, write_records  # noqa: PLC0415

    task = get_task("digits")
    path = datasets.write_raw("digits", tmp_path, seed=7)
    records = read_records(task, path)
    labels = [r.target for r in records]
    random.Random(7).shuffle(labels)
    write_records(task, [Record(r.features, label) for r, label in zip(records, labels, strict=True)], path)
    bucket = platform.state.outputs["bucketNames"]["raw"]
    platform.client("s3").upload_file(str(path), bucket, f"shuffled/{path.name}")
    return f"s3://{bucket}/shuffled/"


def test_console_approval_gate_refusal_and_rollback_through_the_deployer_lambda(
    platform: Platform, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from handlers.registry.client import ModelRegistry  # noqa: PLC0415
    from mlctl.local.deployer_watch import DeployerError  # noqa: PLC0415

    registry = ModelRegistry(platform.client("sagemaker"))
    endpoint = platform.state.outputs["endpointName"]
    scaled = {f"endpoint/{endpoint}/variant/primary": (1, 2)}  # the dev stack's bounds
    served = _deployer_watch(platform)
    # GIVEN a version the executed pipeline registered from the platform's data, trained longer
    challenger = _executed_pipeline_version(platform, TrainingEpochs="8")
    assert challenger.status == "PendingManualApproval" and "accuracy" in challenger.metrics

    # WHEN it is approved as the console does (no comparison recorded by us)
    _console_approve(platform, challenger)

    # THEN the deployer Lambda, run by the approval event, compared the registered metrics with the
    # served version's, deployed it blue/green and verified it; autoscaling holds after the rollout
    deployed = served.wait(registry.describe(challenger.arn), 300)
    assert deployed.action == "updated"
    assert platform.predict({"instances": [_sample_image()]})[1]["model_version"] == str(challenger.version)
    assert _scalable_variants(platform) == scaled

    # GIVEN a worse version: trained on shuffled labels, registered by the pipeline under a zero threshold
    worse = _executed_pipeline_version(
        platform,
        InputDataUri=_shuffled_labels_uri(platform, tmp_path),
        EvaluationThreshold="0",
        TrainingEpochs="2",
    )
    # WHEN it is approved in the console THEN the deployer's champion gate rejects it, saying why
    _console_approve(platform, worse)
    with pytest.raises(DeployerError, match="champion gate") as refused:
        served.wait(registry.describe(worse.arn), 300)
    assert "accuracy" in str(refused.value)
    rejected = registry.describe(worse.arn)
    assert rejected.status == "Rejected" and "accuracy" in (rejected.approval_description or "")
    assert platform.predict({"instances": [_sample_image()]})[1]["model_version"] == str(challenger.version)

    # WHEN the served version is rolled back with mlctl (the deployer Lambda, invoked with the event)
    state_file = str(platform.state_dir / "state.json")
    code = cli.main(["models", "rollback", "--local", "--state-file", state_file, "--reason", "drifted"])
    out = capsys.readouterr().out
    assert code == 0, out

    # THEN the challenger is rejected and version 2, the newest older approved one, serves again,
    # verified, with its autoscaling
    assert registry.describe(challenger.arn).status == "Rejected"
    restored = served.wait(registry.describe(registry.version_arn(challenger.group, 2)), 300)
    assert restored.action == "updated"
    assert platform.predict({"instances": [_sample_image()]})[1]["model_version"] == "2"
    assert _scalable_variants(platform) == scaled


def _model_servers(platform: Platform) -> list[int]:
    return [
        pid
        for pid in _descendants(platform.state.emulator_pid)
        if b"handlers.serving.server" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]


def test_local_down_stops_everything_even_after_the_emulator_was_killed(platform: Platform) -> None:
    # GIVEN the running platform, its emulator then killed outright (no chance to stop its children)
    pid = platform.state.emulator_pid
    started = [pid, *_descendants(pid)]
    assert _model_servers(platform)
    os.kill(pid, signal.SIGKILL)
    # WHEN `local down` runs
    assert stop_platform(platform.state_dir, quiet=True)
    # THEN nothing the platform started runs any more: the model servers were written down
    assert [p for p in started if process_alive(p)] == []
    assert LocalState.read(platform.state_dir) is None
