"""SageMaker script mode on this machine: what the framework images' training toolkit does before
the entry point runs, then the entry point.

A job whose hyperparameters name ``sagemaker_program`` (and that sets no container entry point of
its own) runs as the toolkit runs it in the cloud:

1. the bundle named by ``sagemaker_submit_directory`` (a ``.tar.gz`` in the ``code`` channel, or on
   S3) is unpacked into ``/opt/ml/code``;
2. its ``requirements.txt``, if any, is installed (here into a folder of the job, never into this
   environment), with a time limit; a failure fails the job with pip's last lines;
3. ``python <program> --name value ...`` runs from ``/opt/ml/code`` with the hyperparameters as
   arguments (the ``sagemaker_*`` keys left out, values JSON-decoded as the toolkit does) and the
   ``SM_*`` variables; under ``sagemaker_torch_distributed_enabled`` with several local workers,
   through ``torchrun``.

The bundle and its requirements come first on the path. One difference stays: this environment's
installed packages (torch, and the platform's own, installed for local mode) are importable too,
where the cloud's container has only the image's.
"""

from __future__ import annotations

import os
import subprocess
import tarfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from emulator.container_paths import map_paths
from emulator.training import container
from emulator.training import s3 as s3io
from emulator.training.job import TrainingJobSpec
from training_jobs import sm_env

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

PROGRAM = "sagemaker_program"
SUBMIT_DIRECTORY = "sagemaker_submit_directory"
TORCH_DISTRIBUTED = "sagemaker_torch_distributed_enabled"
REQUIREMENTS_FILE = "requirements.txt"
REQUIREMENTS_TIMEOUT_SECONDS = 600
SM_MODULE_DIR = "SM_MODULE_DIR"


class ScriptModeError(Exception):
    """The toolkit's preparation failed (bundle missing or unreadable, requirements not installed)."""


def is_script_mode(job: TrainingJobSpec) -> bool:
    return not job.container_entrypoint and PROGRAM in job.hyperparameters


def code_dir(paths: sm_env.TrainingPaths) -> Path:
    return paths.root / "code"


def packages_dir(paths: sm_env.TrainingPaths) -> Path:
    return paths.root / "code-packages"


def install_bundle(job: TrainingJobSpec, paths: sm_env.TrainingPaths, s3: S3Client, python: str) -> None:
    """Steps 1 and 2: unpack the bundle into ``/opt/ml/code`` and install its requirements."""
    archive = _bundle_archive(job, paths, s3)
    target = code_dir(paths)
    target.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, "r:gz") as bundle:
            bundle.extractall(target, filter="data")  # "data": no absolute paths, no links out
    except (OSError, tarfile.TarError) as exc:
        raise ScriptModeError(f"{SUBMIT_DIRECTORY} {archive.name} is not a readable .tar.gz: {exc}") from None
    program = job.string_hyperparameters[PROGRAM]
    if not (target / program).is_file():
        raise ScriptModeError(f"{PROGRAM} {program!r} is not in the code bundle")
    if (target / REQUIREMENTS_FILE).is_file():
        _install_requirements(target / REQUIREMENTS_FILE, packages_dir(paths), python)


def command(job: TrainingJobSpec, paths: sm_env.TrainingPaths, python: str) -> list[str]:
    """Step 3: the entry point with the hyperparameters as ``--name value`` arguments."""
    launcher = [python]
    distributed = job.string_hyperparameters.get(TORCH_DISTRIBUTED, "false").lower() == "true"
    if distributed and job.processes > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", "--nnodes", "1"]
        launcher += ["--nproc_per_node", str(job.processes)]
    program = str(code_dir(paths) / job.string_hyperparameters[PROGRAM])
    return [*launcher, program, *container.user_args(job.string_hyperparameters)]


def environment(job: TrainingJobSpec, paths: sm_env.TrainingPaths, base: Mapping[str, str]) -> dict[str, str]:
    """Script mode's variables on top of ``base`` (``container.sagemaker_environment``)."""
    env = dict(base)  # SM_USER_ENTRY_POINT is the program already (TrainingJobSpec.from_request)
    env[SM_MODULE_DIR] = job.string_hyperparameters.get(SUBMIT_DIRECTORY, "")
    env["PYTHONPATH"] = os.pathsep.join([str(code_dir(paths)), str(packages_dir(paths))])
    return env


def _bundle_archive(job: TrainingJobSpec, paths: sm_env.TrainingPaths, s3: S3Client) -> Path:
    submit = job.string_hyperparameters.get(SUBMIT_DIRECTORY)
    if not submit:
        raise ScriptModeError(f"{PROGRAM} is set but {SUBMIT_DIRECTORY} is not")
    if submit.startswith("s3://"):
        local = paths.root / "code-bundle" / "sourcedir.tar.gz"
        local.parent.mkdir(parents=True, exist_ok=True)
        location = s3io.parse_location(submit)
        s3.download_file(location.bucket, location.key, str(local))
        return local
    local = Path(map_paths(submit, {"/opt/ml": paths.root, "/tmp": paths.root / "tmp"}))
    if not local.is_file():
        raise ScriptModeError(f"{SUBMIT_DIRECTORY} {submit} does not exist in the container")
    return local


def _install_requirements(requirements: Path, target: Path, python: str) -> None:
    """``pip install -r`` as the toolkit does, into the job's own folder."""
    target.mkdir(parents=True, exist_ok=True)
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-input"]
    try:
        result = subprocess.run(  # noqa: S603 - the interpreter and pip, with fixed arguments
            [*pip, "--target", str(target), "-r", str(requirements)],
            cwd=requirements.parent,
            capture_output=True,
            text=True,
            timeout=REQUIREMENTS_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ScriptModeError(
            f"InstallRequirementsError: {REQUIREMENTS_FILE} took over {REQUIREMENTS_TIMEOUT_SECONDS} s"
        ) from None
    if result.returncode != 0:
        tail = " | ".join(line for line in result.stderr.strip().splitlines()[-3:])
        raise ScriptModeError(f"InstallRequirementsError: pip install -r {REQUIREMENTS_FILE} failed: {tail}")
