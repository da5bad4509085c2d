"""The container side of a local training job: the /opt/ml tree, its config files and environment.

What SageMaker (and its training toolkit) prepares inside a training container before the
entry point starts, laid out under the local job folder instead of ``/opt/ml``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from emulator.training.job import TrainingJobSpec
from training_jobs import sm_env

# Set by the SageMaker training toolkit beside the names in sm_env.
SM_TRAINING_ENV = "SM_TRAINING_ENV"
SM_HP_PREFIX = "SM_HP_"
SM_USER_ARGS = "SM_USER_ARGS"
SM_OUTPUT_DIR = "SM_OUTPUT_DIR"
SM_INPUT_DIR = "SM_INPUT_DIR"
SM_INPUT_CONFIG_DIR = "SM_INPUT_CONFIG_DIR"
SM_USER_ENTRY_POINT = "SM_USER_ENTRY_POINT"
RESERVED_PREFIX = "sagemaker_"  # SageMaker's own hyperparameters (script mode's program, bundle...)

CURRENT_HOST = "algo-1"


def sagemaker_environment(job: TrainingJobSpec, paths: sm_env.TrainingPaths) -> dict[str, str]:
    """The variables SageMaker's training toolkit sets, pointing into the local job folder. Like the
    toolkit, it keeps SageMaker's own ``sagemaker_*`` hyperparameters out of ``SM_HPS`` and the
    arguments (they stay in ``hyperparameters.json``)."""
    hyperparameters = user_hyperparameters(job.string_hyperparameters)
    channels = {name: str(paths.channel_dir(name)) for name in job.input_channels}
    env = {
        sm_env.ROOT_ENV: str(paths.root),
        sm_env.SM_MODEL_DIR: str(paths.model_dir),
        sm_env.SM_OUTPUT_DATA_DIR: str(paths.output_data_dir),
        SM_OUTPUT_DIR: str(paths.output_dir),
        SM_INPUT_DIR: str(paths.root / "input"),
        SM_INPUT_CONFIG_DIR: str(config_dir(paths)),
        sm_env.SM_CHANNELS: json.dumps(sorted(channels)),
        sm_env.SM_HPS: json.dumps(hyperparameters),
        sm_env.SM_NUM_GPUS: str(gpu_count()),
        sm_env.SM_NUM_CPUS: str(os.cpu_count() or 1),
        sm_env.SM_HOSTS: json.dumps([CURRENT_HOST]),
        sm_env.SM_CURRENT_HOST: CURRENT_HOST,
        SM_USER_ENTRY_POINT: job.entry_point,
        SM_USER_ARGS: json.dumps(user_args(hyperparameters)),
    }
    env.update({sm_env.SM_CHANNEL_PREFIX + name.upper(): path for name, path in channels.items()})
    env.update({SM_HP_PREFIX + key.upper(): value for key, value in hyperparameters.items()})
    env[SM_TRAINING_ENV] = json.dumps(training_env_document(job, paths, env, channels))
    return env


def lay_out(paths: sm_env.TrainingPaths, job: TrainingJobSpec) -> None:
    """The container's tree and its config files, as SageMaker writes them before a job starts."""
    for folder in (paths.model_dir, paths.output_data_dir, paths.checkpoint_dir, config_dir(paths)):
        folder.mkdir(parents=True, exist_ok=True)
    for channel in job.input_channels:
        paths.channel_dir(channel).mkdir(parents=True, exist_ok=True)
    write_json(paths.hyperparameters_file, job.string_hyperparameters)
    write_json(
        config_dir(paths) / "inputdataconfig.json",
        {
            name: {
                "TrainingInputMode": "File",
                "S3DistributionType": "FullyReplicated",
                "RecordWrapperType": "None",
            }
            for name in job.input_channels
        },
    )
    write_json(config_dir(paths) / "resourceconfig.json", resource_config(job))
    if job.checkpoint_s3_uri:
        write_json(
            config_dir(paths) / "checkpointconfig.json",
            {"LocalPath": str(paths.checkpoint_dir), "S3Uri": job.checkpoint_s3_uri},
        )


def resource_config(job: TrainingJobSpec) -> dict[str, Any]:
    return {
        "current_host": CURRENT_HOST,
        "current_instance_type": job.instance_type,
        "current_group_name": "homogeneousCluster",
        "hosts": [CURRENT_HOST],
        "instance_groups": [
            {
                "instance_group_name": "homogeneousCluster",
                "instance_type": job.instance_type,
                "hosts": [CURRENT_HOST],
            }
        ],
        "network_interface_name": "lo",
    }


def training_env_document(
    job: TrainingJobSpec, paths: sm_env.TrainingPaths, env: Mapping[str, str], channels: Mapping[str, str]
) -> dict[str, Any]:
    """``SM_TRAINING_ENV``: the toolkit's one JSON document with everything above."""
    return {
        "job_name": job.job_name,
        "user_entry_point": job.entry_point,
        "hyperparameters": user_hyperparameters(job.string_hyperparameters),
        "channel_input_dirs": dict(channels),
        "current_host": CURRENT_HOST,
        "hosts": [CURRENT_HOST],
        "input_dir": env[SM_INPUT_DIR],
        "input_config_dir": env[SM_INPUT_CONFIG_DIR],
        "model_dir": str(paths.model_dir),
        "output_dir": str(paths.output_dir),
        "output_data_dir": str(paths.output_data_dir),
        "num_gpus": int(env[sm_env.SM_NUM_GPUS]),
        "num_cpus": int(env[sm_env.SM_NUM_CPUS]),
        "resource_config": resource_config(job),
        "input_data_config": {name: {"TrainingInputMode": "File"} for name in channels},
    }


def user_hyperparameters(hyperparameters: Mapping[str, str]) -> dict[str, str]:
    """The hyperparameters a script sees: SageMaker's own ``sagemaker_*`` keys removed."""
    return {key: value for key, value in hyperparameters.items() if not key.startswith(RESERVED_PREFIX)}


def user_args(hyperparameters: Mapping[str, str]) -> list[str]:
    """Hyperparameters as the toolkit passes them to a script: ``--name value``, each value
    JSON-decoded first (``"\"digits\""`` arrives as ``digits``), SageMaker's own keys left out."""
    arguments = []
    for name, text in user_hyperparameters(hyperparameters).items():
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        arguments += [f"--{name}", value if isinstance(value, str) else json.dumps(value)]
    return arguments


def gpu_count() -> int:
    """NVIDIA GPUs the driver lists; read from /proc so the runner never imports torch."""
    gpus = Path("/proc/driver/nvidia/gpus")
    return sum(1 for _ in gpus.iterdir()) if gpus.is_dir() else 0


def config_dir(paths: sm_env.TrainingPaths) -> Path:
    return paths.hyperparameters_file.parent


def write_json(path: Path, document: object) -> None:
    path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
