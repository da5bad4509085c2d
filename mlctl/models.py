"""``mlctl models``: the stack's model registry (list, show, approve, reject) and rollbacks.

``rollback`` finds the version the endpoint serves now, rejects it with the reason, and deploys
an older approved version through the deployer's own path: it invokes the deployer Lambda with the
EventBridge event it normally receives (in local mode the emulator runs the same handler with its
declared environment). The same gate (the target must be Approved now) and the same blue/green
update apply; ``mlctl deploy wait`` then checks it landed.

``approve`` runs the champion gate first (``handlers.registry.champion``): the version is compared with the
one the endpoint serves on the held-out metrics both recorded at registration, with the stack's
``training.promotionMargin``; a challenger worse by more than the margin on any metric is
rejected with the reason (recorded in its registry entry either way). ``mlctl local up`` runs the
fuller gate (both models on the same held-out split and on replayed traffic).
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import Any

from botocore.config import Config
from botocore.exceptions import ClientError

from handlers.common.contracts import DEFAULT_PROMOTION_MARGIN, TARGET_VARIANT_KEY
from handlers.deployer.gate import UnknownServedVersionError, served_version
from handlers.deployer.plan import approval_event
from handlers.registry import champion
from handlers.registry.client import APPROVAL_STATUSES, APPROVED, ModelRegistry, ModelVersion
from infra.stack_config import StackConfigError, UnknownStackError, load_stack_config
from mlctl.register import add_register_parser
from mlctl.targets import (
    EXIT_OK,
    CommandError,
    PlatformTarget,
    add_target_arguments,
    client,
    resolve_target,
    run_guarded,
)

MAX_METRICS_LISTED = 3
LAMBDA_MAX_SECONDS = 900  # a listing stays one line per version


def add_models_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``mlctl models list|show|register|approve|reject|rollback`` on ``commands``."""
    models = commands.add_parser(
        "models", help="list, inspect, register, approve, reject and roll back model versions"
    )
    actions = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")

    listing = actions.add_parser("list", help="the stack's model versions, newest first")
    listing.add_argument(
        "--status", choices=APPROVAL_STATUSES, help="only versions with this approval status"
    )
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(handler=_list)

    show = actions.add_parser("show", help="one version: metrics, hyperparameters, lineage, approval")
    show.add_argument("version", type=int, metavar="VERSION")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(handler=_show)

    register = add_register_parser(actions)

    approve = actions.add_parser("approve", help="approve a version (the deployer then deploys it)")
    approve.add_argument("version", type=int, metavar="VERSION")
    approve.add_argument("--reason", metavar="TEXT", help="stored as the version's approval description")
    approve.add_argument(
        "--margin", type=float, help="champion gate margin (default: the stack's training.promotionMargin)"
    )
    approve.add_argument(
        "--skip-champion-gate", action="store_true", help="approve without comparing with the served version"
    )
    approve.add_argument(
        "--variant",
        metavar="NAME",
        help="the production variant it replaces (default: the first); the others keep their versions",
    )
    approve.set_defaults(handler=_approve)

    reject = actions.add_parser("reject", help="reject a version (it can never be deployed)")
    reject.add_argument("version", type=int, metavar="VERSION")
    reject.add_argument(
        "--reason", required=True, metavar="TEXT", help="why (stored as the approval description)"
    )
    reject.set_defaults(handler=_reject)

    rollback = actions.add_parser(
        "rollback", help="reject the deployed version and deploy an older approved one"
    )
    rollback.add_argument(
        "--to", type=int, metavar="VERSION", help="the version to deploy (default: newest approved older one)"
    )
    rollback.add_argument(
        "--reason", required=True, metavar="TEXT", help="why the deployed version is rejected"
    )
    rollback.set_defaults(handler=_rollback)

    for parser in (listing, show, register, approve, reject, rollback):
        add_target_arguments(parser)


# --- handlers --------------------------------------------------------------------------------------------


def _list(args: argparse.Namespace) -> int:
    def action() -> int:
        target = resolve_target(args)
        versions = _registry(target).list_versions(_group(target), status=args.status)
        if args.json:
            print(json.dumps([version_summary(v) for v in versions], indent=2))
        elif not versions:
            print(
                f"no model versions in {_group(target)}"
                + (f" with status {args.status}" if args.status else "")
            )
        else:
            print(render_versions(versions))
        return EXIT_OK

    return run_guarded("models list", action)


def _show(args: argparse.Namespace) -> int:
    def action() -> int:
        target = resolve_target(args)
        version = _registry(target).describe(_group(target), args.version)
        print(json.dumps(version_details(version), indent=2) if args.json else render_version(version))
        return EXIT_OK

    return run_guarded("models show", action)


