"""The drift monitor on moto: capture files in SageMaker's format -> metrics, retraining, alerts."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from handlers.monitoring import handler as drift_monitor
from handlers.monitoring.errors import BaselineNotFoundError, DriftConfigurationError
from handlers.monitoring.settings import DriftSettings
from tests.functional.drift.capture import gaussian_rows, write_capture
from tests.functional.drift.conftest import (
    ARTIFACTS,
    CAPTURE_URI,
    ENDPOINT,
    FEATURE_MEANS,
    PIPELINE,
    WINDOW_END,
    DriftWorld,
)

Run = Callable[..., dict[str, Any]]


def confident(count: int, rng: random.Random, low: float = 0.88, high: float = 0.99) -> list[float]:
    return [rng.uniform(low, high) for _ in range(count)]


def test_traffic_like_the_training_data_raises_nothing(world: DriftWorld, run_monitor: Run) -> None:
    # GIVEN three hours of captured traffic drawn from the training distribution, confident answers
    rng = random.Random(1)
    world.capture(gaussian_rows(400, FEATURE_MEANS, rng), confident(400, rng))

    # WHEN the scheduled check runs
    report = run_monitor()

    # THEN it is ok: every PSI under 0.2, no pipeline execution, no alert
    assert report["status"] == "ok"
    variant = report["variants"][0]
    assert variant["captured_records"] == 100  # four instances per request
    assert variant["instances"] == 400
    assert variant["max_psi"] < 0.2
    assert variant["drifted_features"] == []
    assert variant["confidence_status"] == "ok"
    assert world.executions() == []
    assert world.alerts() == []
    # AND the metrics went out, CapturedRecords counting the requests
    assert world.metric("CapturedRecords") == [100.0]
    assert world.metric("DriftedFeatures") == [0.0]
    assert world.metric("MaxFeaturePSI")[0] == pytest.approx(variant["max_psi"])
    assert world.metric("MeanConfidence")[0] == pytest.approx(variant["mean_confidence"])


def test_shifted_features_start_retraining_and_alert(world: DriftWorld, run_monitor: Run) -> None:
    # GIVEN traffic whose second feature moved by 1.5 standard deviations (answers still confident)
    rng = random.Random(2)
    shifted = (FEATURE_MEANS[0], FEATURE_MEANS[1] + 1.5, FEATURE_MEANS[2])
    world.capture(gaussian_rows(400, shifted, rng), confident(400, rng))

    # WHEN the check runs
    report = run_monitor()

    # THEN bmi has drifted (PSI over 0.2, KS p-value tiny) and the others have not
    assert report["status"] == "retrain"
    features = {f["name"]: f for f in report["variants"][0]["features"]}
    assert features["bmi"]["psi"] > 0.2
    assert features["bmi"]["ks_pvalue"] < 1e-6
    assert report["variants"][0]["drifted_features"] == ["bmi"]
    assert world.metric("MaxFeaturePSI")[0] == pytest.approx(features["bmi"]["psi"])
    assert world.metric("DriftedFeatures") == [1.0]
    # AND one pipeline execution started, on the latest data
    executions = world.executions()
    assert len(executions) == 1
    assert report["pipeline_execution_arn"] == executions[0]["PipelineExecutionArn"]
    parameters = world.sagemaker.list_pipeline_parameters_for_execution(
        PipelineExecutionArn=executions[0]["PipelineExecutionArn"]
    )["PipelineParameters"]
    assert parameters == [{"Name": "DatasetVersion", "Value": "latest"}]
    # AND the operators were told why
    (alert,) = world.alerts()
    assert alert["Subject"] == f"[retrain] drift check of {ENDPOINT}"
    message = json.loads(alert["Message"])
    assert message["status"] == "retrain"
    assert "bmi" in message["reason"]
    assert message["pipeline_execution_arn"] == executions[0]["PipelineExecutionArn"]


@pytest.mark.parametrize(
    ("weekly_confidence", "status", "executions", "alerts"),
    # The seed's example: 0.92 ok, 0.90 ok, 0.85 warn (alert only), 0.75 retrain.
    [(0.92, "ok", 0, 0), (0.90, "ok", 0, 0), (0.85, "warn", 0, 1), (0.75, "retrain", 1, 1)],
)
def test_the_seeds_weekly_confidence_reads_ok_ok_warn_retrain(  # noqa: PLR0917 - parametrized
    world: DriftWorld, run_monitor: Run, weekly_confidence: float, status: str, executions: int, alerts: int
) -> None:
    # GIVEN undrifted inputs whose answers average the week's confidence
    rng = random.Random(3)
    world.capture(gaussian_rows(200, FEATURE_MEANS, rng), [weekly_confidence] * 200)

    # WHEN the check runs
    report = run_monitor()

    # THEN the status follows the thresholds (warn 0.88, retrain 0.80), and so do the reactions
    assert report["status"] == status
    assert report["variants"][0]["mean_confidence"] == pytest.approx(weekly_confidence)
    assert report["variants"][0]["drifted_features"] == []
    assert world.metric("MeanConfidence") == [pytest.approx(weekly_confidence)]
    assert len(world.executions()) == executions
    assert len(world.alerts()) == alerts


def test_an_empty_window_is_reported_as_no_data(world: DriftWorld, run_monitor: Run) -> None:
    # GIVEN capture files, all older than the 24-hour window
    rng = random.Random(4)
    world.capture(gaussian_rows(400, FEATURE_MEANS, rng), confident(400, rng), hours_before_end=30)

    # WHEN the check runs
    report = run_monitor()

    # THEN the answer is no-data (never "no drift"): reported, counted as 0 records, no reaction
    assert report["status"] == "no-data"
    (variant,) = report["variants"]
    assert (variant["status"], variant["captured_records"], variant["max_psi"]) == ("no-data", 0, None)
    assert "drift cannot be judged" in report["reason"]
    assert world.metric("CapturedRecords") == [0.0]
    assert world.metric("MaxFeaturePSI") == []
    assert world.executions() == []
    assert world.alerts() == []


def test_an_endpoint_that_never_captured_is_no_data(world: DriftWorld, run_monitor: Run) -> None:
    # GIVEN no capture file at all WHEN the check runs
    report = run_monitor()

    # THEN no-data, with a zero count on the endpoint (no variant is known)
    assert report["status"] == "no-data"
    assert report["variants"] == []
    assert "no capture files" in report["reason"]
    assert world.metric_endpoint_only("CapturedRecords") == [0.0]
    assert world.executions() == []


def test_a_variant_with_too_few_records_is_no_data_with_a_zero_count(
    world: DriftWorld, run_monitor: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the variant is known to the stack but served nothing in the window
    monkeypatch.setenv("VARIANT_NAMES", "AllTraffic")

    # WHEN the check runs
    report = run_monitor()

    # THEN that variant is no-data with CapturedRecords 0, and no PSI is published for it
    assert report["status"] == "no-data"
    assert report["variants"][0]["status"] == "no-data"
    assert "fewer than MIN_RECORDS" in report["variants"][0]["reason"]
    assert world.metric("CapturedRecords") == [0.0]
    assert world.metric("MaxFeaturePSI") == []


def test_a_missing_capture_bucket_is_no_data_not_a_crash(
    world: DriftWorld, run_monitor: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAPTURE_S3_URI", f"s3://no-such-bucket/capture/{ENDPOINT}")
    assert run_monitor()["status"] == "no-data"
    assert world.executions() == []


def test_only_the_window_is_read(world: DriftWorld, run_monitor: Run) -> None:
    # GIVEN drifted traffic two days ago and normal traffic in the last hours
    rng = random.Random(5)
    shifted = (FEATURE_MEANS[0] + 3, FEATURE_MEANS[1], FEATURE_MEANS[2])
    world.capture(gaussian_rows(400, shifted, rng), confident(400, rng), hours_before_end=48)
    world.capture(gaussian_rows(400, FEATURE_MEANS, rng), confident(400, rng), hours_before_end=3)

    # WHEN the check runs THEN only the recent, normal traffic counts
    report = run_monitor()
    assert report["status"] == "ok"
    assert report["variants"][0]["instances"] == 400


def test_a_baseline_inside_the_model_archive_is_found(
    world: DriftWorld, run_monitor: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    import io  # noqa: PLC0415
    import tarfile  # noqa: PLC0415

    # GIVEN model.tar.gz holding the weights and baseline.json, as training writes it
    document = world.s3.get_object(Bucket=ARTIFACTS, Key="models/run-1/baseline.json")["Body"].read()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in (("model.pt", b"\x00" * 64), ("baseline.json", document)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    world.s3.put_object(Bucket=ARTIFACTS, Key="models/run-1/model.tar.gz", Body=buffer.getvalue())
    monkeypatch.setenv("BASELINE_S3_URI", f"s3://{ARTIFACTS}/models/run-1/model.tar.gz")
    rng = random.Random(6)
    world.capture(gaussian_rows(200, FEATURE_MEANS, rng), confident(200, rng))

    # WHEN the check runs THEN it compares with that baseline
    assert run_monitor()["status"] == "ok"


def test_a_missing_model_archive_is_a_configuration_error(
    world: DriftWorld, run_monitor: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A baseline.json that is absent is built from traffic (test_captured_baseline.py); an archive
    # named on purpose that is absent is a mistake.
    monkeypatch.setenv("BASELINE_S3_URI", f"s3://{ARTIFACTS}/models/run-9/model.tar.gz")
    with pytest.raises(BaselineNotFoundError, match="run-9"):
        run_monitor()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ENDPOINT_NAME", ""),
        ("DRIFT_PSI", "high"),
        ("CONFIDENCE_WARN", "0.7"),
        ("CAPTURE_S3_URI", "raw/capture"),
    ],
)
def test_bad_settings_are_refused_by_name(
    world: DriftWorld, run_monitor: Run, monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(DriftConfigurationError, match=name):
        run_monitor()


def test_a_running_retraining_is_not_started_twice(world: DriftWorld) -> None:
    # GIVEN a pipeline whose latest execution is still running (moto finishes executions at once)
    class RunningPipeline:
        started: list[dict[str, Any]] = []

        def list_pipeline_executions(self, **_: Any) -> dict[str, Any]:
            return {
                "PipelineExecutionSummaries": [
                    {"PipelineExecutionArn": "arn:running", "PipelineExecutionStatus": "Executing"}
                ]
            }

        def start_pipeline_execution(self, **request: Any) -> dict[str, Any]:
            self.started.append(request)
            return {"PipelineExecutionArn": "arn:new"}

    rng = random.Random(7)
    world.capture(gaussian_rows(200, FEATURE_MEANS, rng), [0.7] * 200)
    pipeline = RunningPipeline()

    # WHEN the check finds a retrain-level confidence
    report = drift_monitor.check_drift(
        DriftSettings.from_env(),
        now=WINDOW_END,
        s3=world.s3,
        cloudwatch=world.cloudwatch,
        sagemaker=pipeline,  # type: ignore[arg-type]
        sns=world.sns,
    )

    # THEN it points at the running execution instead of starting another, and still alerts
    assert report.status == "retrain"
    assert pipeline.started == []
    assert report.pipeline_already_running
    assert report.pipeline_execution_arn == "arn:running"
    assert report.notified


def test_capture_written_by_the_generator_has_sagemakers_layout(world: DriftWorld) -> None:
    rng = random.Random(8)
    keys = write_capture(
        world.s3,
        CAPTURE_URI,
        ENDPOINT,
        "Canary",
        gaussian_rows(8, FEATURE_MEANS, rng),
        confidences=[0.9] * 8,
        start=WINDOW_END - timedelta(minutes=30),
    )
    prefix = f"capture/{ENDPOINT}/{ENDPOINT}/Canary/2024/06/08/11/"
    assert keys and all(key.startswith(prefix) and key.endswith(".jsonl") for key in keys)
    line = json.loads(
        world.s3.get_object(Bucket=CAPTURE_URI.split("/")[2], Key=keys[0])["Body"].read().splitlines()[0]
    )
    assert line["eventVersion"] == "0"
    assert line["captureData"]["endpointInput"]["mode"] == "INPUT"
    assert line["captureData"]["endpointOutput"]["mode"] == "OUTPUT"
    assert set(line["eventMetadata"]) == {"eventId", "inferenceTime"}


def test_pipeline_name_comes_from_the_environment(world: DriftWorld) -> None:
    assert DriftSettings.from_env().pipeline_name == PIPELINE
