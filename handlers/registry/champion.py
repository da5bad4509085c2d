"""Champion vs challenger: may a newly trained model replace the one in production?

The comparison is pure (:func:`compare`, :func:`replay_comparison`): evaluation metrics of both
models on the same held-out set, and both models' answers on a replay of recently captured
traffic. A challenger is refused when it is worse than the champion by more than ``margin`` on
any shared metric: accuracy-like metrics need ``challenger >= champion - margin``, error-like
ones (rmse, mae, loss) ``challenger <= champion + margin``. :func:`record_decision` writes the
comparison into the challenger's registry entry (``CustomerMetadataProperties["comparison.*"]``)
and rejects it, with the reason as its ``ApprovalDescription``, when refused. A promoted
challenger stays ``PendingManualApproval`` unless the caller asks for approval: approval is what
deploys a model. :func:`record_skip` records a deliberate approval without comparison
(``comparison.decision=skipped``); the deployer compares any approved version that has neither
(``handlers.deployer.gate``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from handlers.common.contracts import metric_direction, recorded_directions
from handlers.registry.client import (
    MAX_METADATA_ENTRIES,
    MAX_METADATA_VALUE_CHARS,
    ModelRegistry,
    ModelVersion,
)
from handlers.registry.errors import RegistryError

if TYPE_CHECKING:
    from mypy_boto3_sagemaker import SageMakerClient

PROMOTE, REFUSE, SKIPPED = "promote", "refuse", "skipped"
COMPARISON_PREFIX = "comparison."


@dataclass(frozen=True)
class MetricCheck:
    """One metric of both models and whether the challenger is within the margin."""

    name: str
    champion: float
    challenger: float
    higher_is_better: bool
    passed: bool

    def describe(self) -> str:
        return f"{self.name} {self.champion:.4g}->{self.challenger:.4g}"


@dataclass(frozen=True)
class ReplayComparison:
    """Both models on the same replayed requests."""

    count: int
    agreement_rate: float | None  # same label (classifiers)
    champion_mean_confidence: float | None
    challenger_mean_confidence: float | None
    mean_abs_difference: float | None  # regressors: mean |champion - challenger|


@dataclass(frozen=True)
class Decision:
    decision: str  # promote / refuse
    reason: str
    margin: float
    checks: list[MetricCheck] = field(default_factory=list)
    replay: ReplayComparison | None = None

    @property
    def promote(self) -> bool:
        return self.decision == PROMOTE


def replay_comparison(
    champion: Sequence[Mapping[str, Any]], challenger: Sequence[Mapping[str, Any]]
) -> ReplayComparison:
    """Agreement and confidence of two models' predictions on the same requests, in order.

    Predictions are the inference handler's items: ``{"label", "confidence"}`` or ``{"value"}``.
    """
    if len(champion) != len(challenger):
        raise ValueError(f"{len(champion)} champion but {len(challenger)} challenger predictions")
    if not champion:
        return ReplayComparison(0, None, None, None, None)
    if all("value" in p for p in (*champion, *challenger)):
        differences = [
            abs(float(a["value"]) - float(b["value"])) for a, b in zip(champion, challenger, strict=True)
        ]
        return ReplayComparison(len(champion), None, None, None, math.fsum(differences) / len(differences))
    agree = sum(a.get("label") == b.get("label") for a, b in zip(champion, challenger, strict=True))
    return ReplayComparison(
        count=len(champion),
        agreement_rate=agree / len(champion),
        champion_mean_confidence=_mean_confidence(champion),
        challenger_mean_confidence=_mean_confidence(challenger),
        mean_abs_difference=None,
    )


def compare_versions(
    serving: ModelVersion,
    challenger: ModelVersion,
    margin: float,
    replay: ReplayComparison | None = None,
) -> Decision:
    """:func:`compare` on two registered versions, each metric judged in the direction their
    evaluation reports state (the challenger's statement wins)."""
    directions = recorded_directions(serving.customer_metadata) | recorded_directions(
        challenger.customer_metadata
    )
    return compare(serving.metrics, challenger.metrics, margin=margin, replay=replay, directions=directions)


def compare(
    champion_metrics: Mapping[str, float],
    challenger_metrics: Mapping[str, float],
    margin: float = 0.01,
    *,
    replay: ReplayComparison | None = None,
    min_agreement: float | None = None,
    directions: Mapping[str, bool] | None = None,
) -> Decision:
    """Promote or refuse the challenger on the champion's metrics (held-out set) and the replay.

    Parameters
    ----------
    champion_metrics, challenger_metrics:
        Metric name -> value on the same held-out set. Every metric of known direction the
        champion has must be present (and finite) for the challenger.
    margin:
        How much worse (absolute) the challenger may be on any one metric.
    min_agreement:
        Optionally, refuse when the two models agree on fewer replayed requests than this.
    directions:
        Metric name -> higher is better, as the evaluation reports state it; a metric not named
        here is judged by its name (accuracy-like or error-like), or skipped when that is unknown.
    """
    if margin < 0 or not math.isfinite(margin):
        raise ValueError("margin must be a finite, non-negative number")
    checks: list[MetricCheck] = []
    problems: list[str] = []
    for name in sorted(champion_metrics):
        direction = (directions or {}).get(name, metric_direction(name))
        if direction is None:
            continue
        champion = float(champion_metrics[name])
        if name not in challenger_metrics or not math.isfinite(float(challenger_metrics[name])):
            problems.append(f"challenger has no finite {name}")
            continue
        challenger = float(challenger_metrics[name])
        passed = challenger >= champion - margin if direction else challenger <= champion + margin
        check = MetricCheck(name, champion, challenger, direction, passed)
        checks.append(check)
        if not passed:
            worse = champion - challenger if direction else challenger - champion
            problems.append(f"{check.describe()} is worse by {worse:.4g} (margin {margin:g})")
    if not checks and not problems:
        problems.append("no shared metric of known direction to compare")
    if (
        min_agreement is not None
        and replay is not None
        and replay.agreement_rate is not None
        and replay.agreement_rate < min_agreement
    ):
        problems.append(f"replay agreement {replay.agreement_rate:.3f} < {min_agreement:g}")
    if problems:
        return Decision(REFUSE, "refused: " + "; ".join(problems), margin, checks, replay)
    summary = ", ".join(check.describe() for check in checks)
    return Decision(PROMOTE, f"promoted: within margin {margin:g} ({summary})", margin, checks, replay)


def comparison_metadata(decision: Decision, champion_label: str | None) -> dict[str, str]:
    """The ``comparison.*`` entries written to the challenger's ``CustomerMetadataProperties``."""
    entries = {
        "decision": decision.decision,
        "champion": champion_label or "none",
        "margin": f"{decision.margin:g}",
        "metrics": "; ".join(check.describe() for check in decision.checks) or "none",
        "reason": decision.reason,
    }
    replay = decision.replay
    if replay is not None and replay.count:
        parts = [f"n={replay.count}"]
        if replay.agreement_rate is not None:
            parts.append(f"agreement={replay.agreement_rate:.4f}")
        if replay.champion_mean_confidence is not None and replay.challenger_mean_confidence is not None:
            parts.append(
                f"confidence={replay.champion_mean_confidence:.4f}->{replay.challenger_mean_confidence:.4f}"
            )
        if replay.mean_abs_difference is not None:
            parts.append(f"mean_abs_diff={replay.mean_abs_difference:.4g}")
        entries["replay"] = " ".join(parts)
    return {f"{COMPARISON_PREFIX}{key}": _fit(value) for key, value in entries.items()}


def record_decision(
    client: SageMakerClient,
    challenger_arn: str,
    decision: Decision,
    champion: ModelVersion | None = None,
    approve_on_promote: bool = False,
) -> ModelVersion:
    """Write the comparison into the challenger's registry entry; reject it when refused.

    Returns the challenger as the registry describes it afterwards.
    """
    registry = ModelRegistry(client)
    current = _write_comparison(
        client, registry, challenger_arn, comparison_metadata(decision, champion.label if champion else None)
    )
    if not decision.promote:
        return registry.reject(current.arn, _fit(decision.reason))
    if approve_on_promote:
        return registry.approve(current.arn, _fit(decision.reason))
    return registry.describe(current.arn)


def record_skip(client: SageMakerClient, version_arn: str, reason: str) -> ModelVersion:
    """Record that the version is approved without a comparison, on purpose (the deployer then
    deploys it as approved instead of comparing it): ``comparison.decision=skipped``."""
    entries = {f"{COMPARISON_PREFIX}decision": SKIPPED, f"{COMPARISON_PREFIX}reason": _fit(reason)}
    return _write_comparison(client, ModelRegistry(client), version_arn, entries)


def _write_comparison(
    client: SageMakerClient, registry: ModelRegistry, arn: str, entries: Mapping[str, str]
) -> ModelVersion:
    """Replace the version's ``comparison.*`` metadata with ``entries``; returns it as described before."""
    current = registry.describe(arn)
    properties = {
        k: v for k, v in current.customer_metadata.items() if not k.startswith(COMPARISON_PREFIX)
    } | dict(entries)
    if len(properties) > MAX_METADATA_ENTRIES:
        properties = dict(list(properties.items())[-MAX_METADATA_ENTRIES:])  # the comparison is newest
    try:
        client.update_model_package(ModelPackageArn=current.arn, CustomerMetadataProperties=properties)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        raise RegistryError(
            f"model version {current.arn!r}: {code}: {error.get('Message', '')}", code
        ) from exc
    return current


def _mean_confidence(predictions: Sequence[Mapping[str, Any]]) -> float | None:
    values = [float(p["confidence"]) for p in predictions if isinstance(p.get("confidence"), int | float)]
    return math.fsum(values) / len(values) if values else None


def _fit(text: str) -> str:
    return text if len(text) <= MAX_METADATA_VALUE_CHARS else text[: MAX_METADATA_VALUE_CHARS - 3] + "..."
