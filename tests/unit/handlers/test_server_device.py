"""The model server's device: resolved once at start, one model copy per GPU and worker, each worker
pinned to its GPU; precision and warm-up settings checked with the others."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from handlers.serving import device
from handlers.serving import server as model_server
from handlers.serving.device import DeviceError, plan_placement
from tests.unit.test_import_boundaries import imported_after


def settings(argv: list[str], env: dict[str, str], gpus: int) -> model_server.ServerSettings:
    return model_server.resolve_settings(model_server.parse_args(argv), env, lambda: gpus)


# --- the assignment (a pure function of the GPU count) ------------------------------------------------


def test_without_a_gpu_auto_serves_on_the_cpu_and_leaves_the_workers_environment_alone():
    placement = plan_placement("auto", 0, workers=None, workers_per_gpu=1)
    assert (placement.device, placement.workers, placement.visible_devices) == ("cpu", 1, (None,))
    assert placement.gpus == 0


def test_with_gpus_auto_runs_workers_per_gpu_on_each_gpu():
    # GIVEN 2 GPUs and 2 workers per GPU
    placement = plan_placement("auto", 2, workers=None, workers_per_gpu=2)
    # THEN 4 workers on cuda, each GPU holding two of them (one model copy each)
    assert (placement.device, placement.workers, placement.gpus) == ("cuda", 4, 2)
    assert sorted(placement.visible_devices) == ["0", "0", "1", "1"]


def test_an_explicit_worker_count_goes_round_the_gpus():
    placement = plan_placement("cuda", 2, workers=3, workers_per_gpu=4)
    assert placement.visible_devices == ("0", "1", "0")


def test_the_supervisors_own_visible_devices_are_shared_out():
    # GIVEN a container that may use GPUs 4 and 6 only (torch there sees two)
    placement = plan_placement("auto", 2, workers=None, workers_per_gpu=1, visible="4, 6")
    # THEN each worker gets one of those, not 0 and 1
    assert placement.visible_devices == ("4", "6")


def test_cpu_forced_on_a_gpu_host_hides_the_gpus_from_every_worker():
    placement = plan_placement("cpu", 8, workers=2, workers_per_gpu=1)
    assert (placement.device, placement.visible_devices) == ("cpu", ("", ""))


@pytest.mark.parametrize(
    ("requested", "gpus", "per_gpu", "message"),
    [
        ("cuda", 0, 1, "MODEL_SERVER_DEVICE=cuda (or --device cuda), but torch sees no GPU"),
        ("tpu", 1, 1, "MODEL_SERVER_DEVICE='tpu' is not one of auto, cpu, cuda"),
        ("auto", 1, 0, "MODEL_SERVER_WORKERS_PER_GPU must be at least 1"),
    ],
)
def test_unusable_device_settings_name_the_setting(requested, gpus, per_gpu, message):
    with pytest.raises(DeviceError, match=message.replace("(", r"\(").replace(")", r"\)")):
        plan_placement(requested, gpus, workers=None, workers_per_gpu=per_gpu)


# --- the settings ----------------------------------------------------------------------------------


def test_gpu_settings_come_from_arguments_then_environment():
    # GIVEN 4 GPUs and 2 workers per GPU from the environment
    env = {"MODEL_SERVER_WORKERS_PER_GPU": "2", "MODEL_SERVER_PRECISION": "bfloat16"}
    from_env = settings([], env, gpus=4)
    # THEN 8 workers, bfloat16, warm-up on
    assert (from_env.device, from_env.workers, from_env.workers_per_gpu) == ("cuda", 8, 2)
    assert (from_env.precision, from_env.warmup) == ("bfloat16", True)
    # GIVEN SageMaker's worker count as well THEN it says how many
    assert settings([], {**env, "SAGEMAKER_MODEL_SERVER_WORKERS": "3"}, gpus=4).workers == 3
    # GIVEN explicit arguments THEN they win
    explicit = settings(["--workers-per-gpu", "1", "--precision", "float16", "--no-warmup"], env, gpus=4)
    assert (explicit.workers, explicit.precision, explicit.warmup) == (4, "float16", False)


def test_a_cpu_device_never_counts_gpus():
    def no_probe() -> int:
        raise AssertionError("counted GPUs for a cpu device")

    chosen = model_server.resolve_settings(
        model_server.parse_args(["--device", "cpu"]), {"MODEL_SERVER_WORKERS_PER_GPU": "3"}, no_probe
    )
    assert (chosen.device, chosen.workers, chosen.visible_devices) == ("cpu", 1, ("",))


@pytest.mark.parametrize("value", ["0", "false", "off", "NO"])
def test_warm_up_is_switched_off_by_its_variable(value):
    assert settings([], {"MODEL_SERVER_WARMUP": value}, gpus=0).warmup is False


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"MODEL_SERVER_PRECISION": "fp8"},
            "MODEL_SERVER_PRECISION='fp8' is not one of float32, float16, bfloat16",
        ),
        ({"MODEL_SERVER_WARMUP": "later"}, "MODEL_SERVER_WARMUP='later' is not one of 1, true"),
        ({"MODEL_SERVER_WORKERS_PER_GPU": "two"}, "MODEL_SERVER_WORKERS_PER_GPU='two' is not a valid int"),
    ],
)
def test_bad_values_are_settings_errors_naming_the_variable(env, message):
    with pytest.raises(model_server.SettingsError) as caught:
        settings([], env, gpus=1)
    assert message in str(caught.value)


def test_cuda_without_a_gpu_is_one_line_and_the_usage_exit_code(monkeypatch, capsys, tmp_path):
    # GIVEN a machine where torch sees no GPU
    monkeypatch.setattr(model_server, "count_gpus", lambda env: 0)
    monkeypatch.setenv("MODEL_SERVER_DEVICE", "cuda")
    # WHEN the server starts
    code = model_server.main(["--model-dir", str(tmp_path)])
    # THEN it refuses in one line naming the setting, before loading anything
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == model_server.EXIT_USAGE
    assert len(lines) == 1
    assert lines[0].startswith(
        "model_server: MODEL_SERVER_DEVICE=cuda (or --device cuda), but torch sees no GPU"
    )


# --- pinning -------------------------------------------------------------------------------------


def test_each_worker_gets_its_own_visible_device(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    chosen = settings(["--workers-per-gpu", "2"], {}, gpus=2)
    seen = []
    for index in range(chosen.workers):
        model_server.pin_worker(chosen, index)
        seen.append(os.environ["CUDA_VISIBLE_DEVICES"])
    assert sorted(seen) == ["0", "0", "1", "1"]


def test_an_auto_cpu_worker_keeps_the_inherited_environment(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "inherited")
    model_server.pin_worker(settings([], {}, gpus=0), 0)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "inherited"


def test_a_worker_told_cuda_that_sees_no_gpu_refuses_to_load(tmp_path, caplog, monkeypatch):
    # GIVEN settings that say cuda, in a process where torch sees no GPU (as a mis-pinned worker)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    chosen = model_server.ServerSettings(model_dir=str(tmp_path), device="cuda")
    # WHEN the worker starts THEN it stops as a model that cannot load, saying why
    with caplog.at_level("CRITICAL", logger="handlers.serving.server"):
        assert model_server.run_worker(chosen, tmp_path) == model_server.EXIT_LOAD_FAILED
    assert "the device is cuda, but torch sees no GPU in this worker" in caplog.text


def test_the_supervisor_never_loads_torch():
    # Workers are pinned through their environment before torch loads, and the OpenMP pools are
    # sized before it loads: the supervisor (and its settings, device and precision code) must not.
    assert "torch" not in imported_after("handlers.serving.server")


# --- counting GPUs -------------------------------------------------------------------------------


def test_no_nvidia_driver_means_no_gpu_without_starting_a_probe(monkeypatch, tmp_path):
    monkeypatch.setattr(device, "NVIDIA_CONTROL_DEVICE", tmp_path / "absent")
    monkeypatch.setattr(device.subprocess, "run", lambda *a, **k: pytest.fail("probe started"))
    assert device.count_gpus() == 0


def test_with_the_driver_present_the_probe_counts_what_the_workers_torch_sees(monkeypatch, tmp_path):
    # GIVEN the driver's control device (faked here, so the probe runs on any machine)
    control = tmp_path / "nvidiactl"
    control.touch()
    monkeypatch.setattr(device, "NVIDIA_CONTROL_DEVICE", control)
    # WHEN the GPUs are counted in a subprocess with this interpreter's torch
    counted = device.count_gpus({**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])})
    # THEN it is the count torch gives in this process
    assert counted == (torch.cuda.device_count() if torch.cuda.is_available() else 0)
