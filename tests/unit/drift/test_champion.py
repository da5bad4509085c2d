"""Champion vs challenger as pure logic: metric directions, the margin, the replay."""

from __future__ import annotations

import pytest

from handlers.common.contracts import metric_direction
from handlers.registry.champion import PROMOTE, REFUSE, compare, comparison_metadata, replay_comparison


@pytest.mark.parametrize(
    ("champion", "challenger", "expected"),
    [
        ({"accuracy": 0.95}, {"accuracy": 0.945}, PROMOTE),  # within a 0.01 margin
        ({"accuracy": 0.95}, {"accuracy": 0.93}, REFUSE),  # 0.02 worse
        ({"accuracy": 0.95}, {"accuracy": 0.99}, PROMOTE),
        ({"rmse": 50.0}, {"rmse": 50.005}, PROMOTE),
        ({"rmse": 50.0}, {"rmse": 52.0}, REFUSE),  # error-like: higher is worse
        ({"rmse": 50.0}, {"rmse": 40.0}, PROMOTE),
        ({"r2": 0.45, "mae": 40.0}, {"r2": 0.46, "mae": 45.0}, REFUSE),  # one worse metric is enough
    ],
)
def test_the_margin_applies_in_each_metrics_direction(
    champion: dict[str, float], challenger: dict[str, float], expected: str
) -> None:
    assert compare(champion, challenger, margin=0.01).decision == expected


def test_a_refusal_says_which_metric_and_by_how_much() -> None:
    decision = compare({"accuracy": 0.95, "loss": 0.2}, {"accuracy": 0.80, "loss": 0.21}, margin=0.02)
    assert not decision.promote
    assert "accuracy 0.95->0.8 is worse by 0.15 (margin 0.02)" in decision.reason
    assert "loss" not in decision.reason  # 0.01 worse is within the margin
    assert [c.passed for c in decision.checks] == [False, True]


def test_a_challenger_missing_a_metric_is_refused() -> None:
    decision = compare({"accuracy": 0.9}, {"loss": 0.1})
    assert decision.decision == REFUSE
    assert "challenger has no finite accuracy" in decision.reason


def test_metrics_of_unknown_direction_are_not_judged() -> None:
    decision = compare({"accuracy": 0.9, "epochs": 10}, {"accuracy": 0.9, "epochs": 99})
    assert decision.promote
    assert [c.name for c in decision.checks] == ["accuracy"]
    assert compare({"epochs": 10}, {"epochs": 10}).decision == REFUSE  # nothing comparable


@pytest.mark.parametrize(
    ("name", "higher"), [("accuracy", True), ("val_rmse", False), ("test_f1", True), ("x", None)]
)
def test_metric_direction(name: str, higher: bool | None) -> None:
    assert metric_direction(name) is higher


def test_replay_agreement_and_confidence_of_classifiers() -> None:
    champion = [
        {"label": "spam", "confidence": 0.9},
        {"label": "ham", "confidence": 0.8},
        {"label": "ham", "confidence": 0.7},
        {"label": "spam", "confidence": 0.6},
    ]
    challenger = [
        {"label": "spam", "confidence": 0.95},
        {"label": "spam", "confidence": 0.55},
        {"label": "ham", "confidence": 0.75},
        {"label": "spam", "confidence": 0.75},
    ]
    replay = replay_comparison(champion, challenger)
    assert replay.count == 4
    assert replay.agreement_rate == 0.75
    assert replay.champion_mean_confidence == pytest.approx(0.75)
    assert replay.challenger_mean_confidence == pytest.approx(0.75)


def test_replay_of_regressors_compares_values() -> None:
    replay = replay_comparison([{"value": 10.0}, {"value": 20.0}], [{"value": 12.0}, {"value": 19.0}])
    assert replay.mean_abs_difference == pytest.approx(1.5)
    assert replay.agreement_rate is None


def test_low_replay_agreement_refuses_when_asked() -> None:
    replay = replay_comparison([{"label": "a"}, {"label": "b"}], [{"label": "b"}, {"label": "a"}])
    decision = compare({"accuracy": 0.9}, {"accuracy": 0.9}, replay=replay, min_agreement=0.8)
    assert decision.decision == REFUSE
    assert "replay agreement 0.000 < 0.8" in decision.reason
    assert compare({"accuracy": 0.9}, {"accuracy": 0.9}, replay=replay).promote


def test_replays_must_line_up() -> None:
    with pytest.raises(ValueError, match="predictions"):
        replay_comparison([{"label": "a"}], [])


def test_the_recorded_comparison_fits_sagemakers_metadata_limits() -> None:
    decision = compare({"accuracy": 0.99}, {"accuracy": 0.1}, margin=0.0)
    entries = comparison_metadata(decision, "mlp-dev-models/3")
    assert entries["comparison.decision"] == REFUSE
    assert entries["comparison.champion"] == "mlp-dev-models/3"
    assert all(len(k) <= 128 and 0 < len(v) <= 256 for k, v in entries.items())


def test_a_metric_is_judged_in_the_direction_its_report_states() -> None:
    # GIVEN a team's metric whose name says nothing about its direction
    champion, challenger = {"churn_cost": 100.0}, {"churn_cost": 120.0}
    # THEN without a stated direction it is not compared; stated, it is judged that way
    assert compare(champion, challenger).decision == REFUSE  # nothing comparable
    assert compare(champion, challenger, margin=1.0, directions={"churn_cost": False}).decision == REFUSE
    assert compare(champion, challenger, margin=1.0, directions={"churn_cost": True}).decision == PROMOTE
    # AND a stated direction wins over the name's
    assert compare({"accuracy": 0.9}, {"accuracy": 0.5}, directions={"accuracy": False}).promote


def test_versions_are_compared_in_the_directions_their_metadata_records() -> None:
    from handlers.registry.champion import compare_versions
    from handlers.registry.client import ModelVersion

    def version(number: int, value: float) -> ModelVersion:
        metadata = {"metric.churn_cost": repr(value), "direction.churn_cost": "lower"}
        return ModelVersion(
            arn=f"arn:aws:sagemaker:us-east-1:123456789012:model-package/churn/{number}",
            group="churn",
            version=number,
            status="Approved",
            package_status="Completed",
            image_uri=None,
            artifact_uri=None,
            metrics={"churn_cost": value},
            customer_metadata=metadata,
        )

    assert not compare_versions(version(1, 100.0), version(2, 120.0), margin=1.0).promote
    assert compare_versions(version(1, 100.0), version(2, 80.0), margin=1.0).promote
