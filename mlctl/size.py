"""``mlctl size``: an endpoint's instance type, instance counts and autoscaling target for a model.

The row of the model-size table (docs/cost-and-sizing.md) that the model falls in decides the
hardware; the instance is the cheapest in the price table (``mlctl/prices.json``) that the row allows
and that holds the model with headroom. Throughput per instance is the low end of the row's range, a
starting point to replace with a load test's figure.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from handlers.common.instance_types import GPU_INSTANCE_FAMILIES, instance_family
from infra.stack_config import PROD_MIN_INSTANCES, PROJECT, Environment, ServingConfig
from mlctl.cost import HOURS_PER_MONTH, InstancePrice, PriceTable, PriceTableError, load_prices

EXIT_OK = 0
EXIT_USAGE = 2  # the CLI's exit code for a request it cannot serve as asked (mlctl/cli.py)

SMALL_MAX_MB = 100  # exclusive: "< 100 MB"
MEDIUM_MAX_MB = 5_000
LARGE_MAX_MB = 100_000
# Weights are not all a model needs: activations, the CUDA context and the server's buffers too.
MEMORY_HEADROOM = 1.2
# AWS's guidance for SageMakerVariantInvocationsPerInstance: target = max RPS x 60 x a safety factor
# (0.5), so an instance scales out at half its measured capacity and bursts have room.
SAFETY_FACTOR = 0.5
# "CPUs for batch" gives no throughput: an order of magnitude below a GPU's hundreds is a safe start.
CPU_BATCH_QPS_PER_INSTANCE = 10.0
MASSIVE_FAMILIES = ("p4d", "p4de", "p5", "p5e", "p5en")
BYTES_PER_MB = 1_000_000
BYTES_PER_GIB = 1024**3


@dataclass(frozen=True)
class TableRow:
    """One row of the model-size table, with the figures the recommendation takes from it."""

    name: str
    size_range: str
    resources: str  # the table's words, quoted in every explanation
    latency_low_ms: float  # the fastest the row typically answers: a lower target earns a warning
    latency_range: str
    qps_per_unit: float  # the low end of the row's throughput
    unit: str  # what that throughput is per: a server, a GPU or an instance


SMALL = TableRow(
    "Small", "< 100 MB", "CPU is fine; sub-millisecond latency; thousands of QPS per server",
    0.0, "sub-millisecond", 1000.0, "server",
)  # fmt: skip
MEDIUM = TableRow(
    "Medium", "100 MB - 5 GB",
    "GPUs for real-time, CPUs for batch; 10-100 ms latency; hundreds of QPS per GPU",
    10.0, "10-100 ms", 100.0, "GPU",
)  # fmt: skip
LARGE = TableRow(
    "Large", "5-100 GB", "GPUs required; 100-1000 ms; tens of QPS per GPU",
    100.0, "100-1000 ms", 10.0, "GPU",
)  # fmt: skip
MASSIVE = TableRow(
    "Massive", "> 100 GB", "multiple GPUs per prediction; 1-10+ s; single-digit QPS per instance",
    1000.0, "1-10+ s", 1.0, "instance",
)  # fmt: skip
ROWS = (SMALL, MEDIUM, LARGE, MASSIVE)


class NoFittingInstanceError(LookupError):
    """The price table has no instance the row allows."""


def table_row(model_size_mb: float) -> TableRow:
    if model_size_mb < SMALL_MAX_MB:
        return SMALL
    if model_size_mb <= MEDIUM_MAX_MB:
        return MEDIUM
    if model_size_mb <= LARGE_MAX_MB:
        return LARGE
    return MASSIVE


@dataclass(frozen=True)
class Recommendation:
    row: TableRow
    environment: Environment
    batch: bool
    instance_type: str
    instance: InstancePrice
    memory_needed_gib: float  # the model with headroom: what the chosen memory must hold
    sharded: bool  # the model is split across GPUs: each prediction uses several
    gpus_per_copy: int
    copies_per_instance: int
    qps_per_instance: float
    min_instances: int
    max_instances: int
    target_invocations_per_instance: int  # per instance per minute
    explanation: tuple[str, ...]
    warnings: tuple[str, ...]
    prices_as_of: str

    @property
    def gpu(self) -> bool:
        return instance_family(self.instance_type) in GPU_INSTANCE_FAMILIES

    @property
    def monthly_cost_min(self) -> float:
        return self.min_instances * HOURS_PER_MONTH * self.instance.hourly

    @property
    def monthly_cost_max(self) -> float:
        return self.max_instances * HOURS_PER_MONTH * self.instance.hourly

    def serving_config(self) -> ServingConfig:
        """The settings as the stack schema holds them: building it validates every key and value."""
        return ServingConfig(
            instance_type=self.instance_type,
            gpu=self.gpu,
            min_instances=self.min_instances,
            max_instances=self.max_instances,
            target_invocations_per_instance=self.target_invocations_per_instance,
        )

    def snippet(self) -> str:
        """The ``ml-platform:serving`` keys to merge under ``config:`` in ``Pulumi.<stack>.yaml``."""
        settings = self.serving_config().model_dump(
            by_alias=True,
            include={
                "instance_type",
                "gpu",
                "min_instances",
                "max_instances",
                "target_invocations_per_instance",
            },
        )
        lines = [f"  {PROJECT}:serving:"]
        for key, value in settings.items():
            text = ("true" if value else "false") if isinstance(value, bool) else str(value)
            lines.append(f"    {key}: {text}")
        return "\n".join(lines)


@dataclass(frozen=True)
class _Option:
    """One candidate instance with how the model would run on it."""

    instance_type: str
    instance: InstancePrice
    sharded: bool
    gpus_per_copy: int
    copies: int
    qps_per_instance: float
    target: int  # invocations per instance per minute

    def instances_for(self, qps: float, minimum: int) -> int:
        return max(minimum, math.ceil(qps * 60 / self.target))


def _target(qps_per_instance: float) -> int:
    return max(1, math.floor(qps_per_instance * 60 * SAFETY_FACTOR))


def recommend(
    model_size_mb: float,
    latency_ms: float,
    qps: float,
    *,
    environment: Environment | str = Environment.DEV,
    batch: bool = False,
    prices: PriceTable | None = None,
) -> Recommendation:
    """Size an endpoint for a model of ``model_size_mb`` serving ``qps`` at peak within ``latency_ms``.

    ``batch``: predictions are offline, so a Medium model runs on CPU. Raises ``ValueError`` for a
    non-positive input and :class:`NoFittingInstanceError` when the price table has no instance
    the row allows.
    """
    for name, value in (("model size", model_size_mb), ("latency", latency_ms), ("QPS", qps)):
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"{name} must be a number > 0, got {value}")
    env = Environment(environment)
    table = prices or load_prices()
    row = table_row(model_size_mb)
    need_gib = model_size_mb * BYTES_PER_MB / BYTES_PER_GIB * MEMORY_HEADROOM
    minimum = PROD_MIN_INSTANCES if env is Environment.PROD else 1
    on_cpu = row is SMALL or (row is MEDIUM and batch)
    options = _cpu_options(table, row, need_gib) if on_cpu else _gpu_options(table, row, need_gib)
    if not options:
        kind = "CPU instance" if on_cpu else {MASSIVE: "p4d/p5 instance"}.get(row, "GPU instance")
        raise NoFittingInstanceError(
            f"no {kind} in {table.source} holds the model ({_gib(need_gib)} with headroom): "
            'add one under "sagemaker_instances"'
        )
    # The cheapest fleet at peak load wins: a dearer instance holding more model copies can beat
    # several cheap ones. Ties go to the cheaper hour, so a low QPS gets the smallest instance.
    best = min(
        options,
        key=lambda o: (o.instances_for(qps, minimum) * o.instance.hourly, o.instance.hourly, o.instance_type),
    )
    maximum = best.instances_for(qps, minimum)
    explanation = [
        f'Row: {row.name} ({row.size_range}): "{row.resources}", '
        f"because the model is {_size(model_size_mb)}.",
        _instance_line(row, best, need_gib, batch),
        _capacity_line(row, best),
        *_sharding_lines(row, best, need_gib, batch),
        f"Autoscaling target: {best.target} invocations per instance per minute = "
        f"{_n(best.qps_per_instance)} QPS x 60 s x {SAFETY_FACTOR} safety factor "
        "(serving.targetInvocationsPerInstance; the SageMakerVariantInvocationsPerInstance metric counts "
        "per minute).",
        _instances_line(env, minimum, maximum, qps, best.target),
        f"Cost: ${minimum * HOURS_PER_MONTH * best.instance.hourly:,.2f}/month at min, "
        f"${maximum * HOURS_PER_MONTH * best.instance.hourly:,.2f}/month at max "
        f"({HOURS_PER_MONTH} h/month, prices as of {table.as_of}; see mlctl cost).",
    ]
    return Recommendation(
        row=row,
        environment=env,
        batch=batch,
        instance_type=best.instance_type,
        instance=best.instance,
        memory_needed_gib=need_gib,
        sharded=best.sharded,
        gpus_per_copy=best.gpus_per_copy,
        copies_per_instance=best.copies,
        qps_per_instance=best.qps_per_instance,
        min_instances=minimum,
        max_instances=maximum,
        target_invocations_per_instance=best.target,
        explanation=tuple(explanation),
        warnings=tuple(_warnings(row, best, env=env, latency_ms=latency_ms, batch=batch, need_gib=need_gib)),
        prices_as_of=table.as_of,
    )


def _cpu_options(table: PriceTable, row: TableRow, need_gib: float) -> list[_Option]:
    qps = row.qps_per_unit if row is SMALL else CPU_BATCH_QPS_PER_INSTANCE
    return [
        _Option(name, price, False, 0, 1, qps, _target(qps))
        for name, price in table.instances.items()
        if price.gpus == 0 and not _is_gpu(name) and price.memory_gib >= need_gib
    ]


def _gpu_options(table: PriceTable, row: TableRow, need_gib: float) -> list[_Option]:
    options = []
    for name, price in table.instances.items():
        if price.gpus == 0 or not _is_gpu(name):
            continue
        if row is MEDIUM and price.gpus != 1:
            continue  # "GPUs for real-time": one GPU per instance, scaled out by instance count
        if row is MASSIVE and instance_family(name) not in MASSIVE_FAMILIES:
            continue
        fits_gpu = price.gpu_memory_per_gpu_gib >= need_gib
        if row is MASSIVE:
            # "Multiple GPUs per prediction": one copy over all the GPUs, single-digit QPS per instance.
            qps = row.qps_per_unit
            options.append(_Option(name, price, price.gpus > 1, price.gpus, 1, qps, _target(qps)))
            continue
        if not fits_gpu and price.gpu_memory_gib < need_gib:
            continue
        gpus_per_copy = (
            1
            if fits_gpu
            else min(price.gpus, _power_of_two_at_least(need_gib / price.gpu_memory_per_gpu_gib))
        )
        copies = max(1, price.gpus // gpus_per_copy)
        qps = row.qps_per_unit * copies
        options.append(_Option(name, price, not fits_gpu, gpus_per_copy, copies, qps, _target(qps)))
    if row is MASSIVE:
        fitting = [o for o in options if o.instance.gpu_memory_gib >= need_gib]
        # When none holds the model, the one with the most GPU memory is the least bad: a warning says so.
        largest = max(options, key=lambda o: o.instance.gpu_memory_gib, default=None)
        return fitting or ([largest] if largest else [])
    return options


def _instance_line(row: TableRow, option: _Option, need_gib: float, batch: bool) -> str:
    instance = option.instance
    if option.instance.gpus == 0:
        why = "batch predictions need no GPU" if batch else "a small model needs no GPU"
        return (
            f"Instance: {option.instance_type} ({instance.vcpus} vCPUs, {_gib(instance.memory_gib)} memory, "
            f"${instance.hourly}/h): the cheapest CPU instance in the price table whose memory holds the "
            f"model with headroom ({_gib(need_gib)}); {why}."
        )
    allowed = {MEDIUM: "single-GPU instance", MASSIVE: "multi-GPU (p4d/p5) instance"}.get(row, "GPU instance")
    return (
        f"Instance: {option.instance_type} ({instance.gpus} x {instance.gpu}, "
        f"{_gib(instance.gpu_memory_gib)} GPU memory, ${instance.hourly}/h): the {allowed} in the price "
        f"table with the cheapest fleet at the peak QPS, among those whose GPU memory holds the model with "
        f"headroom ({_gib(need_gib)})."
    )


def _capacity_line(row: TableRow, option: _Option) -> str:
    quoted = row.resources.split("; ")[-1]
    if option.instance.gpus == 0 and row is not SMALL:
        basis = "an assumed figure for a Medium model on CPU: the row gives none"
    elif option.instance.gpus == 0 or row is MASSIVE:
        basis = f'the low end of "{quoted}"'
    else:
        copies = f"{option.copies} model " + ("copy" if option.copies == 1 else "copies")
        basis = f'{copies} x {_n(row.qps_per_unit)} QPS, the low end of "{quoted}"'
    return (
        f"Capacity: {_n(option.qps_per_instance)} QPS per instance ({basis}); measure yours with a load test."
    )


def _sharding_lines(row: TableRow, option: _Option, need_gib: float, batch: bool) -> list[str]:
    lines = []
    if option.sharded:
        lines.append(
            f"Sharding: the model ({_gib(need_gib)} with headroom) does not fit one "
            f"{_gib(option.instance.gpu_memory_per_gpu_gib)} {option.instance.gpu}: its weights must be "
            f"split across {option.gpus_per_copy} GPUs (tensor or pipeline parallelism, e.g. a large-model "
            "inference container such as DJL or vLLM); the platform's default container loads a whole "
            "model per process."
        )
    if batch and row in {LARGE, MASSIVE}:
        lines.append(f"--batch does not change the {row.name} row: GPUs are required.")
    return lines


def _instances_line(env: Environment, minimum: int, maximum: int, qps: float, target: int) -> str:
    if env is Environment.PROD:
        reason = f"prod: at least {PROD_MIN_INSTANCES}, one per Availability Zone, for high availability"
    else:
        reason = f"{env.value}: one instance, no high availability"
    needed = math.ceil(qps * 60 / target)
    raised = ", raised to the minimum" if needed < minimum else ""
    return (
        f"Instances: min {minimum} ({reason}); max {maximum} = ceil({_n(qps)} QPS x 60 / {target}){raised}."
    )


def _warnings(
    row: TableRow, option: _Option, *, env: Environment, latency_ms: float, batch: bool, need_gib: float
) -> list[str]:
    warnings = []
    if not batch and latency_ms < row.latency_low_ms:
        warnings.append(
            f"the latency target {_n(latency_ms)} ms is below the {row.name} row's typical "
            f"{row.latency_range}: expect to miss it unless the model is made faster (quantisation, "
            "compilation, distillation) or a faster GPU is used; measure before relying on it."
        )
    if option.instance.gpus and option.instance.gpu_memory_gib < need_gib:
        warnings.append(
            f"the model ({_gib(need_gib)} with headroom) does not fit even {option.instance_type} "
            f"({_gib(option.instance.gpu_memory_gib)}): it needs several instances per prediction "
            "(multi-node inference), which this stack's endpoint does not provide."
        )
    if env is Environment.PROD and not _is_gpu(option.instance_type):
        warnings.append(
            "the prod stack rejects CPU endpoints (serving.gpu must be true in prod): use the cheapest "
            "GPU instance that fits (e.g. ml.g4dn.xlarge) there, or serve from another stack."
        )
    return warnings


def _is_gpu(instance_type: str) -> bool:
    return instance_family(instance_type) in GPU_INSTANCE_FAMILIES


def _power_of_two_at_least(value: float) -> int:
    # Tensor parallelism splits a model over 1, 2, 4 or 8 GPUs: the degree must divide the GPU count.
    return 1 << max(0, math.ceil(value) - 1).bit_length()


def _size(megabytes: float) -> str:
    return f"{_n(megabytes / 1000)} GB" if megabytes >= 1000 else f"{_n(megabytes)} MB"


def _gib(value: float) -> str:
    return f"{value:,.1f} GiB"


def _n(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


# --- output ----------------------------------------------------------------------------------------


def render_text(recommendation: Recommendation) -> str:
    r = recommendation
    lines = [
        f"Recommendation ({r.environment.value}{', batch' if r.batch else ''}): {r.instance_type}, "
        f"{r.min_instances}-{r.max_instances} instances, scale at {r.target_invocations_per_instance} "
        "invocations per instance per minute",
        "",
        "Why:",
        *(f"  - {line}" for line in r.explanation),
    ]
    if r.warnings:
        lines += ["", "Warnings:", *(f"  ! {warning}" for warning in r.warnings)]
    lines += [
        "",
        "Stack config (merge under `config:` in Pulumi.<stack>.yaml):",
        r.snippet(),
    ]
    return "\n".join(lines)


def recommendation_as_dict(recommendation: Recommendation) -> dict[str, Any]:
    r = recommendation
    return {
        "row": {"name": r.row.name, "size_range": r.row.size_range, "resources": r.row.resources},
        "environment": r.environment.value,
        "batch": r.batch,
        "instance_type": r.instance_type,
        "gpu": r.gpu,
        "gpus": r.instance.gpus,
        "memory_needed_gib": round(r.memory_needed_gib, 2),
        "sharded": r.sharded,
        "gpus_per_copy": r.gpus_per_copy,
        "copies_per_instance": r.copies_per_instance,
        "qps_per_instance": r.qps_per_instance,
        "min_instances": r.min_instances,
        "max_instances": r.max_instances,
        "target_invocations_per_instance": r.target_invocations_per_instance,
        "monthly_cost_min": round(r.monthly_cost_min, 2),
        "monthly_cost_max": round(r.monthly_cost_max, 2),
        "prices_as_of": r.prices_as_of,
        "explanation": list(r.explanation),
        "warnings": list(r.warnings),
        "stack_config": {
            f"{PROJECT}:serving": r.serving_config().model_dump(
                by_alias=True,
                mode="json",
                include={
                    "instance_type",
                    "gpu",
                    "min_instances",
                    "max_instances",
                    "target_invocations_per_instance",
                },
            )
        },
    }


# --- the command -----------------------------------------------------------------------------------


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text}")
    return value


def add_size_parser(commands: Any) -> argparse.ArgumentParser:
    """Add ``mlctl size`` to an argparse subparsers object; its handler returns an exit code."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "size",
        help="recommend an endpoint instance type, instance counts and autoscaling target for a model",
        description="Sizes an endpoint from the model's size, the latency target and the peak QPS, "
        "following the model-size table (small/medium/large/massive), and prints the stack config to use.",
    )
    parser.add_argument(
        "--model-size-mb",
        metavar="MB",
        type=_positive,
        required=True,
        help="model size in MB (1 GB = 1000 MB)",
    )
    parser.add_argument(
        "--latency-ms", metavar="MS", type=_positive, required=True, help="latency target per prediction, ms"
    )
    parser.add_argument(
        "--qps", metavar="QPS", type=_positive, required=True, help="peak predictions per second"
    )
    parser.add_argument(
        "--environment",
        choices=[env.value for env in Environment],
        default=Environment.DEV.value,
        help="prod gets at least two instances for high availability (default: dev)",
    )
    parser.add_argument(
        "--batch", action="store_true", help="offline predictions: a Medium model runs on CPU"
    )
    parser.add_argument(
        "--prices", metavar="PATH", type=Path, help="price table JSON (default: mlctl/prices.json)"
    )
    parser.add_argument("--json", action="store_true", help="print the recommendation as JSON")
    parser.set_defaults(handler=run_size)
    return parser


def run_size(args: argparse.Namespace) -> int:
    """The ``mlctl size`` handler."""
    try:
        recommendation = recommend(
            args.model_size_mb,
            args.latency_ms,
            args.qps,
            environment=args.environment,
            batch=args.batch,
            prices=load_prices(args.prices),
        )
    except (PriceTableError, NoFittingInstanceError, ValueError) as exc:
        print(f"mlctl size: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        print(json.dumps(recommendation_as_dict(recommendation), indent=2))
    else:
        print(render_text(recommendation))
    return EXIT_OK
