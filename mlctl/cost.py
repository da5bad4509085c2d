"""``mlctl cost``: a stack's monthly AWS bill, estimated line by line from a dated price table.

Each line item says what it counts, its unit price and how the figure was computed, so an estimate
can be checked by hand. Prices come from ``mlctl/prices.json`` (approximate us-east-1 on-demand list
prices, dated ``as_of``) or from ``--prices PATH``; explicit overrides (``--training-hourly-price``...)
replace what the table or the stack says, which is how this worked example is reproduced::

    8 x A100 GPUs x 24 hours x $2.50/hr = $480               (one training run)
    2 instances x 720 hours x $1.50/hr = $2,160/month         (the endpoint)

A month is 720 hours (30 days), the convention of that example, everywhere: endpoint hours, Lambda
requests and the number of scheduled training runs.
"""

from __future__ import annotations

import argparse
import calendar
import datetime as dt
import json
import math
import re
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from infra.stack_config import StackConfig, load_stack_config

EXIT_OK = 0
EXIT_USAGE = 2  # the CLI's exit code for a request it cannot serve as asked (mlctl/cli.py)

HOURS_PER_MONTH = 720
DAYS_PER_MONTH = HOURS_PER_MONTH // 24
DEFAULT_PRICES = Path(__file__).with_name("prices.json")
DEFAULT_REQUESTS_PER_DAY = 10_000
DEFAULT_STORAGE_GB = 50.0
# The API Lambda waits for the endpoint synchronously, so it is billed for about the model latency
# plus its own overhead.
DEFAULT_LAMBDA_DURATION_MS = 100.0
# Cron schedules are counted over a whole non-leap year, so months of 28 to 31 days and weekdays
# average out; the year field of the expression is ignored.
_REFERENCE_YEAR = 2025

Scenario = Literal["both", "min", "max"]


class PriceTableError(ValueError):
    """The price file is missing, unreadable or lacks a key the estimate needs."""


class UnknownInstanceTypeError(LookupError):
    """An instance type has no row in the price table."""

    def __init__(self, instance_type: str, source: str, hint: str = "") -> None:
        self.instance_type = instance_type
        self.source = source
        super().__init__(
            f"unknown instance type {instance_type!r}: no price for it in {source}; add a row for it under "
            f'"sagemaker_instances" in {source}{hint}'
        )


class ScheduleError(ValueError):
    """A schedule expression this module cannot count runs for."""


@dataclass(frozen=True)
class InstancePrice:
    hourly: float
    vcpus: int
    memory_gib: float
    gpus: int
    gpu: str | None
    gpu_memory_gib: float

    @property
    def gpu_memory_per_gpu_gib(self) -> float:
        return self.gpu_memory_gib / self.gpus if self.gpus else 0.0


@dataclass(frozen=True)
class PriceTable:
    as_of: str
    currency: str
    source: str  # where the prices were read from, named in errors and in the output
    instances: dict[str, InstancePrice]
    spot_discount: float
    lambda_per_million_requests: float
    lambda_per_gb_second: float
    api_gateway_per_million_requests: float
    s3_per_gb_month: float

    def instance(self, instance_type: str, hint: str = "") -> InstancePrice:
        try:
            return self.instances[instance_type]
        except KeyError:
            raise UnknownInstanceTypeError(instance_type, self.source, hint) from None


