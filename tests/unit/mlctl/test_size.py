"""``mlctl size``: each row of the model-size table, its boundaries, instance counts and the snippet."""

from __future__ import annotations

import argparse
import json
from typing import Any

import pytest
import yaml

from handlers.common.instance_types import GPU_INSTANCE_FAMILIES, instance_family
from infra.stack_config import PROD_MIN_INSTANCES, parse_stack_config
from mlctl.size import LARGE, MASSIVE, MEDIUM, SMALL, Recommendation, add_size_parser, recommend, table_row

BASE = {"aws:region": "us-east-1", "ml-platform:environment": "dev", "ml-platform:namePrefix": "mlp-test"}
PROD_BASE = {
    **BASE,
    "ml-platform:environment": "prod",
    "ml-platform:logRetentionDays": 365,
    "ml-platform:budget": {"monthlyUsd": 100_000},
}


def run_size(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="mlctl")
    add_size_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["size", *argv])
    code = args.handler(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def is_gpu(recommendation: Recommendation) -> bool:
    return instance_family(recommendation.instance_type) in GPU_INSTANCE_FAMILIES


def latency_warnings(recommendation: Recommendation) -> list[str]:
    return [warning for warning in recommendation.warnings if "latency target" in warning]


# --- one test per row of the table -------------------------------------------------------------------


def test_a_small_model_runs_on_cpu() -> None:
    # GIVEN a 50 MB model at 1,000 QPS WHEN it is sized
    recommendation = recommend(50, latency_ms=5, qps=1_000)

    # THEN "CPU is fine": a CPU instance, serving thousands of QPS each
    assert recommendation.row is SMALL
    assert not is_gpu(recommendation) and recommendation.instance.gpus == 0
    assert recommendation.qps_per_instance >= 1_000
    assert "CPU is fine" in recommendation.explanation[0]


def test_a_medium_model_serves_real_time_on_one_gpu() -> None:
    # GIVEN the brief's example: 350 MB, 50 ms, 200 QPS WHEN it is sized for real time
    recommendation = recommend(350, latency_ms=50, qps=200)

    # THEN a single-GPU g4dn/g5 instance, at hundreds of QPS per GPU
    assert recommendation.row is MEDIUM
    assert recommendation.instance.gpus == 1
    assert instance_family(recommendation.instance_type) in {"g4dn", "g5"}
    assert recommendation.qps_per_instance >= 100
    assert not recommendation.warnings


def test_a_medium_model_in_batch_runs_on_cpu() -> None:
    # GIVEN the same model for offline predictions WHEN it is sized with batch
    recommendation = recommend(350, latency_ms=50, qps=200, batch=True)

    # THEN "CPUs for batch", with enough host memory for the model
    assert recommendation.row is MEDIUM
    assert recommendation.instance.gpus == 0
    assert recommendation.instance.memory_gib >= recommendation.memory_needed_gib


def test_a_large_model_gets_a_gpu_with_room_for_it() -> None:
    # GIVEN a 20 GB model WHEN it is sized
    recommendation = recommend(20_000, latency_ms=500, qps=20)

    # THEN "GPUs required": one GPU holds it, so each copy runs on one GPU, at tens of QPS per GPU
    assert recommendation.row is LARGE
    assert is_gpu(recommendation)
    assert recommendation.instance.gpu_memory_per_gpu_gib >= recommendation.memory_needed_gib
    assert not recommendation.sharded
    assert recommendation.qps_per_instance >= 10


def test_a_massive_model_is_sharded_over_a_multi_gpu_instance() -> None:
    # GIVEN a 150 GB model WHEN it is sized
    recommendation = recommend(150_000, latency_ms=3_000, qps=3)

    # THEN "multiple GPUs per prediction": a p4d/p5 whose GPUs together hold the model, and sharding
    assert recommendation.row is MASSIVE
    assert instance_family(recommendation.instance_type) in {"p4d", "p4de", "p5", "p5e", "p5en"}
    assert recommendation.instance.gpus > 1
    assert recommendation.instance.gpu_memory_gib >= recommendation.memory_needed_gib
    assert recommendation.sharded
    assert any("split across" in line for line in recommendation.explanation)


@pytest.mark.parametrize(
    ("size_mb", "row"),
    [
        (99, SMALL),
        (100, MEDIUM),  # Small is "< 100 MB"
        (5_000, MEDIUM),  # 5 GB closes the Medium row
        (5_001, LARGE),
        (100_000, LARGE),  # Massive is "> 100 GB"
        (100_001, MASSIVE),
    ],
)
def test_the_row_boundaries(size_mb: float, row: Any) -> None:
    assert table_row(size_mb) is row
    assert recommend(size_mb, latency_ms=10_000, qps=1).row is row


# --- instance counts and autoscaling -----------------------------------------------------------------


@pytest.mark.parametrize("size_mb", [50, 350, 20_000, 150_000])
def test_prod_gets_at_least_two_instances_for_high_availability(size_mb: float) -> None:
    # GIVEN a tiny load that one instance could serve
    # WHEN it is sized for prod and for dev
    prod = recommend(size_mb, latency_ms=10_000, qps=0.1, environment="prod")
    dev = recommend(size_mb, latency_ms=10_000, qps=0.1, environment="dev")

    # THEN prod keeps two instances (one per Availability Zone) and dev one
    assert prod.min_instances >= PROD_MIN_INSTANCES
    assert prod.max_instances >= prod.min_instances
    assert dev.min_instances == 1


@pytest.mark.parametrize("size_mb", [50, 350, 20_000, 150_000])
def test_the_maximum_grows_with_qps_and_covers_the_peak(size_mb: float) -> None:
    # GIVEN rising peak loads WHEN each is sized
    loads = [1, 10, 100, 1_000, 10_000]
    recommendations = [recommend(size_mb, latency_ms=10_000, qps=qps) for qps in loads]

    # THEN the maximum never shrinks, ends higher than it starts, and at the maximum each instance
    # carries no more than its autoscaling target
    maxima = [r.max_instances for r in recommendations]
    assert maxima == sorted(maxima) and maxima[-1] > maxima[0]
    for qps, r in zip(loads, recommendations, strict=True):
        assert r.max_instances * r.target_invocations_per_instance >= qps * 60


def test_the_autoscaling_target_is_per_minute_and_below_capacity() -> None:
    # GIVEN a medium model WHEN it is sized
    recommendation = recommend(350, latency_ms=50, qps=200)

    # THEN the target (invocations per instance per minute) scales out before an instance saturates
    capacity_per_minute = recommendation.qps_per_instance * 60
    assert 0 < recommendation.target_invocations_per_instance < capacity_per_minute
    assert any("per instance per minute" in line for line in recommendation.explanation)


# --- warnings and fitting ----------------------------------------------------------------------------


@pytest.mark.parametrize(("size_mb", "too_fast_ms", "in_range_ms"), [(350, 5, 50), (20_000, 50, 500)])
def test_a_latency_target_below_the_rows_range_is_warned(
    size_mb: float, too_fast_ms: float, in_range_ms: float
) -> None:
    # GIVEN a latency target below the row's typical range and one inside it
    fast = recommend(size_mb, latency_ms=too_fast_ms, qps=10)
    fine = recommend(size_mb, latency_ms=in_range_ms, qps=10)

    # THEN only the first is warned, naming the row's range
    (warning,) = latency_warnings(fast)
    assert fast.row.latency_range in warning
    assert latency_warnings(fine) == []


def test_batch_predictions_are_not_held_to_a_latency_target() -> None:
    assert latency_warnings(recommend(350, latency_ms=1, qps=10, batch=True)) == []


def test_a_model_too_big_for_one_gpu_gets_a_multi_gpu_instance() -> None:
    # GIVEN a 30 GB model: more than any single GPU in the price table holds
    recommendation = recommend(30_000, latency_ms=500, qps=20)

    # THEN the instance has several GPUs that together hold it, and the model is split across them
    assert recommendation.instance.gpus > 1
    assert recommendation.instance.gpu_memory_per_gpu_gib < recommendation.memory_needed_gib
    gpus_memory = recommendation.gpus_per_copy * recommendation.instance.gpu_memory_per_gpu_gib
    assert gpus_memory >= recommendation.memory_needed_gib
    assert recommendation.sharded


def test_a_model_bigger_than_any_instance_is_warned() -> None:
    recommendation = recommend(2_000_000, latency_ms=10_000, qps=1)
    assert any("does not fit" in warning for warning in recommendation.warnings)


def test_a_cpu_recommendation_for_prod_warns_that_prod_serves_on_gpu() -> None:
    # The prod stack rejects serving.gpu: false, so pasting a CPU snippet there would fail.
    recommendation = recommend(50, latency_ms=5, qps=100, environment="prod")
    assert any("prod" in warning and "gpu" in warning for warning in recommendation.warnings)


@pytest.mark.parametrize("bad", [0, -1, float("nan")])
def test_non_positive_inputs_are_rejected(bad: float) -> None:
    with pytest.raises(ValueError, match="must be a number > 0"):
        recommend(bad, latency_ms=10, qps=10)


# --- the stack-config snippet and the command --------------------------------------------------------


@pytest.mark.parametrize(
    ("size_mb", "environment", "base"), [(350, "dev", BASE), (50, "dev", BASE), (30_000, "prod", PROD_BASE)]
)
def test_the_snippet_is_valid_stack_config(size_mb: float, environment: str, base: dict[str, Any]) -> None:
    # GIVEN a recommendation WHEN its snippet is pasted under config: of a stack file
    recommendation = recommend(size_mb, latency_ms=500, qps=50, environment=environment)
    pasted = yaml.safe_load("config:\n" + recommendation.snippet())["config"]
    config = parse_stack_config({**base, **pasted})

    # THEN the stack loads with exactly the recommended serving settings
    assert config.serving.instance_type == recommendation.instance_type
    assert config.serving.min_instances == recommendation.min_instances
    assert config.serving.max_instances == recommendation.max_instances
    assert config.serving.target_invocations_per_instance == recommendation.target_invocations_per_instance


def test_the_command_prints_the_row_the_reasons_and_the_snippet(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_size(
        ["--model-size-mb", "350", "--latency-ms", "50", "--qps", "200", "--environment", "prod"], capsys
    )
    assert code == 0
    assert "Medium (100 MB - 5 GB)" in out
    assert "ml-platform:serving:" in out and "targetInvocationsPerInstance:" in out


def test_the_command_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_size(
        ["--model-size-mb", "350", "--latency-ms", "50", "--qps", "200", "--json"], capsys
    )
    result = json.loads(out)
    assert code == 0
    assert result["row"]["name"] == "Medium"
    assert result["stack_config"]["ml-platform:serving"]["instanceType"] == result["instance_type"]


def test_a_non_positive_size_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        run_size(["--model-size-mb", "0", "--latency-ms", "50", "--qps", "200"], capsys)
    assert exited.value.code == 2
