"""``mlctl``: the platform's command line. Every failure is a one-line message and a non-zero exit."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from infra.stack_config import StackConfigError, UnknownStackError
from mlctl.cost import add_cost_parser
from mlctl.deploy_wait import add_deploy_parser
from mlctl.invoke import add_invoke_parser
from mlctl.local.commands import add_local_parser
from mlctl.models import add_models_parser
from mlctl.size import add_size_parser
from mlctl.train import add_train_parser

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlctl", description="Plan, run and operate the ml-platform on AWS or on this machine."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    plan = commands.add_parser(
        "plan",
        help="run the Pulumi program offline (mock runtime) and print the resource tree",
        description="Runs the real Pulumi program under Pulumi's mock runtime: no CLI, no credentials.",
    )
    plan.add_argument("--stack", default="dev", help="stack name: reads Pulumi.<stack>.yaml (default: dev)")
    plan.add_argument("--json", action="store_true", help="print the plan as JSON")
    plan.set_defaults(handler=_plan)
    add_local_parser(commands)
    add_train_parser(commands)
    add_models_parser(commands)
    add_deploy_parser(commands)
    add_invoke_parser(commands)
    add_cost_parser(commands)
    add_size_parser(commands)
    return parser


def _plan(args: argparse.Namespace) -> int:
    """The offline plan with the policy pack's findings next to each resource; a mandatory
    violation makes the exit status non-zero (CI's plan job fails on it)."""
    # Imported here so that commands which do not need Pulumi do not pay for importing it.
    from infra.offline import run_offline  # noqa: PLC0415
    from mlctl.plan import plan_as_json, render_plan  # noqa: PLC0415
    from policy.engine import evaluate_plan, render  # noqa: PLC0415

    plan = run_offline(args.stack)
    report = evaluate_plan(plan)
    if args.json:
        print(plan_as_json(plan, report))
    else:
        findings: dict[str, list[str]] = {}
        for violation in report.violations:
            findings.setdefault(violation.urn, []).append(
                f"{violation.severity} {violation.rule_id}: {violation.message}"
            )
        print(render_plan(plan, findings))
        print()
        print(render(report))
    return EXIT_OK if report.passed else EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except (StackConfigError, UnknownStackError) as exc:
        print(f"mlctl {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
