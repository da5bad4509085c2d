"""SageMaker script mode in the local runner: a team's bundle runs as the framework toolkit runs it.

The job is described the way the pipeline definition describes it (CreateTrainingJob's request:
``sagemaker_program`` and ``sagemaker_submit_directory`` among the hyperparameters, the bundle in
the ``code`` channel), so a script written for SageMaker runs here unchanged.
"""

from __future__ import annotations

import base64
import hashlib
import json
import textwrap
import zipfile
from pathlib import Path
from typing import Any

import pytest

from emulator.training.errors import InvalidTrainingJobError
from emulator.training.job import JobStatus, TrainingJobSpec
from emulator.training.runner import LocalTrainingRunner
from infra.source_bundle import build_folder_bundle
from tests.functional.training_runner.conftest import BUCKET, ROLE_ARN

BUNDLE_KEY = "code/training/0123/sourcedir.tar.gz"

# Reads every part of the contract a SageMaker script mode script relies on.
TEAM_TRAIN = """
    import argparse, json, os, pathlib, sys
    import teamlib  # the bundle's own module: /opt/ml/code is on the path

    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--learning-rate", type=float)
    parser.add_argument("--balanced", type=str)
    args = parser.parse_args()
    seen = {
        "args": vars(args),
        "hps": json.loads(os.environ["SM_HPS"]),
        "train_files": sorted(p.name for p in pathlib.Path(os.environ["SM_CHANNEL_TRAIN"]).iterdir()),
        "hosts": [json.loads(os.environ["SM_HOSTS"]), os.environ["SM_CURRENT_HOST"]],
        "gpus": os.environ["SM_NUM_GPUS"],
        "cwd_is_code": pathlib.Path.cwd().name == "code",
        "checkpoints": pathlib.Path(os.environ["MLP_SM_ROOT"], "checkpoints").is_dir(),
        "helper": teamlib.VALUE,
    }
    try:
        import tinydep
        seen["requirement"] = tinydep.ANSWER
    except ImportError:
        seen["requirement"] = None
    pathlib.Path(os.environ["SM_MODEL_DIR"], "seen.json").write_text(json.dumps(seen))
"""


def team_bundle(folder: Path, files: dict[str, bytes]) -> bytes:
    """The team's source folder as the Pulumi program bundles it (``infra.source_bundle``)."""
    for name, content in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content)
    return build_folder_bundle(folder, folder.parent / "bundles").path.read_bytes()


def tiny_wheel(folder: Path) -> Path:
    """A wheel of one module, built here: pip installs it from the file, with no network."""
    name, version = "tinydep", "1.0"
    files = {
        "tinydep.py": b"ANSWER = 42\n",
        f"{name}-{version}.dist-info/METADATA": (
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
        ),
        f"{name}-{version}.dist-info/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = [
        f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}"
        for path, data in files.items()
    ]
    record.append(f"{name}-{version}.dist-info/RECORD,,")
    files[f"{name}-{version}.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        for member, data in files.items():
            wheel.writestr(member, data)
    return path


def script_mode_job(
    aws: Any, tmp_path: Path, requirements: str | None, **hyperparameters: str
) -> TrainingJobSpec:
    files = {"train.py": textwrap.dedent(TEAM_TRAIN).encode(), "teamlib.py": b"VALUE = 'from the bundle'\n"}
    if requirements is not None:
        files["requirements.txt"] = requirements.encode()
    aws.put(BUNDLE_KEY, team_bundle(tmp_path / "team-src", files))
    aws.put("data/train/rows.csv", "x,y\n1,2\n")
    request = {
        "AlgorithmSpecification": {"TrainingImage": "image", "TrainingInputMode": "File"},
        "RoleArn": ROLE_ARN,
        "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/models"},
        "HyperParameters": {
            "epochs": "3",
            "learning-rate": "0.01",
            "balanced": "true",
            "sagemaker_program": "train.py",
            "sagemaker_submit_directory": "/opt/ml/input/data/code/sourcedir.tar.gz",
            **hyperparameters,
        },
        "InputDataConfig": [
            {"ChannelName": name, "DataSource": {"S3DataSource": {"S3Uri": uri, "S3DataType": "S3Prefix"}}}
            for name, uri in (
                ("train", f"s3://{BUCKET}/data/train/"),
                ("code", f"s3://{BUCKET}/{BUNDLE_KEY}"),
            )
        ],
        "StoppingCondition": {"MaxRuntimeInSeconds": 600},
    }
    return TrainingJobSpec.from_request("team-job", request)


