"""Run the real Pulumi program offline, under Pulumi's mock runtime, and record every resource.

No Pulumi CLI, provider plugin, credentials or network is needed: the program in ``infra/`` is
executed as ``pulumi up`` would execute it, but each resource registration is answered by
:class:`PlanMocks` with realistic ids and ARNs. ``mlctl plan`` prints the result; the infra tests
assert on it; local mode reads the stack outputs from it (one source of truth for names).
"""

from __future__ import annotations

import contextvars
import hashlib
import runpy
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc
from pulumi.runtime.settings import get_root_resource
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _ensure_event_loop, _sync_await

from infra.stack_config import PROJECT, project_root, read_stack_values, to_pulumi_config

PROGRAM = Path(__file__).resolve().parent / "__main__.py"
MOCK_ACCOUNT_ID = "123456789012"
MOCK_PARTITION = "aws"
STACK_TYPE = "pulumi:pulumi:Stack"
# How AWS spells the resource part of an ARN, per resource type (the rest use the bare name).
ARN_RESOURCE_PATHS = {
    "aws:kms/key:Key": "key/",
    "aws:iam/role:Role": "role/",
    "aws:iam/policy:Policy": "policy/",
    "aws:lambda/function:Function": "function:",
    "aws:cloudwatch/logGroup:LogGroup": "log-group:",
    "aws:cloudwatch/metricAlarm:MetricAlarm": "alarm:",
    "aws:cloudwatch/eventRule:EventRule": "rule/",
    "aws:sns/topic:Topic": "",
    "aws:sagemaker/endpoint:Endpoint": "endpoint/",
    "aws:sagemaker/endpointConfiguration:EndpointConfiguration": "endpoint-config/",
    "aws:sagemaker/model:Model": "model/",
    "aws:sagemaker/modelPackageGroup:ModelPackageGroup": "model-package-group/",
    "aws:sagemaker/pipeline:Pipeline": "pipeline/",
    "aws:ecr/repository:Repository": "repository/",
}

# Where the ARN's service differs from the provider module (CloudWatch Logs and EventBridge live
# in pulumi-aws's cloudwatch module).
ARN_SERVICES = {
    "aws:cloudwatch/logGroup:LogGroup": "logs",
    "aws:cloudwatch/eventRule:EventRule": "events",
}


@dataclass(frozen=True)
class PlannedResource:
    """One registered resource: what ``pulumi preview`` would show for it."""

    urn: str
    type: str
    name: str
    parent_urn: str
    custom: bool
    inputs: Mapping[str, Any]
    outputs: Mapping[str, Any]
    id: str
    dependencies: frozenset[str] = frozenset()  # URNs this resource waits for (inputs and depends_on)
    aliases: tuple[str, ...] = ()  # URNs it was declared under before: the engine adopts their state


@dataclass
class Plan:
    """Every resource the program declared, in registration order, and the stack outputs."""

    stack: str
    resources: list[PlannedResource] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)

    @property
    def stack_urn(self) -> str:
        return f"urn:pulumi:{self.stack}::{PROJECT}::{STACK_TYPE}::{PROJECT}-{self.stack}"

    def of_type(self, type_: str) -> list[PlannedResource]:
        return [resource for resource in self.resources if resource.type == type_]

    def named(self, name: str) -> PlannedResource:
        matches = [resource for resource in self.resources if resource.name == name]
        if len(matches) != 1:
            raise KeyError(f"{len(matches)} resources named {name!r}")
        return matches[0]

    def children_of(self, parent: PlannedResource) -> list[PlannedResource]:
        return [resource for resource in self.resources if resource.parent_urn == parent.urn]

    def type_counts(self) -> Counter[str]:
        return Counter(resource.type for resource in self.resources)

    def in_dependency_order(self) -> list[PlannedResource]:
        """Resources ordered so each comes after everything it depends on (as the engine creates them)."""
        by_urn = {resource.urn: resource for resource in self.resources}
        ordered: list[PlannedResource] = []
        done: set[str] = set()

        def visit(resource: PlannedResource) -> None:
            if resource.urn in done:
                return
            done.add(resource.urn)
            for urn in sorted(resource.dependencies):
                if urn in by_urn:
                    visit(by_urn[urn])
            ordered.append(resource)

        for resource in self.resources:
            visit(resource)
        return ordered


