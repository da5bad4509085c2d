"""Champion vs challenger against the registry on moto: the comparison is recorded, a worse model rejected."""

from __future__ import annotations

from typing import Any

import pytest

from handlers.registry.champion import compare, record_decision, replay_comparison
from handlers.registry.client import APPROVED, PENDING, REJECTED, ModelRegistry, ModelVersion
from tests.functional.conftest import ARTIFACTS, GROUP, IMAGE


def register(client: Any, run: int, accuracy: float) -> ModelVersion:
    return ModelRegistry(client).register(
        GROUP,
        f"{ARTIFACTS}/run-{run}/model.tar.gz",
        IMAGE,
        dataset_version=f"2024-06-0{run}T00-00-00Z",
        metrics={"accuracy": accuracy, "loss": 0.2},
        model_name="digits-cnn",
        task="digits",
    )


def test_a_worse_challenger_is_rejected_with_the_reason_recorded(sagemaker: Any) -> None:
    # GIVEN an approved champion at 0.95 accuracy and a challenger at 0.80
    registry = ModelRegistry(sagemaker)
    champion = registry.approve(register(sagemaker, 1, 0.95).arn, "first model")
    challenger = register(sagemaker, 2, 0.80)
    replay = replay_comparison(
        [{"label": "3", "confidence": 0.97}, {"label": "5", "confidence": 0.91}],
        [{"label": "3", "confidence": 0.62}, {"label": "8", "confidence": 0.55}],
    )

    # WHEN the gate compares them and records the decision
    decision = compare(champion.metrics, challenger.metrics, margin=0.01, replay=replay)
    recorded = record_decision(sagemaker, challenger.arn, decision, champion=champion)

    # THEN the challenger is Rejected, the reason is its approval description
    assert not decision.promote
    assert recorded.status == REJECTED
    assert recorded.approval_description is not None
    assert "accuracy 0.95->0.8 is worse by 0.15" in recorded.approval_description
    # AND the comparison sits in its metadata, next to what training recorded
    metadata = recorded.customer_metadata
    assert metadata["comparison.decision"] == "refuse"
    assert metadata["comparison.champion"] == f"{GROUP}/1"
    assert metadata["comparison.replay"] == "n=2 agreement=0.5000 confidence=0.9400->0.5850"
    assert recorded.metrics["accuracy"] == pytest.approx(0.80)
    assert recorded.dataset_version == "2024-06-02T00-00-00Z"
    # AND the champion is untouched
    assert registry.describe(champion.arn).status == APPROVED


def test_a_good_challenger_is_recorded_and_left_for_approval(sagemaker: Any) -> None:
    registry = ModelRegistry(sagemaker)
    champion = registry.approve(register(sagemaker, 1, 0.95).arn, "first model")
    challenger = register(sagemaker, 2, 0.96)

    decision = compare(champion.metrics, challenger.metrics, margin=0.01)
    recorded = record_decision(sagemaker, challenger.arn, decision, champion=champion)

    assert decision.promote
    assert recorded.status == PENDING  # approval is what deploys: a person (or the caller) decides
    assert recorded.customer_metadata["comparison.decision"] == "promote"
    assert "accuracy 0.95->0.96" in recorded.customer_metadata["comparison.metrics"]


def test_promotion_can_approve_when_the_caller_asks(sagemaker: Any) -> None:
    registry = ModelRegistry(sagemaker)
    champion = registry.approve(register(sagemaker, 1, 0.95).arn, "first model")
    challenger = register(sagemaker, 2, 0.95)

    recorded = record_decision(
        sagemaker,
        challenger.arn,
        compare(champion.metrics, challenger.metrics),
        champion,
        approve_on_promote=True,
    )

    assert recorded.status == APPROVED
    assert recorded.approval_description is not None
    assert recorded.approval_description.startswith("promoted: within margin")