def test_a_script_mode_entry_point_runs_under_the_training_contract(
    in_process_aws: Any, in_process_runner: LocalTrainingRunner, tmp_path: Path
) -> None:
    # GIVEN a team's bundle whose requirements.txt names a package (a wheel file, no network)
    wheel = tiny_wheel(tmp_path)
    job = script_mode_job(in_process_aws, tmp_path, requirements=f"{wheel}\n")
    # WHEN the runner runs it as the pipeline describes it
    result = in_process_runner.run(job)
    # THEN the toolkit's contract held: the hyperparameters as arguments (JSON-decoded) and in SM_HPS
    # without SageMaker's own keys, the channels, the hosts, /opt/ml/code as the working folder with
    # the bundle's modules and its requirements importable
    assert result.status == JobStatus.COMPLETED, result.failure_reason
    seen = json.loads(in_process_aws.get_tar("models/team-job/output/model.tar.gz")["seen.json"])
    assert seen["args"] == {"epochs": 3, "learning_rate": 0.01, "balanced": "true"}
    assert seen["hps"] == {"epochs": "3", "learning-rate": "0.01", "balanced": "true"}
    assert seen["train_files"] == ["rows.csv"]
    assert seen["hosts"] == [["algo-1"], "algo-1"]
    assert seen["cwd_is_code"] and seen["checkpoints"]
    assert seen["helper"] == "from the bundle"
    assert seen["requirement"] == 42


def test_requirements_that_do_not_install_fail_the_job_with_pips_reason(
    in_process_aws: Any, in_process_runner: LocalTrainingRunner, tmp_path: Path
) -> None:
    # GIVEN a bundle whose requirements name a file that does not exist
    job = script_mode_job(
        in_process_aws, tmp_path, requirements=f"{tmp_path / 'missing-1.0-py3-none-any.whl'}\n"
    )
    # WHEN it runs, THEN the job fails before the script starts, saying why
    result = in_process_runner.run(job)
    assert result.status == JobStatus.FAILED
    assert "InstallRequirementsError" in str(result.failure_reason)
    assert not in_process_aws.keys("models/team-job/output/model.tar.gz")


def test_a_program_missing_from_the_bundle_fails_the_job_naming_it(
    in_process_aws: Any, in_process_runner: LocalTrainingRunner, tmp_path: Path
) -> None:
    job = script_mode_job(in_process_aws, tmp_path, requirements=None, sagemaker_program="trian.py")
    result = in_process_runner.run(job)
    assert result.status == JobStatus.FAILED
    assert "'trian.py' is not in the code bundle" in str(result.failure_reason)


def test_a_training_image_without_a_script_is_refused_naming_what_runs_here(
    in_process_runner: LocalTrainingRunner,
) -> None:
    # GIVEN a job of a team's own image with no script mode (bring your own container)
    request = {
        "AlgorithmSpecification": {"TrainingImage": "123456789012.dkr.ecr.us-east-1.amazonaws.com/team:1"},
        "RoleArn": ROLE_ARN,
        "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/models"},
        "HyperParameters": {"epochs": "3"},
    }
    # THEN it is refused before anything runs, saying why and what does run here
    with pytest.raises(
        InvalidTrainingJobError, match=r"team:1's own entry point does not run on this machine"
    ):
        in_process_runner.run(TrainingJobSpec.from_request("byoc-job", request))
