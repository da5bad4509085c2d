"""Where the platform lives: local state file, outputs file, the Pulumi CLI, and missing outputs."""

from __future__ import annotations

import argparse
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mlctl import targets
from mlctl.targets import PlatformTarget, TargetError, add_target_arguments, resolve_target
from tests.functional.mlctl.conftest import API_KEY, REGION, Result, local_state


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_target_arguments(parser)
    return parser.parse_args(list(argv))


def test_local_state_file_gives_endpoint_api_and_deployer_settings(tmp_path: Path) -> None:
    # GIVEN local mode's state file
    state = tmp_path / "state.json"
    state.write_text(json.dumps(local_state("http://127.0.0.1:4566", api_url="http://127.0.0.1:8080/live")))

    # WHEN the target is resolved with --local
    target = resolve_target(parse("--local", "--state-file", str(state)))

    # THEN every AWS client goes to the emulator, and the API and deployer settings come from the file
    assert target.aws_endpoint_url == "http://127.0.0.1:4566"
    assert (target.stack, target.region) == ("local", REGION)
    assert (target.api_url, target.api_key) == ("http://127.0.0.1:8080/live", API_KEY)
    assert target.output("endpointName") == "mlp-dev-endpoint"
    assert target.local


def test_local_wins_over_an_outputs_file(tmp_path: Path, outputs_file: Callable[..., Path]) -> None:
    # GIVEN both --local and --outputs-file
    state = tmp_path / "state.json"
    state.write_text(json.dumps(local_state("http://127.0.0.1:4566")))
    path = outputs_file()

    # WHEN resolved THEN the local state decides
    target = resolve_target(parse("--local", "--state-file", str(state), "--outputs-file", str(path)))
    assert target.aws_endpoint_url == "http://127.0.0.1:4566"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"aws_endpoint_url": None}, "'aws_endpoint_url' is not a string"),
        ({"outputs": []}, "'outputs' is not a JSON object"),
    ],
)
def test_a_bad_local_state_file_names_the_key(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    # GIVEN a state file with a wrong value
    state = tmp_path / "state.json"
    state.write_text(json.dumps(local_state("http://127.0.0.1:4566", **change)))

    # WHEN resolved THEN the error names the key
    with pytest.raises(TargetError, match=message):
        resolve_target(parse("--local", "--state-file", str(state)))


def test_a_local_state_file_missing_a_key_is_refused(tmp_path: Path) -> None:
    # GIVEN a state file without the API's URL
    document = local_state("http://127.0.0.1:4566")
    del document["api_url"]
    state = tmp_path / "state.json"
    state.write_text(json.dumps(document))

    # WHEN resolved THEN the missing key is named
    with pytest.raises(TargetError, match="'api_url' missing"):
        resolve_target(parse("--local", "--state-file", str(state)))


def test_no_local_state_tells_how_to_start(tmp_path: Path) -> None:
    # GIVEN no state file WHEN resolved THEN the message says to start local mode (usage error, exit 2)
    with pytest.raises(TargetError, match="start local mode first") as raised:
        resolve_target(parse("--local", "--state-file", str(tmp_path / "absent.json")))
    assert raised.value.exit_code == 2


def test_outputs_file_gives_an_aws_target(outputs_file: Callable[..., Path]) -> None:
    # GIVEN the JSON of 'pulumi stack output'
    path = outputs_file(region="eu-west-1")

    # WHEN resolved
    target = resolve_target(parse("--stack", "prod", "--outputs-file", str(path)))

    # THEN it is the named stack on real AWS (no emulator, no deployer settings)
    assert (target.stack, target.region) == ("prod", "eu-west-1")
    assert target.aws_endpoint_url is None and not target.local
    assert target.api_url == "https://abc123.execute-api.us-east-1.amazonaws.com/live"


def test_a_missing_output_names_the_key_and_the_stack() -> None:
    # GIVEN outputs without trainingPipelineName (or with it null)
    target = PlatformTarget(stack="dev", region=REGION, outputs={"trainingPipelineName": None})

    # WHEN it is asked for THEN the error names both
    with pytest.raises(TargetError, match=r"stack 'dev' has no output 'trainingPipelineName'"):
        target.output("trainingPipelineName")


def test_a_missing_output_is_one_line_and_exit_2(
    mlctl: Callable[..., Result], outputs_file: Callable[..., Path], aws_credentials: None
) -> None:
    # GIVEN an outputs file without the training pipeline
    path = outputs_file(trainingPipelineName=None)

    # WHEN a command needs it
    result = mlctl("train", "--outputs-file", str(path))

    # THEN one line on stderr names the output, and the exit code is 2
    assert result.code == 2
    assert result.err.strip().splitlines() == [
        "mlctl train: stack 'dev' has no output 'trainingPipelineName' (was it deployed with this version?)"
    ]
    assert "Traceback" not in result.err


def test_without_the_pulumi_cli_the_error_says_what_to_do(
    mlctl: Callable[..., Result], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # GIVEN no pulumi on PATH and no --outputs-file
    monkeypatch.setenv("PATH", str(tmp_path))

    # WHEN a command resolves its target
    result = mlctl("models", "list")

    # THEN it exits 2 with one line naming both ways out
    assert result.code == 2
    assert len(result.err.strip().splitlines()) == 1
    assert "pulumi CLI is not installed" in result.err and "--outputs-file" in result.err


def fake_pulumi(directory: Path, script: str) -> None:
    path = directory / "pulumi"
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def test_pulumi_stack_output_is_run_for_the_stack(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # GIVEN a pulumi on PATH that records its arguments and prints outputs
    fake_pulumi(
        tmp_path, f'echo "$@" > {tmp_path}/args\necho \'{{"region": "eu-west-1", "endpointName": "e"}}\''
    )
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}")

    # WHEN the prod stack is resolved without --outputs-file
    target = resolve_target(parse("--stack", "prod"))

    # THEN pulumi was asked for that stack's outputs with secrets, as JSON
    assert (tmp_path / "args").read_text().split() == [
        "stack",
        "output",
        "--json",
        "--show-secrets",
        "--stack",
        "prod",
    ]
    assert (target.region, target.output("endpointName")) == ("eu-west-1", "e")


def test_a_failing_pulumi_is_reported_with_its_last_error_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # GIVEN a pulumi that fails (no such stack)
    fake_pulumi(tmp_path, "echo 'warning: x' >&2\necho 'error: no stack named dev found' >&2\nexit 255")
    monkeypatch.setenv("PATH", str(tmp_path))

    # WHEN resolved THEN its last error line is the message
    with pytest.raises(TargetError, match="error: no stack named dev found"):
        targets.pulumi_stack_outputs("dev")


def test_local_clients_get_dummy_credentials_when_none_exist(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN no AWS credentials anywhere
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    target = PlatformTarget(
        stack="local", region=REGION, outputs={}, aws_endpoint_url="http://127.0.0.1:4566"
    )

    # WHEN a client is built for local mode
    sagemaker = targets.client(target, "sagemaker")

    # THEN it points at the emulator and can sign requests
    assert sagemaker.meta.endpoint_url == "http://127.0.0.1:4566"
    assert sagemaker.meta.region_name == REGION
    assert sagemaker._request_signer._credentials.access_key == "local"


def test_local_clients_never_carry_the_users_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the user's own AWS identity in the environment, and a profile that does not exist
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAUSERSOWNKEY00000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "the-users-secret")
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    target = PlatformTarget(
        stack="local", region=REGION, outputs={}, aws_endpoint_url="http://127.0.0.1:4566"
    )

    # WHEN a client is built for local mode
    sagemaker = targets.client(target, "sagemaker")

    # THEN it signs with the emulator's credentials: nothing of the user's reaches a local process
    credentials = sagemaker._request_signer._credentials
    assert (credentials.access_key, credentials.secret_key) == ("local", "local")