def _approve(args: argparse.Namespace) -> int:
    def action() -> int:
        target = resolve_target(args)
        registry = _registry(target)
        arn = registry.version_arn(_group(target), args.version)
        if args.skip_champion_gate:
            # Recorded, so the deployer deploys it as approved instead of comparing it itself.
            champion.record_skip(client(target, "sagemaker"), arn, args.reason or "skipped by mlctl")
        else:
            decision = champion_gate(target, registry, arn, args.margin)
            if decision is not None and not decision.promote:
                raise CommandError(
                    f"version {args.version} was rejected by the champion gate: {decision.reason}"
                )
        metadata = {TARGET_VARIANT_KEY: _variant(target, args.variant)} if args.variant else None
        version = registry.approve(arn, args.reason, metadata)
        print(f"approved {version.label}" + (f": {version.approval_description}" if args.reason else ""))
        return EXIT_OK

    return run_guarded("models approve", action)


def champion_gate(
    target: PlatformTarget, registry: ModelRegistry, arn: str, margin: float | None
) -> champion.Decision | None:
    """Compare the version at ``arn`` with the served one and record the decision (a refusal
    rejects it). None when nothing is served yet (or it is the served version itself)."""
    challenger = registry.describe(arn)
    serving = _served_or_latest_approved(target, registry, exclude=arn)
    if serving is None:
        print(f"champion gate: nothing is served yet; {challenger.label} is the first")
        return None
    decision = champion.compare_versions(serving, challenger, _margin(target, margin))
    champion.record_decision(client(target, "sagemaker"), arn, decision, serving)
    print(f"champion gate ({serving.label} vs {challenger.label}): {decision.reason}")
    return decision


def _served_or_latest_approved(
    target: PlatformTarget, registry: ModelRegistry, exclude: str
) -> ModelVersion | None:
    try:
        serving = deployed_version(client(target, "sagemaker"), registry, str(target.output("endpointName")))
    except (CommandError, ClientError):  # no endpoint yet, or not deployed by the deployer
        serving = None
    if serving is None or serving.arn == exclude:
        approved = [v for v in registry.list_versions(_group(target), status=APPROVED) if v.arn != exclude]
        serving = approved[0] if approved else None
    return serving


def _variant(target: PlatformTarget, name: str) -> str:
    """``name`` if the stack's endpoint has that variant (checked where the stack file is here)."""
    try:
        variants = [variant.name for variant in load_stack_config(target.stack).serving.variants]
    except (StackConfigError, UnknownStackError, OSError):  # the deployer checks it then
        return name
    if name not in variants:
        raise CommandError(
            f"--variant {name}: the {target.stack} endpoint has variants {', '.join(variants)}"
        )
    return name


def _margin(target: PlatformTarget, explicit: float | None) -> float:
    if explicit is not None:
        return explicit
    try:
        return load_stack_config(target.stack).training.promotion_margin
    except (StackConfigError, UnknownStackError, OSError):  # the stack file is not in this checkout
        return DEFAULT_PROMOTION_MARGIN


def _reject(args: argparse.Namespace) -> int:
    def action() -> int:
        target = resolve_target(args)
        registry = _registry(target)
        version = registry.reject(registry.version_arn(_group(target), args.version), args.reason)
        print(f"rejected {version.label}: {version.approval_description}")
        return EXIT_OK

    return run_guarded("models reject", action)


def _rollback(args: argparse.Namespace) -> int:
    def action() -> int:
        target = resolve_target(args)
        registry = _registry(target)
        group = _group(target)
        sagemaker = client(target, "sagemaker")
        current = deployed_version(sagemaker, registry, str(target.output("endpointName")))
        if current.group != group:
            raise CommandError(
                f"the endpoint serves {current.label}, which is not in this stack's group {group}"
            )
        chosen = _rollback_target(registry, group, current, args.to)
        # The target is checked before anything changes: a refused rollback leaves the registry as it was.
        registry.require_approved(chosen)
        rejected = registry.reject(current.arn, args.reason)
        print(f"rejected {rejected.label}: {rejected.approval_description}")
        # The deployer Lambda itself, with the approval event it gets from the registry (locally,
        # the emulator runs its handler with its declared environment).
        result = _invoke_deployer(target, chosen)
        status = str(result.get("status"))
        if status not in ("created", "updated", "in-progress", "unchanged"):
            raise CommandError(
                f"the deployer did not deploy {chosen.label}: {result.get('reason') or status}"
            )
        expected = result.get("expected_config")
        print(f"deploying {chosen.label}: {status}, expected config {expected}")
        print(f"follow it with: mlctl deploy wait --expected-config {expected}")
        return EXIT_OK

    return run_guarded("models rollback", action)


# --- what is deployed, and what to roll back to -------------------------------------------------------


def deployed_version(sagemaker: Any, registry: ModelRegistry, endpoint: str) -> ModelVersion:
    """The registry version the endpoint serves now (``handlers.deployer.gate.served_version``)."""
    try:
        return served_version(sagemaker, registry, endpoint)
    except UnknownServedVersionError as exc:
        raise CommandError(exc.message) from None


