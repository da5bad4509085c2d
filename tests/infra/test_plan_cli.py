"""``mlctl plan``: the offline plan a newcomer sees, and clear errors instead of tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from infra.offline import OfflineRun
from infra.stack_config import StackConfigError, read_stack_values
from mlctl.cli import EXIT_USAGE, main


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_plan_prints_the_resource_tree_counts_and_outputs(
    stack: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # WHEN the plan of a shipped stack is printed
    assert main(["plan", "--stack", stack]) == 0
    out = capsys.readouterr().out
    # THEN it names the stack, shows components with their children and key properties, counts and outputs
    assert out.startswith(f"Stack ml-platform-{stack}: offline plan")
    component_at = out.index("\n+ mlplatform:index:DataLake  data-lake\n")
    assert out.index("\n   + aws:kms/key:Key  data-lake-key\n") > component_at
    assert f"bucket = mlp-{stack}-raw-123456789012-us-east-1" in out
    assert "enableKeyRotation = true" in out
    assert "     5  aws:s3/bucket:Bucket" in out
    assert f"bucketNames.raw = mlp-{stack}-raw-123456789012-us-east-1" in out


def test_plan_as_json_lists_every_resource(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--stack", "dev", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["counts"]["aws:s3/bucket:Bucket"] == 5
    assert len(document["resources"]) == sum(document["counts"].values())


def test_an_unknown_stack_is_a_clear_error_not_a_traceback() -> None:
    # GIVEN the installed console script WHEN asked for a stack that does not exist
    result = subprocess.run(
        [sys.executable, "-m", "mlctl.cli", "plan", "--stack", "qa"],
        capture_output=True,
        text=True,
        check=False,
    )
    # THEN it exits 2 with one line naming the stack and the ones that exist
    assert result.returncode == EXIT_USAGE
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert "unknown stack 'qa': no Pulumi.qa.yaml; available stacks: dev, example-churn, prod" in (
        result.stderr
    )


def test_bad_config_stops_the_program_before_any_resource_is_declared() -> None:
    # GIVEN the prod stack with a single serving instance
    values = {**read_stack_values("prod"), "ml-platform:serving": {"minInstances": 1, "maxInstances": 4}}
    run = OfflineRun("prod", values)
    # WHEN the program runs THEN it fails on the config, and nothing at all was declared
    with pytest.raises(StackConfigError, match="ml-platform:serving.minInstances = 1"):
        run.execute()
    assert run.plan.resources == []


def test_bad_config_in_the_cli_is_reported_by_key(capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    values = {**read_stack_values("dev"), "ml-platform:deployment": {"strategy": "yolo"}}
    monkeypatch.setattr("infra.offline.read_stack_values", lambda stack, root=None: values)
    assert main(["plan", "--stack", "dev"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert (
        "ml-platform:deployment.strategy = 'yolo': Input should be 'all-at-once', 'canary' or 'linear'" in err
    )


def test_plan_reports_the_policy_pack_and_fails_on_a_mandatory_violation(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the dev stack with one bucket's versioning taken out of the program's plan
    import infra.offline as offline_module

    real_run = offline_module.run_offline

    def without_versioning(stack: str, *args: object, **kwargs: object) -> object:
        plan = real_run(stack, *args, **kwargs)  # type: ignore[arg-type]
        plan.resources = [r for r in plan.resources if r.name != "data-lake-raw-versioning"]
        return plan

    monkeypatch.setattr(offline_module, "run_offline", without_versioning)
    # WHEN the plan is printed
    code = main(["plan", "--stack", "dev"])
    out = capsys.readouterr().out
    # THEN the violation sits next to the bucket in the tree, the summary counts it, and the exit is 1
    bucket_at = out.index("+ aws:s3/bucket:Bucket  data-lake-raw\n")
    finding_at = out.index("! mandatory ", bucket_at)
    assert finding_at < out.index("+ ", bucket_at + 1)
    assert "policy pack ml-platform on dev (dev): 1 mandatory" in out
    assert code == 1


def test_a_clean_stack_plans_with_exit_0_and_its_waivers_listed(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--stack", "dev"]) == 0
    out = capsys.readouterr().out
    assert "policy pack ml-platform on dev (dev): 0 mandatory, 0 advisory" in out
    assert "[waived] s3-sse-kms-cmk data-lake-access-logs-encryption" in out
