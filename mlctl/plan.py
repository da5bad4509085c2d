"""``mlctl plan``: the offline plan of a stack, printed as a resource tree with counts per type."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from infra.offline import Plan, PlannedResource

MAX_PROPERTIES_SHOWN = 6
MAX_VALUE_WIDTH = 70
# Inputs that repeat the parent's identity or are too long to read in a tree.
NOISY_INPUTS = {"bucket", "targetKeyId", "skipCredentialsValidation"}


def render_plan(plan: Plan, findings: Mapping[str, list[str]] | None = None) -> str:
    """The resource tree (type, logical name, key properties, and any policy ``findings`` by URN),
    counts per type and the outputs."""
    lines = [f"Stack ml-platform-{plan.stack}: offline plan (Pulumi mock runtime, no credentials)", ""]
    top_level = [resource for resource in plan.resources if resource.parent_urn == plan.stack_urn]
    for resource in top_level:
        lines.extend(_render_subtree(plan, resource, 0, findings or {}))
    lines += ["", "Resources by type:"]
    counts = plan.type_counts()
    lines += [f"  {count:4d}  {type_}" for type_, count in sorted(counts.items())]
    lines += [f"  {sum(counts.values()):4d}  total", "", "Outputs:"]
    lines += [f"  {key} = {value}" for key, value in _flatten(plan.outputs)]
    return "\n".join(lines)


def plan_as_json(plan: Plan, report: Any | None = None) -> str:
    """The plan as JSON; with a policy ``report``, its violations and waivers too."""
    policy = None
    if report is not None:
        policy = {
            "passed": report.passed,
            "violations": [vars(v) for v in report.violations],
            "waived": [vars(v) for v in report.waived],
        }
    return json.dumps(
        {
            "stack": plan.stack,
            "policy": policy,
            "resources": [
                {
                    "type": r.type,
                    "name": r.name,
                    "parent": r.parent_urn,
                    "urn": r.urn,
                    "aliases": list(r.aliases),
                    "inputs": r.inputs,
                }
                for r in plan.resources
            ],
            "counts": dict(plan.type_counts()),
            "outputs": plan.outputs,
        },
        indent=2,
        sort_keys=True,
        default=str,
    )


def _render_subtree(
    plan: Plan, resource: PlannedResource, depth: int, findings: Mapping[str, list[str]]
) -> Iterator[str]:
    indent = "   " * depth
    yield f"{indent}+ {resource.type}  {resource.name}"
    for key, value in key_properties(resource):
        yield f"{indent}     {key} = {value}"
    for finding in findings.get(resource.urn, []):
        yield f"{indent}     ! {finding}"
    # Sorted by logical name, so each bucket's settings sit together under the component.
    for child in sorted(plan.children_of(resource), key=lambda r: r.name):
        yield from _render_subtree(plan, child, depth + 1, findings)


def key_properties(resource: PlannedResource) -> list[tuple[str, str]]:
    """The few inputs that tell what a resource is: scalars, and the statement ids of policies."""
    shown = []
    for key, value in _flatten(resource.inputs):
        root = key.split(".")[0].split("[")[0]
        if root in NOISY_INPUTS and not (resource.type == "aws:s3/bucket:Bucket" and root == "bucket"):
            continue
        shown.append((key, _clip(value)))
    return shown[:MAX_PROPERTIES_SHOWN]


def _flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, Mapping):
        for key in value:
            yield from _flatten(value[key], f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _flatten(item, f"{prefix}[{index}]")
    elif isinstance(value, str) and value.startswith("{") and '"Statement"' in value:
        statements = json.loads(value).get("Statement", [])
        yield f"{prefix}.Sids", ",".join(str(s.get("Sid", "?")) for s in statements)
    else:
        yield prefix, value


def _clip(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, bool) or value is None else str(value)
    return text if len(text) <= MAX_VALUE_WIDTH else text[: MAX_VALUE_WIDTH - 3] + "..."