def load_prices(path: Path | None = None) -> PriceTable:
    """Read a price table; ``None`` reads the one shipped next to this module."""
    file = path or DEFAULT_PRICES
    source = "mlctl/prices.json" if path is None else str(path)
    try:
        document = json.loads(file.read_text())
    except OSError as exc:
        raise PriceTableError(f"cannot read price table {source}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise PriceTableError(f"price table {source} is not valid JSON: {exc}") from None
    try:
        instances = {
            name: InstancePrice(
                hourly=float(row["hourly"]),
                vcpus=int(row.get("vcpus", 0)),
                memory_gib=float(row.get("memory_gib", 0)),
                gpus=int(row.get("gpus", 0)),
                gpu=row.get("gpu"),
                gpu_memory_gib=float(row.get("gpu_memory_gib", 0)),
            )
            for name, row in document["sagemaker_instances"].items()
        }
        table = PriceTable(
            as_of=str(document["as_of"]),
            currency=str(document["currency"]),
            source=source,
            instances=instances,
            spot_discount=float(document["spot_discount"]),
            lambda_per_million_requests=float(document["lambda"]["per_million_requests"]),
            lambda_per_gb_second=float(document["lambda"]["per_gb_second"]),
            api_gateway_per_million_requests=float(document["api_gateway_rest"]["per_million_requests"]),
            s3_per_gb_month=float(document["s3_standard_per_gb_month"]),
        )
    except KeyError as exc:
        raise PriceTableError(f"price table {source} lacks the key {exc.args[0]!r}") from None
    except (TypeError, ValueError, AttributeError) as exc:
        raise PriceTableError(f"price table {source} has a malformed value: {exc}") from None
    if not 0 <= table.spot_discount < 1:
        raise PriceTableError(f"price table {source}: spot_discount must be in [0, 1), a fraction saved")
    return table


# --- runs per month from an EventBridge schedule ---------------------------------------------------

_RATE = re.compile(r"rate\(\s*(\d+)\s+(minutes?|hours?|days?)\s*\)")
_RATE_MINUTES = {"minute": 1, "hour": 60, "day": 24 * 60}
_MONTHS = {name.upper(): number for number, name in enumerate(calendar.month_abbr) if name}
_WEEKDAYS = {"SUN": 1, "MON": 2, "TUE": 3, "WED": 4, "THU": 5, "FRI": 6, "SAT": 7}
_DayRule = Callable[[dt.date], bool]


def runs_per_month(schedule: str) -> float:
    """How often an EventBridge ``rate(...)`` or ``cron(...)`` expression fires in a 30-day month."""
    expression = schedule.strip()
    rate = _RATE.fullmatch(expression)
    if rate:
        value, unit = int(rate.group(1)), rate.group(2).rstrip("s")
        if value <= 0:
            raise ScheduleError(f"schedule {schedule!r}: the rate must be positive")
        return HOURS_PER_MONTH * 60 / (value * _RATE_MINUTES[unit])
    cron = re.fullmatch(r"cron\((.+)\)", expression)
    if not cron:
        raise ScheduleError(f"schedule {schedule!r} is neither rate(...) nor cron(...)")
    fields = cron.group(1).split()
    if len(fields) != 6:
        raise ScheduleError(
            f"schedule {schedule!r}: EventBridge cron has 6 fields "
            "(minutes hours day-of-month month day-of-week year)"
        )
    try:
        minutes = _values(fields[0], 0, 59, {})
        hours = _values(fields[1], 0, 23, {})
        months = _values(fields[3], 1, 12, _MONTHS)
        day_of_month, day_of_week = _day_of_month_rule(fields[2]), _day_of_week_rule(fields[4])
    except ValueError as exc:
        raise ScheduleError(f"schedule {schedule!r}: {exc}") from None
    days_per_year = 0
    day = dt.date(_REFERENCE_YEAR, 1, 1)
    while day.year == _REFERENCE_YEAR:
        if day.month in months and day_of_month(day) and day_of_week(day):
            days_per_year += 1
        day += dt.timedelta(days=1)
    year_days = 366 if calendar.isleap(_REFERENCE_YEAR) else 365
    return days_per_year / year_days * DAYS_PER_MONTH * len(hours) * len(minutes)


def _number(token: str, names: dict[str, int]) -> int:
    if token.upper() in names:
        return names[token.upper()]
    if not token.isdigit():
        raise ValueError(f"cannot read {token!r}")
    return int(token)


def _values(spec: str, low: int, high: int, names: dict[str, int]) -> set[int]:
    """The values a cron field allows: ``*``, ``?``, lists, ranges and ``/`` steps."""
    values: set[int] = set()
    for part in spec.split(","):
        base, _, step_text = part.partition("/")
        step = _number(step_text, {}) if step_text else 1
        if base in {"*", "?"}:
            start, end = low, high
        elif "-" in base:
            first, last = base.split("-", 1)
            start, end = _number(first, names), _number(last, names)
        else:
            start = _number(base, names)
            end = high if step_text else start  # "5/15": from 5, every 15
        if not low <= start <= end <= high or step <= 0:
            raise ValueError(f"{part!r} is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return values


def _last_day(day: dt.date) -> int:
    return calendar.monthrange(day.year, day.month)[1]


def _eventbridge_weekday(day: dt.date) -> int:
    return (day.weekday() + 1) % 7 + 1  # Python counts Monday as 0; EventBridge counts SUN as 1


def _day_of_month_rule(spec: str) -> _DayRule:
    if spec in {"?", "*"}:
        return lambda day: True
    if spec in {"L", "LW"}:
        return lambda day: day.day == _last_day(day)
    if spec.endswith("W"):
        # "15W" is the weekday nearest the 15th: the same count of runs as the 15th itself.
        target = _number(spec[:-1], {})
        return lambda day: day.day == target
    allowed = _values(spec, 1, 31, {})
    return lambda day: day.day in allowed


def _day_of_week_rule(spec: str) -> _DayRule:
    if spec in {"?", "*"}:
        return lambda day: True
    if "#" in spec:
        weekday_text, nth_text = spec.split("#", 1)
        weekday, nth = _number(weekday_text, _WEEKDAYS), _number(nth_text, {})
        return lambda day: _eventbridge_weekday(day) == weekday and (day.day - 1) // 7 + 1 == nth
    if spec.endswith("L"):
        weekday = _number(spec[:-1], _WEEKDAYS)
        return lambda day: _eventbridge_weekday(day) == weekday and day.day + 7 > _last_day(day)
    allowed = _values(spec, 1, 7, _WEEKDAYS)
    return lambda day: _eventbridge_weekday(day) in allowed


# --- the estimate ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    """What the stack config cannot say: how much the platform is used, and explicit overrides.

    ``None`` means "from the stack config" (or, for prices, from the price table).
    """

    runs_per_month: float | None = None  # None: counted from training.schedule
    training_hours: float | None = None  # per run; None: training.maxRuntimeSeconds (the upper bound)
    requests_per_day: float = DEFAULT_REQUESTS_PER_DAY
    storage_gb: float = DEFAULT_STORAGE_GB
    lambda_duration_ms: float = DEFAULT_LAMBDA_DURATION_MS
    training_instance_type: str | None = None
    training_instance_count: int | None = None
    training_hourly_price: float | None = None  # on-demand USD per instance-hour, before spot
    serving_hourly_price: float | None = None
    serving_instances: int | None = None  # sets both the minimum and the maximum per variant
    use_spot: bool | None = None  # None: training.useSpot


@dataclass(frozen=True)
class LineItem:
    """One figure of the bill. ``scenario`` says which total it counts in: always, minimum or maximum."""

    category: str
    name: str
    quantity: float
    unit: str
    unit_price: float
    monthly_cost: float
    computation: str
    scenario: Scenario = "both"


@dataclass(frozen=True)
class TrainingRun:
    instance_type: str
    instance_count: int
    hours: float
    hourly_price: float  # what one instance-hour is billed, spot discount included
    spot: bool
    runs_per_month: float
    runs_source: str

    @property
    def cost(self) -> float:
        return self.instance_count * self.hours * self.hourly_price


@dataclass(frozen=True)
class CostEstimate:
    stack: str
    region: str
    prices_as_of: str
    currency: str
    prices_source: str
    training_run: TrainingRun
    items: tuple[LineItem, ...]
    budget_monthly: float | None
    assumptions: tuple[str, ...] = field(default=())

    def _total(self, scenario: Scenario) -> float:
        return sum(item.monthly_cost for item in self.items if item.scenario in {"both", scenario})

    @property
    def monthly_min(self) -> float:
        return self._total("min")

    @property
    def monthly_max(self) -> float:
        return self._total("max")


def estimate_monthly_cost(config: StackConfig, prices: PriceTable, usage: Usage) -> CostEstimate:
    """The monthly bill of ``config`` under ``usage``: training, endpoints, Lambda, API Gateway, S3."""
    run = _training_run(config, prices, usage)
    items = [
        _training_item(run),
        *_endpoint_items(config, prices, usage),
        *_request_items(config, prices, usage),
    ]
    items.append(
        LineItem(
            category="s3",
            name="S3 Standard storage",
            quantity=usage.storage_gb,
            unit="GB-month",
            unit_price=prices.s3_per_gb_month,
            monthly_cost=usage.storage_gb * prices.s3_per_gb_month,
            computation=f"{_n(usage.storage_gb)} GB x {_price(prices.s3_per_gb_month)}/GB-month",
        )
    )
    assumptions = (
        f"a month is {HOURS_PER_MONTH} hours ({DAYS_PER_MONTH} days)",
        f"training: {_n(run.hours)} h per run"
        + (
            " (--training-hours)"
            if usage.training_hours is not None
            else " (training.maxRuntimeSeconds, the cap)"
        ),
        f"training: {_n(run.runs_per_month)} runs per month ({run.runs_source})",
        f"requests: {_n(usage.requests_per_day)} per day (--requests-per-day), "
        f"Lambda {_n(usage.lambda_duration_ms)} ms each (--lambda-duration-ms)",
        f"storage: {_n(usage.storage_gb)} GB in S3 Standard (--storage-gb)",
        "not included: taxes, data transfer, CloudWatch, KMS, ECR, EBS volumes, free tiers",
    )
    return CostEstimate(
        stack=config.name_prefix,
        region=config.region,
        prices_as_of=prices.as_of,
        currency=prices.currency,
        prices_source=prices.source,
        training_run=run,
        items=tuple(items),
        budget_monthly=config.budget.monthly_usd,
        assumptions=assumptions,
    )


def _training_run(config: StackConfig, prices: PriceTable, usage: Usage) -> TrainingRun:
    training = config.training
    instance_type = usage.training_instance_type or training.instance_type
    if usage.training_hourly_price is not None:
        on_demand = usage.training_hourly_price
    else:
        on_demand = prices.instance(instance_type, ", or pass --training-hourly-price").hourly
    spot = training.use_spot if usage.use_spot is None else usage.use_spot
    if usage.runs_per_month is not None:
        runs, runs_source = usage.runs_per_month, "--runs-per-month"
    else:
        try:
            runs = runs_per_month(training.schedule)
        except ScheduleError as exc:
            raise ScheduleError(f"{exc}; pass --runs-per-month") from None
        runs_source = f"schedule {training.schedule}"
    return TrainingRun(
        instance_type=instance_type,
        instance_count=usage.training_instance_count or training.instance_count,
        hours=usage.training_hours
        if usage.training_hours is not None
        else training.max_runtime_seconds / 3600,
        hourly_price=on_demand * (1 - prices.spot_discount) if spot else on_demand,
        spot=spot,
        runs_per_month=runs,
        runs_source=runs_source,
    )


def _training_item(run: TrainingRun) -> LineItem:
    spot_note = " (managed spot)" if run.spot else ""
    per_run = (
        f"{_count(run.instance_count, 'instance')} x {_n(run.hours)} hours x {_price(run.hourly_price)}/hr"
        f"{spot_note} = {_usd(run.cost)} per run"
    )
    return LineItem(
        category="training",
        name=f"training {run.instance_type}",
        quantity=run.instance_count * run.hours * run.runs_per_month,
        unit="instance-hours",
        unit_price=run.hourly_price,
        monthly_cost=run.cost * run.runs_per_month,
        computation=f"{per_run}; x {_n(run.runs_per_month)} runs/month ({run.runs_source})",
    )


def _endpoint_items(config: StackConfig, prices: PriceTable, usage: Usage) -> list[LineItem]:
    serving = config.serving
    if usage.serving_hourly_price is not None:
        hourly = usage.serving_hourly_price
    else:
        hourly = prices.instance(serving.instance_type, ", or pass --serving-hourly-price").hourly
    low = usage.serving_instances or serving.min_instances
    high = usage.serving_instances or serving.max_instances
    items = []
    # Each variant has its own autoscaling target between min and max instances (infra/serving.py).
    for variant in serving.variants:
        for scenario, count in (("min", low), ("max", high)):
            hours = count * HOURS_PER_MONTH
            cost = hours * hourly
            items.append(
                LineItem(
                    category="endpoint",
                    name=f"endpoint {variant.name} {serving.instance_type} ({scenario})",
                    quantity=hours,
                    unit="instance-hours",
                    unit_price=hourly,
                    monthly_cost=cost,
                    computation=f"{_count(count, 'instance')} x {HOURS_PER_MONTH} hours x {_price(hourly)}/hr"
                    f" = {_usd(cost)}/month",
                    scenario="min" if scenario == "min" else "max",
                )
            )
    return items


def _request_items(config: StackConfig, prices: PriceTable, usage: Usage) -> list[LineItem]:
    millions = usage.requests_per_day * DAYS_PER_MONTH / 1e6
    gb_seconds = usage.requests_per_day * DAYS_PER_MONTH * usage.lambda_duration_ms / 1000
    gb_seconds *= config.api.lambda_memory_mb / 1024
    return [
        LineItem(
            category="lambda",
            name="Lambda requests",
            quantity=millions,
            unit="million requests",
            unit_price=prices.lambda_per_million_requests,
            monthly_cost=millions * prices.lambda_per_million_requests,
            computation=f"{_n(usage.requests_per_day)}/day x {DAYS_PER_MONTH} days = {_n(millions)} M"
            f" x {_price(prices.lambda_per_million_requests)}/M",
        ),
        LineItem(
            category="lambda",
            name="Lambda duration",
            quantity=gb_seconds,
            unit="GB-seconds",
            unit_price=prices.lambda_per_gb_second,
            monthly_cost=gb_seconds * prices.lambda_per_gb_second,
            computation=f"{_n(millions)} M requests x {_n(usage.lambda_duration_ms)} ms x "
            f"{config.api.lambda_memory_mb} MB = {_n(gb_seconds)} GB-s",
        ),
        LineItem(
            category="api-gateway",
            name="API Gateway REST requests",
            quantity=millions,
            unit="million requests",
            unit_price=prices.api_gateway_per_million_requests,
            monthly_cost=millions * prices.api_gateway_per_million_requests,
            computation=f"{_n(millions)} M x {_price(prices.api_gateway_per_million_requests)}/M",
        ),
    ]


# --- output ----------------------------------------------------------------------------------------


def _usd(amount: float) -> str:
    return f"${amount:,.2f}"


def _price(amount: float) -> str:
    """A unit price with the digits the table has: $0.736, $2.50, $0.0000166667."""
    if 0 < abs(amount) < 0.01:
        return f"${amount:.10f}".rstrip("0")
    text = f"{amount:,.4f}".rstrip("0")
    return "$" + (text + "0" if len(text.partition(".")[2]) < 2 else text)


def _n(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def _count(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def render_text(estimate: CostEstimate) -> str:
    """A table of line items with how each was computed, the min/max totals and the budget."""
    lines = [
        f"Monthly cost estimate: stack {estimate.stack} ({estimate.region}), {estimate.currency}",
        f"Prices: {estimate.prices_source}, as of {estimate.prices_as_of} "
        "(approximate on-demand list prices)",
        "",
        f"{'ITEM':<44} {'QUANTITY':>24} {'UNIT PRICE':>14} {'MONTHLY':>12}",
    ]
    for item in estimate.items:
        quantity = f"{_n(item.quantity)} {item.unit}"
        lines.append(
            f"{item.name:<44} {quantity:>24} {_price(item.unit_price):>14} {_usd(item.monthly_cost):>12}"
        )
        lines.append(f"    {item.computation}")
    lines += [
        "",
        f"Training run: {_usd(estimate.training_run.cost)} per run",
        f"Monthly total: {_usd(estimate.monthly_min)} (endpoints at minimum instances) to "
        f"{_usd(estimate.monthly_max)} (at maximum instances)",
    ]
    if estimate.budget_monthly is not None:
        budget = estimate.budget_monthly
        verdict = (
            "the maximum fits"
            if estimate.monthly_max <= budget
            else "the minimum fits, the maximum does not"
            if estimate.monthly_min <= budget
            else "even the minimum is over budget"
        )
        lines.append(f"Budget: {_usd(budget)}/month (budget.monthlyUsd): {verdict}")
    lines += ["", "Assumptions:", *(f"  - {assumption}" for assumption in estimate.assumptions)]
    return "\n".join(lines)


def estimate_as_dict(estimate: CostEstimate) -> dict[str, Any]:
    run = estimate.training_run
    return {
        "stack": estimate.stack,
        "region": estimate.region,
        "currency": estimate.currency,
        "prices": {"source": estimate.prices_source, "as_of": estimate.prices_as_of},
        "hours_per_month": HOURS_PER_MONTH,
        "training_run": {**asdict(run), "cost": round(run.cost, 2)},
        "items": [{**asdict(item), "monthly_cost": round(item.monthly_cost, 2)} for item in estimate.items],
        "monthly_min": round(estimate.monthly_min, 2),
        "monthly_max": round(estimate.monthly_max, 2),
        "budget_monthly": estimate.budget_monthly,
        "assumptions": list(estimate.assumptions),
    }


def estimate_as_json(estimate: CostEstimate) -> str:
    return json.dumps(estimate_as_dict(estimate), indent=2)


# --- the command -----------------------------------------------------------------------------------


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return value


def _positive(text: str) -> float:
    value = _non_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"must be a whole number > 0, got {text}")
    return int(text)


def add_cost_parser(commands: Any) -> argparse.ArgumentParser:
    """Add ``mlctl cost`` to an argparse subparsers object; its handler returns an exit code."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "cost",
        help="estimate a stack's monthly AWS cost from a dated price table",
        description="Estimates the monthly bill of a stack (training, endpoints, Lambda, API Gateway, S3) "
        "from its Pulumi.<stack>.yaml and a dated price table. Every figure shows how it was computed.",
    )
    parser.add_argument("--stack", default="dev", help="stack name: reads Pulumi.<stack>.yaml (default: dev)")
    parser.add_argument("--json", action="store_true", help="print the estimate as JSON")
    parser.add_argument(
        "--prices", metavar="PATH", type=Path, help="price table JSON (default: mlctl/prices.json)"
    )
    usage = parser.add_argument_group("usage (what the stack config cannot say)")
    usage.add_argument(
        "--runs-per-month",
        metavar="N",
        type=_non_negative,
        help="training runs a month (default: from training.schedule)",
    )
    usage.add_argument(
        "--training-hours",
        metavar="H",
        type=_positive,
        help="hours per training run (default: training.maxRuntimeSeconds, the upper bound)",
    )
    usage.add_argument(
        "--requests-per-day",
        metavar="N",
        type=_non_negative,
        default=DEFAULT_REQUESTS_PER_DAY,
        help=f"API requests a day (default: {DEFAULT_REQUESTS_PER_DAY})",
    )
    usage.add_argument(
        "--storage-gb",
        metavar="G",
        type=_non_negative,
        default=DEFAULT_STORAGE_GB,
        help=f"GB stored in S3 (default: {DEFAULT_STORAGE_GB:g})",
    )
    usage.add_argument(
        "--lambda-duration-ms",
        metavar="MS",
        type=_non_negative,
        default=DEFAULT_LAMBDA_DURATION_MS,
        help=f"billed duration of one API Lambda call (default: {DEFAULT_LAMBDA_DURATION_MS:g})",
    )
    overrides = parser.add_argument_group("overrides (replace the stack config or the price table)")
    overrides.add_argument(
        "--training-instance-type",
        metavar="TYPE",
        help="training instance type (default: training.instanceType)",
    )
    overrides.add_argument(
        "--training-instance-count",
        metavar="N",
        type=_positive_int,
        help="training instances (default: training.instanceCount)",
    )
    overrides.add_argument(
        "--training-hourly-price",
        metavar="USD",
        type=_non_negative,
        help="on-demand USD per training instance-hour",
    )
    overrides.add_argument(
        "--serving-hourly-price", metavar="USD", type=_non_negative, help="USD per endpoint instance-hour"
    )
    overrides.add_argument(
        "--serving-instances",
        metavar="N",
        type=_positive_int,
        help="endpoint instances per variant, both minimum and maximum (default: serving.min/maxInstances)",
    )
    overrides.add_argument(
        "--no-spot",
        dest="use_spot",
        action="store_const",
        const=False,
        default=None,
        help="price training on demand even if training.useSpot is true",
    )
    parser.set_defaults(handler=run_cost)
    return parser


def run_cost(args: argparse.Namespace) -> int:
    """The ``mlctl cost`` handler. Stack config errors propagate to the CLI, which reports them."""
    try:
        prices = load_prices(args.prices)
        config = load_stack_config(args.stack)
        usage = Usage(
            runs_per_month=args.runs_per_month,
            training_hours=args.training_hours,
            requests_per_day=args.requests_per_day,
            storage_gb=args.storage_gb,
            lambda_duration_ms=args.lambda_duration_ms,
            training_instance_type=args.training_instance_type,
            training_instance_count=args.training_instance_count,
            training_hourly_price=args.training_hourly_price,
            serving_hourly_price=args.serving_hourly_price,
            serving_instances=args.serving_instances,
            use_spot=args.use_spot,
        )
        estimate = estimate_monthly_cost(config, prices, usage)
    except (PriceTableError, UnknownInstanceTypeError, ScheduleError) as exc:
        print(f"mlctl cost: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return EXIT_USAGE
    print(estimate_as_json(estimate) if args.json else render_text(estimate))
    return EXIT_OK