def _rollback_target(
    registry: ModelRegistry, group: str, current: ModelVersion, to: int | None
) -> ModelVersion:
    if to is not None:
        if to == current.version:
            raise CommandError(f"version {to} is the deployed version; --to must name another one")
        chosen = registry.describe(group, to)
        if not chosen.approved:
            raise CommandError(
                f"version {to} is {chosen.status}; only an Approved version can be deployed "
                f"(mlctl models approve {to} --reason ...)"
            )
        return chosen
    older = [
        v for v in registry.list_versions(group, status=APPROVED, limit=100) if v.version < current.version
    ]
    if not older:
        raise CommandError(
            f"nothing to roll back to: no approved version of {group} is older than the deployed "
            f"version {current.version} (name one with --to)"
        )
    return max(older, key=lambda v: v.version)


def model_package_event(version: ModelVersion, region: str) -> dict[str, Any]:
    """The EventBridge event SageMaker sends when ``version`` is approved (what the deployer accepts)."""
    return approval_event(
        group=version.group,
        version=version.version,
        arn=version.arn,
        region=region,
        status=version.status,
        time=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )


def _invoke_deployer(target: PlatformTarget, version: ModelVersion) -> dict[str, Any]:
    function = str(target.output("deployerFunctionName"))
    # Waits as long as the Lambda may run; no retry, so a slow answer is not a second invocation.
    config = Config(read_timeout=LAMBDA_MAX_SECONDS, retries={"total_max_attempts": 1})
    response = client(target, "lambda", config).invoke(
        FunctionName=function,
        InvocationType="RequestResponse",
        Payload=json.dumps(model_package_event(version, target.region)).encode(),
    )
    raw = response["Payload"].read()
    try:
        answer = json.loads(raw) if raw else {}
    except json.JSONDecodeError:
        answer = {"errorMessage": raw.decode(errors="replace")}
    if response.get("FunctionError"):
        kind, message = answer.get("errorType", "Error"), answer.get("errorMessage")
        raise CommandError(f"the deployer {function} failed: {kind}: {message}")
    if not isinstance(answer, dict):
        raise CommandError(f"the deployer {function} answered {answer!r}")
    return answer


# --- rendering -------------------------------------------------------------------------------------------


def version_summary(version: ModelVersion) -> dict[str, Any]:
    return {
        "version": version.version,
        "status": version.status,
        "created": version.created.isoformat() if version.created else None,
        "metrics": version.metrics,
        "dataset_version": version.dataset_version,
        "arn": version.arn,
    }


def version_details(version: ModelVersion) -> dict[str, Any]:
    return {
        **version_summary(version),
        "package_status": version.package_status,
        "approval_description": version.approval_description,
        "hyperparameters": version.hyperparameters,
        "lineage": {
            "dataset_version": version.dataset_version,
            "code_version": version.code_version,
            "training_job": version.training_job,
            "artifact_uri": version.artifact_uri,
            "image_uri": version.image_uri,
            "evaluation_report_uri": version.evaluation_report_uri,
        },
        "description": version.description,
    }


def render_versions(versions: list[ModelVersion]) -> str:
    rows = [("VERSION", "STATUS", "CREATED", "METRICS", "DATASET")]
    rows += [
        (
            str(v.version),
            v.status,
            v.created.strftime("%Y-%m-%d %H:%M") if v.created else "-",
            _metrics_text(v.metrics, MAX_METRICS_LISTED) or "-",
            v.dataset_version or "-",
        )
        for v in versions
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join([*(cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)), row[-1]])
        for row in rows
    )


def render_version(version: ModelVersion) -> str:
    details = version_details(version)
    lines = [
        f"{version.label}",
        f"  status:          {version.status}"
        + (f" ({version.package_status})" if version.package_status else ""),
        f"  approval reason: {version.approval_description or '-'}",
        f"  created:         {details['created'] or '-'}",
        f"  metrics:         {_metrics_text(version.metrics) or '-'}",
        "  hyperparameters: "
        + (" ".join(f"{k}={v}" for k, v in sorted(version.hyperparameters.items())) or "-"),
        "  lineage:",
    ]
    lines += [f"    {key + ':':22} {value or '-'}" for key, value in details["lineage"].items()]
    return "\n".join(lines)


def _metrics_text(metrics: dict[str, float], limit: int | None = None) -> str:
    items = sorted(metrics.items())[:limit]
    return " ".join(f"{name}={value:.4g}" for name, value in items)


def _registry(target: PlatformTarget) -> ModelRegistry:
    return ModelRegistry(client(target, "sagemaker"))


def _group(target: PlatformTarget) -> str:
    return str(target.output("modelPackageGroupName"))
