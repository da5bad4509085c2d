"""``mlctl cost``: the seed's worked example, spot pricing, scheduled runs, endpoint ranges and errors."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from infra.stack_config import load_stack_config, parse_stack_config, project_root
from mlctl.cost import (
    HOURS_PER_MONTH,
    ScheduleError,
    UnknownInstanceTypeError,
    Usage,
    add_cost_parser,
    estimate_monthly_cost,
    load_prices,
    runs_per_month,
)

BASE = {"aws:region": "us-east-1", "ml-platform:environment": "dev", "ml-platform:namePrefix": "mlp-test"}
SEED_EXAMPLE = [
    "--stack", "dev",
    "--training-instance-count", "8",
    "--training-hours", "24",
    "--training-hourly-price", "2.50",
    "--no-spot",
    "--runs-per-month", "1",
    "--serving-instances", "2",
    "--serving-hourly-price", "1.50",
]  # fmt: skip


def run_cost(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="mlctl")
    add_cost_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["cost", *argv])
    code = args.handler(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def stack(**sections: Any) -> Any:
    return parse_stack_config({**BASE, **{f"ml-platform:{key}": value for key, value in sections.items()}})


def test_the_seed_example_is_reproduced_through_the_cli(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN the seed's figures: 8 GPUs x 24 hours x $2.50/hr, and 2 instances x 720 hours x $1.50/hr
    # WHEN mlctl cost runs with them as explicit overrides
    code, out, _ = run_cost([*SEED_EXAMPLE, "--json"], capsys)
    estimate = json.loads(out)

    # THEN one training run costs $480 and the endpoint $2,160 a month, at both ends of its range
    assert code == 0
    assert estimate["training_run"]["cost"] == 480.00
    endpoint = [item for item in estimate["items"] if item["category"] == "endpoint"]
    assert {item["scenario"] for item in endpoint} == {"min", "max"}
    assert all(item["monthly_cost"] == 2160.00 for item in endpoint)


def test_the_seed_figures_and_their_arithmetic_appear_in_the_text_table(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN the seed's overrides WHEN the table is printed
    code, out, _ = run_cost(SEED_EXAMPLE, capsys)

    # THEN both figures are shown with how they were computed
    assert code == 0
    assert "8 instances x 24 hours x $2.50/hr = $480.00 per run" in out
    assert f"2 instances x {HOURS_PER_MONTH} hours x $1.50/hr = $2,160.00/month" in out


def test_spot_training_is_billed_at_the_discounted_rate() -> None:
    # GIVEN the same training job priced with and without managed spot
    prices = load_prices()
    config = stack(training={"instanceType": "ml.p3.2xlarge", "instanceCount": 2, "useSpot": True})
    usage = Usage(training_hours=10, runs_per_month=1)

    # WHEN both are estimated
    spot = estimate_monthly_cost(config, prices, usage).training_run
    on_demand = estimate_monthly_cost(config, prices, replace(usage, use_spot=False)).training_run

    # THEN spot pays the on-demand price less the table's spot discount
    list_price = prices.instance("ml.p3.2xlarge").hourly
    assert on_demand.cost == pytest.approx(2 * 10 * list_price)
    assert spot.cost == pytest.approx(on_demand.cost * (1 - prices.spot_discount))
    assert spot.spot and not on_demand.spot


def test_no_spot_on_the_cli_prices_a_spot_stack_on_demand(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN the dev stack, which trains on spot
    assert load_stack_config("dev").training.use_spot
    common = ["--stack", "dev", "--json", "--training-hours", "4", "--runs-per-month", "1"]

    # WHEN it is estimated with and without --no-spot
    spot = json.loads(run_cost(common, capsys)[1])["training_run"]
    on_demand = json.loads(run_cost([*common, "--no-spot"], capsys)[1])["training_run"]

    # THEN only the default run gets the discount
    assert spot["spot"] and not on_demand["spot"]
    assert spot["cost"] < on_demand["cost"]


@pytest.mark.parametrize(
    ("schedule", "low", "high"),
    [
        ("rate(1 day)", 30, 30),
        ("rate(7 days)", 30 / 7, 30 / 7),
        ("rate(12 hours)", 60, 60),
        ("rate(30 minutes)", 1440, 1440),
        ("cron(0 3 ? * SUN *)", 4.2, 4.4),  # weekly: 52 or 53 Sundays a year
        ("cron(0 12 * * ? *)", 30, 30),  # daily
        ("cron(0/15 * * * ? *)", 2880, 2880),  # every 15 minutes
        ("cron(0 3 1 * ? *)", 0.95, 1.05),  # monthly
        ("cron(0 8 ? * MON-FRI *)", 21, 22),  # weekdays
        ("cron(0 6 ? * 2#1 *)", 0.95, 1.05),  # first Monday of the month
        ("cron(0 6 L * ? *)", 0.95, 1.05),  # last day of the month
        ("cron(0 0 1 1,7 ? *)", 2 / 12 - 0.01, 2 / 12 + 0.01),  # twice a year
    ],
)
def test_runs_per_month_are_counted_from_the_schedule(schedule: str, low: float, high: float) -> None:
    # GIVEN an EventBridge schedule WHEN its runs in a 30-day month are counted
    runs = runs_per_month(schedule)

    # THEN the count matches the calendar
    assert low - 1e-9 <= runs <= high + 1e-9


def test_the_stack_schedule_multiplies_the_cost_of_one_run() -> None:
    # GIVEN a weekly training schedule and no --runs-per-month
    config = stack(training={"schedule": "rate(7 days)", "useSpot": False})
    # WHEN the month is estimated
    estimate = estimate_monthly_cost(config, load_prices(), Usage(training_hours=2))

    # THEN the training line is one run's cost times 30/7 runs
    training = next(item for item in estimate.items if item.category == "training")
    assert estimate.training_run.runs_per_month == pytest.approx(30 / 7)
    assert training.monthly_cost == pytest.approx(estimate.training_run.cost * 30 / 7)
    assert "rate(7 days)" in training.computation


@pytest.mark.parametrize("schedule", ["rate(fortnightly)", "cron(0 3 * *)", "cron(0 25 * * ? *)"])
def test_an_unreadable_schedule_is_an_error_that_points_to_the_override(schedule: str) -> None:
    with pytest.raises(ScheduleError, match=r"--runs-per-month"):
        estimate_monthly_cost(stack(training={"schedule": schedule}), load_prices(), Usage())


def test_endpoints_cost_from_min_to_max_instances_per_variant() -> None:
    # GIVEN two A/B variants, each autoscaled between 2 and 6 instances
    config = stack(
        serving={
            "instanceType": "ml.g5.xlarge",
            "minInstances": 2,
            "maxInstances": 6,
            "variants": [{"name": "a"}, {"name": "b"}],
        },
        deployment={"strategy": "all-at-once"},
    )
    prices = load_prices()

    # WHEN the month is estimated
    estimate = estimate_monthly_cost(config, prices, Usage(runs_per_month=0))

    # THEN each variant has a minimum and a maximum line, and the totals differ by the 4 extra
    # instances per variant running all month
    endpoint = [item for item in estimate.items if item.category == "endpoint"]
    hourly = prices.instance("ml.g5.xlarge").hourly
    assert sorted(item.monthly_cost for item in endpoint) == pytest.approx(
        sorted([2 * HOURS_PER_MONTH * hourly] * 2 + [6 * HOURS_PER_MONTH * hourly] * 2)
    )
    assert estimate.monthly_max - estimate.monthly_min == pytest.approx(2 * 4 * HOURS_PER_MONTH * hourly)


def test_requests_and_storage_scale_with_usage() -> None:
    # GIVEN the same stack at 10x the traffic and storage
    config, prices = stack(), load_prices()
    low = estimate_monthly_cost(config, prices, Usage(requests_per_day=1_000, storage_gb=10))
    high = estimate_monthly_cost(config, prices, Usage(requests_per_day=10_000, storage_gb=100))

    # THEN Lambda, API Gateway and S3 lines grow 10x, and API Gateway is priced per million requests
    for category in ("lambda", "api-gateway", "s3"):
        low_cost = sum(item.monthly_cost for item in low.items if item.category == category)
        high_cost = sum(item.monthly_cost for item in high.items if item.category == category)
        assert high_cost == pytest.approx(10 * low_cost)
    api = next(item for item in high.items if item.category == "api-gateway")
    assert api.monthly_cost == pytest.approx(10_000 * 30 / 1e6 * prices.api_gateway_per_million_requests)


def test_an_unknown_instance_type_is_named_with_the_file_to_add_it_to(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a training instance type the price table lacks
    # WHEN it is estimated
    code, out, err = run_cost(["--stack", "dev", "--training-instance-type", "ml.x9.huge"], capsys)

    # THEN a one-line usage error names the type and the price file
    assert code == 2
    assert out == ""
    assert "ml.x9.huge" in err and "prices.json" in err
    assert len(err.strip().splitlines()) == 1


def test_an_unknown_serving_type_in_a_custom_price_file_names_that_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a price file without the dev stack's serving instance type
    table = json.loads((project_root() / "mlctl" / "prices.json").read_text())
    serving_type = load_stack_config("dev").serving.instance_type
    del table["sagemaker_instances"][serving_type]
    custom = tmp_path / "my-prices.json"
    custom.write_text(json.dumps(table))

    # WHEN the dev stack is estimated with it
    code, _, err = run_cost(["--stack", "dev", "--prices", str(custom)], capsys)

    # THEN the error names the missing type and that file
    assert code == 2
    assert serving_type in err and "my-prices.json" in err


def test_an_explicit_price_makes_an_unlisted_type_usable() -> None:
    estimate = estimate_monthly_cost(
        stack(), load_prices(), Usage(training_instance_type="ml.x9.huge", training_hourly_price=1.0)
    )
    assert estimate.training_run.instance_type == "ml.x9.huge"


def test_unknown_instance_type_error_is_a_lookup_error_naming_the_type() -> None:
    with pytest.raises(UnknownInstanceTypeError, match=r"ml\.x9\.huge"):
        load_prices().instance("ml.x9.huge")


@pytest.mark.parametrize("content", ["{not json", '{"as_of": "2026-11-01"}'])
def test_a_broken_price_file_is_a_one_line_usage_error(
    content: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "prices.json"
    broken.write_text(content)
    code, _, err = run_cost(["--stack", "dev", "--prices", str(broken)], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("name", ["dev", "prod"])
def test_json_output_parses_and_its_totals_add_up(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a shipped stack WHEN it is estimated as JSON
    code, out, _ = run_cost(["--stack", name, "--json"], capsys)
    estimate = json.loads(out)

    # THEN the totals are the sums of the lines that count in each scenario
    assert code == 0
    items = estimate["items"]
    minimum = sum(item["monthly_cost"] for item in items if item["scenario"] in {"both", "min"})
    maximum = sum(item["monthly_cost"] for item in items if item["scenario"] in {"both", "max"})
    assert estimate["monthly_min"] == pytest.approx(minimum, abs=0.05)
    assert estimate["monthly_max"] == pytest.approx(maximum, abs=0.05)
    assert estimate["monthly_min"] <= estimate["monthly_max"]
    assert estimate["prices"]["as_of"]


def test_every_instance_type_the_shipped_stacks_use_has_a_price() -> None:
    # A stack whose instance is missing from the table could not be estimated without overrides.
    prices = load_prices()
    for path in sorted(project_root().glob("Pulumi.*.yaml")):
        config = load_stack_config(path.stem.removeprefix("Pulumi."))
        prices.instance(config.training.instance_type)
        prices.instance(config.serving.instance_type)


def test_the_price_table_describes_the_common_gpu_instances() -> None:
    prices = load_prices()
    p4d = prices.instance("ml.p4d.24xlarge")
    assert (p4d.gpus, p4d.gpu) == (8, "A100")
    # gpu_memory_gib is the whole instance's: 8 x 40 GiB on a p4d.
    assert p4d.gpu_memory_gib == 8 * p4d.gpu_memory_per_gpu_gib == 320
    for name, instance in prices.instances.items():
        assert instance.hourly > 0, name
        assert (instance.gpus == 0) == (instance.gpu_memory_gib == 0), name
    assert 0 < prices.spot_discount < 1