class PlanMocks(pulumi.runtime.Mocks):
    """Answers registrations and invokes the way AWS would: stable ids, realistic ARNs."""

    def __init__(self, region: str, account_id: str = MOCK_ACCOUNT_ID) -> None:
        self.region = region
        self.account_id = account_id

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        if not args.custom:
            return None, {}
        if args.typ.startswith("pulumi:providers:"):
            return f"{args.name}-provider-id", dict(args.inputs)
        physical = _physical_name(args)
        # Like the engine's auto-naming: an unnamed resource gets its logical name and a suffix.
        state = {"name": physical, **args.inputs, "arn": self._arn(args.typ, physical)}
        if args.typ == "aws:kms/key:Key":
            state["keyId"] = physical
        if args.typ == "aws:s3/bucket:Bucket":
            state["bucket"] = physical
        if args.typ == "aws:ecr/repository:Repository":
            state["registryId"] = self.account_id
            state["repositoryUrl"] = f"{self.account_id}.dkr.ecr.{self.region}.amazonaws.com/{physical}"
        return physical, state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return self._invoke_result(args), []

    def _invoke_result(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            arn = f"arn:{MOCK_PARTITION}:iam::{self.account_id}:user/offline-plan"
            return {
                "accountId": self.account_id,
                "arn": arn,
                "userId": "AIDAOFFLINEPLAN",
                "id": self.account_id,
            }
        if args.token == "aws:index/getPartition:getPartition":
            return {"partition": MOCK_PARTITION, "dnsSuffix": "amazonaws.com", "id": MOCK_PARTITION}
        if args.token == "aws:index/getRegion:getRegion":
            return {"name": self.region, "region": self.region, "id": self.region}
        return {}

    def _arn(self, type_: str, physical: str) -> str:
        service = ARN_SERVICES.get(type_) or type_.split(":")[1].split("/", maxsplit=1)[0]
        if service == "s3":
            return f"arn:{MOCK_PARTITION}:s3:::{physical}"
        if service == "iam":
            return (
                f"arn:{MOCK_PARTITION}:iam::{self.account_id}:{ARN_RESOURCE_PATHS.get(type_, '')}{physical}"
            )
        path = ARN_RESOURCE_PATHS.get(type_, "")
        return f"arn:{MOCK_PARTITION}:{service}:{self.region}:{self.account_id}:{path}{physical}"


def _physical_name(args: pulumi.runtime.MockResourceArgs) -> str:
    """The name AWS would know the resource by: the explicit one, else a stable generated one."""
    for key in ("bucket", "name", "functionName", "roleName", "pipelineName", "modelPackageGroupName"):
        value = args.inputs.get(key)
        if isinstance(value, str) and value:
            return value
    digest = hashlib.sha256(f"{args.typ}::{args.name}".encode()).hexdigest()[:12]
    return f"{args.name}-{digest}"


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """The mock monitor, keeping what the plain one drops: parents and the inputs as declared."""

    def __init__(self, mocks: PlanMocks) -> None:
        super().__init__(mocks)
        self.records: list[PlannedResource] = []
        self._lock = threading.Lock()

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        response = super().RegisterResource(request)
        if request.type != STACK_TYPE:
            registration = self.resources[response.urn]
            record = PlannedResource(
                urn=response.urn,
                type=request.type,
                name=request.name,
                parent_urn=request.parent,
                custom=bool(request.custom),
                inputs=rpc.deserialize_properties(request.object),
                outputs=registration.state,
                id=registration.id or "",
                dependencies=_dependencies(request),
                aliases=_alias_urns(request, response.urn),
            )
            with self._lock:
                self.records.append(record)
        return response


def _dependencies(request: Any) -> frozenset[str]:
    urns = set(request.dependencies)
    for property_dependencies in request.propertyDependencies.values():
        urns.update(property_dependencies.urns)
    return frozenset(urns)


def _alias_urns(request: Any, urn: str) -> tuple[str, ...]:
    """The URNs of the resource's aliases, as the engine computes them from the alias specs."""
    head, _, _ = urn.rpartition("::")  # urn:pulumi:STACK::PROJECT::QUALIFIED_TYPE
    prefix, _, own_qualified = head.rpartition("::")
    own_parent_types = own_qualified.rpartition("$")[0]
    found = []
    for alias in request.aliases:
        if alias.urn:
            found.append(alias.urn)
            continue
        spec = alias.spec
        type_ = spec.type or request.type
        if spec.noParent:
            parent_types = ""
        elif spec.parentUrn:
            parent_types = spec.parentUrn.rpartition("::")[0].rpartition("::")[2]
        else:
            parent_types = own_parent_types
        qualified = f"{parent_types}${type_}" if parent_types else type_
        found.append(f"{prefix}::{qualified}::{spec.name or request.name}")
    return tuple(found)


def _without_source_positions() -> None:
    """The SDK records each resource's source position from a full stack extraction (reading every
    frame's source line): a tenth of a plan's time, for positions only an engine displays. The
    mock runtime has no engine."""
    from pulumi.runtime import resource as runtime_resource  # noqa: PLC0415

    source_pb2 = getattr(runtime_resource, "source_pb2", None)
    if source_pb2 is None or not hasattr(runtime_resource, "_get_stack_trace"):
        return  # another SDK version: leave it as it is
    empty = source_pb2.StackTrace()
    runtime_resource._get_stack_trace = lambda: empty


def run_offline(stack: str, values: Mapping[str, Any] | None = None, root: Path | None = None) -> Plan:
    """Run the program for ``stack`` under mocks and return everything it declared.

    ``values`` overrides the stack file's config (tests use it for variants); otherwise
    ``Pulumi.<stack>.yaml`` is read. Config errors raise :class:`StackConfigError`, an unknown
    stack :class:`UnknownStackError`, exactly as ``pulumi up`` would stop on them.
    """
    config_values = dict(values) if values is not None else read_stack_values(stack, root or project_root())
    return OfflineRun(stack, config_values).execute()


class OfflineRun:
    """One execution of the program under mocks; ``plan`` holds what was declared, even on failure."""

    def __init__(self, stack: str, values: Mapping[str, Any]) -> None:
        self.values = dict(values)
        self.plan = Plan(stack)
        self.monitor = RecordingMonitor(PlanMocks(str(self.values.get("aws:region", "us-east-1"))))

    def execute(self) -> Plan:
        # A fresh context per run: Pulumi keeps its settings, config and root stack in context variables.
        try:
            contextvars.Context().run(self._run)
        finally:
            self.plan.resources = list(self.monitor.records)
        return self.plan

    def _run(self) -> None:
        # Whatever ran before in this process (an asyncio.run, a server) may have left no event loop.
        _ensure_event_loop()
        _without_source_positions()
        pulumi.runtime.set_mocks(
            self.monitor.mocks, project=PROJECT, stack=self.plan.stack, preview=False, monitor=self.monitor
        )
        pulumi.runtime.set_all_config(to_pulumi_config(self.values))
        _sync_await(run_pulumi_func(self._program))

    async def _program(self) -> None:
        runpy.run_path(str(PROGRAM), run_name="__main__")
        exported = getattr(get_root_resource(), "outputs", {})
        self.plan.outputs = await pulumi.Output.from_input(exported).future() or {}
