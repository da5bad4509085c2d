"""PSI, KS and the baseline's bins against small examples computed by hand."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

from handlers.monitoring import stats
from handlers.monitoring.handler import OK, RETRAIN, UNAVAILABLE, WARN, confidence_status
from training_jobs import baselines


def test_psi_of_identical_distributions_is_zero() -> None:
    assert stats.psi([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == 0.0


def test_psi_matches_the_hand_computed_value() -> None:
    # GIVEN baseline bins [0.5, 0.5] and a window [0.25, 0.75]
    # THEN PSI = (0.25-0.5)*ln(0.25/0.5) + (0.75-0.5)*ln(0.75/0.5) = 0.173287 + 0.101366
    assert stats.psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(0.274653, abs=1e-6)


def test_psi_floors_empty_bins_instead_of_going_infinite() -> None:
    # GIVEN a bin the baseline never saw WHEN a window fills it
    value = stats.psi([0.5, 0.5, 0.0], [0.4, 0.4, 0.2])
    # THEN the empty side counts as 1e-4: finite, and large
    expected = 2 * (-0.1 * math.log(0.4 / 0.5)) + (0.2 - 1e-4) * math.log(0.2 / 1e-4)
    assert value == pytest.approx(expected)
    assert value > 1.0


def test_psi_refuses_bins_that_do_not_line_up() -> None:
    with pytest.raises(ValueError, match="bins"):
        stats.psi([0.5, 0.5], [1.0])


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        ([1, 2, 3, 4], [3, 4, 5, 6], 0.5),  # CDFs 0.75 vs 0.25 at 3
        ([1, 2, 3], [4, 5, 6], 1.0),  # disjoint samples
        ([1, 2, 3], [1, 2, 3], 0.0),  # the same sample
        ([0, 0, 0, 1], [0, 1, 1, 1], 0.5),  # ties: 0.75 vs 0.25 after every 0
    ],
)
def test_ks_statistic_matches_hand_computed_cdf_gaps(
    first: list[float], second: list[float], expected: float
) -> None:
    assert stats.ks_statistic(first, second) == pytest.approx(expected)


def test_kolmogorov_survival_at_one_is_the_tabulated_value() -> None:
    # Q_KS(1) = 2 (e^-2 - e^-8 + e^-18 - ...) = 0.2700
    assert stats.kolmogorov_survival(1.0) == pytest.approx(2 * (math.exp(-2) - math.exp(-8)), abs=1e-7)
    assert stats.kolmogorov_survival(1.0) == pytest.approx(0.27, abs=1e-3)
    assert stats.kolmogorov_survival(0.0) == 1.0


def test_ks_p_value_matches_the_hand_computed_asymptotic_value() -> None:
    # GIVEN n = m = 4 and D = 0.5: ne = 2, lambda = (sqrt(2) + 0.12 + 0.11/sqrt(2)) * 0.5 = 0.80600
    statistic, p_value = stats.ks_test([1, 2, 3, 4], [3, 4, 5, 6])
    lam = (math.sqrt(2) + 0.12 + 0.11 / math.sqrt(2)) * 0.5
    # THEN p = Q_KS(0.806) = 2 (e^(-2 l^2) - e^(-8 l^2) + e^(-18 l^2)) = 0.5344
    assert statistic == 0.5
    assert p_value == pytest.approx(
        2 * sum((-1) ** (k - 1) * math.exp(-2 * k * k * lam * lam) for k in (1, 2, 3))
    )
    assert p_value == pytest.approx(0.5344, abs=1e-3)


def test_ks_agrees_with_scipys_kolmogorov_distribution() -> None:
    special = pytest.importorskip("scipy.special")
    for lam in (0.3, 0.8, 1.2, 2.0):
        assert stats.kolmogorov_survival(lam) == pytest.approx(float(special.kolmogorov(lam)), abs=1e-9)


def test_ks_p_value_is_small_for_shifted_samples_and_large_for_the_same_distribution() -> None:
    rng = random.Random(7)
    base = [rng.gauss(0, 1) for _ in range(400)]
    same = [rng.gauss(0, 1) for _ in range(400)]
    shifted = [rng.gauss(1, 1) for _ in range(400)]
    assert stats.ks_test(base, same)[1] > 0.01
    assert stats.ks_test(base, shifted)[1] < 1e-6


@pytest.mark.parametrize(
    ("mean_confidence", "expected"),
    # The seed's weekly example with the stack defaults (warn 0.88, retrain 0.80).
    [(0.92, OK), (0.90, OK), (0.85, WARN), (0.75, RETRAIN), (0.88, OK), (0.80, WARN), (None, UNAVAILABLE)],
)
def test_the_seeds_confidence_sequence_reads_ok_ok_warn_retrain(
    mean_confidence: float | None, expected: str
) -> None:
    assert confidence_status(mean_confidence, warn=0.88, retrain=0.80) == expected


def test_quantile_edges_cut_one_to_ten_into_ten_equal_bins() -> None:
    # GIVEN 1..10 WHEN cut into deciles (inclusive method) THEN 1.9, 2.8, ... 9.1, a value per bin
    edges = baselines.quantile_edges([float(v) for v in range(1, 11)])
    assert edges == pytest.approx([1.9, 2.8, 3.7, 4.6, 5.5, 6.4, 7.3, 8.2, 9.1])
    assert baselines.bin_proportions([float(v) for v in range(1, 11)], edges) == pytest.approx([0.1] * 10)


def test_tied_values_merge_edges_instead_of_making_empty_bins() -> None:
    # GIVEN a pixel that is 0 in 80 % of the images
    values = [0.0] * 80 + [float(v) for v in range(1, 21)]
    edges = baselines.quantile_edges(values)
    assert edges == sorted(set(edges))
    assert len(edges) < 9
    assert sum(baselines.bin_proportions(values, edges)) == pytest.approx(1.0)


def test_the_monitor_bins_values_exactly_as_the_baseline_does() -> None:
    # The two copies (training container and Lambda share no code) must agree, edges included.
    rng = random.Random(3)
    values = [round(rng.gauss(0, 1), 1) for _ in range(500)]
    edges = baselines.quantile_edges(values)
    probe = [*values, *edges, -99.0, 99.0]
    assert baselines.bin_proportions(probe, edges) == stats.bin_proportions(probe, edges)


def test_baseline_document_describes_each_feature_and_the_confidence(tmp_path: Path) -> None:
    # GIVEN 100 rows of two features and validation confidences
    rows = [(float(i), float(i % 10)) for i in range(100)]
    path = baselines.write_baseline(tmp_path, rows, [0.95, 0.85, 0.75, 0.65], feature_names=["age", "bmi"])
    document = baselines.read_baseline(path)

    # THEN each feature has its bins, mean, std, count and a sorted KS sample
    assert path.name == "baseline.json"
    assert document["feature_names"] == ["age", "bmi"]
    age = document["features"]["age"]
    assert len(age["edges"]) == 9
    assert age["proportions"] == pytest.approx([0.1] * 10)
    assert age["mean"] == pytest.approx(49.5)
    assert age["std"] == pytest.approx(28.866, abs=1e-3)
    assert age["count"] == 100
    assert age["sample"] == sorted(age["sample"])
    assert document["features"]["bmi"]["mean"] == pytest.approx(4.5)
    # AND the confidence histogram has fixed bins over [0, 1]
    confidence = document["confidence"]
    assert confidence["mean"] == pytest.approx(0.8)
    assert confidence["proportions"][6:10] == pytest.approx([0.25, 0.25, 0.25, 0.25])


def test_text_baselines_use_length_features() -> None:
    document = baselines.compute_baseline(["win a free prize now", "see you at lunch"])
    assert document["feature_names"] == ["text_chars", "text_words"]
    assert document["features"]["text_words"]["mean"] == pytest.approx(4.5)
    assert document["confidence"] is None


def test_the_ks_sample_is_bounded_and_keeps_the_extremes() -> None:
    values = [float(v) for v in range(10_000)]
    sample = baselines.order_sample(values)
    assert len(sample) == baselines.SAMPLE_SIZE
    assert (sample[0], sample[-1]) == (0.0, 9999.0)


@pytest.mark.parametrize("bad", [[], [(1.0, 2.0), (1.0,)], [(float("nan"), 1.0)]])
def test_unusable_training_rows_are_refused(bad: list[tuple[float, ...]]) -> None:
    with pytest.raises(ValueError):
        baselines.compute_baseline(bad)
