"""What every component needs to know about where it is deployed: config, provider, account."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
from pulumi.runtime import config as runtime_config

from infra.stack_config import PROJECT, REGION_KEY, StackConfig, parse_stack_config


def config_values_from_pulumi() -> dict[str, Any]:
    """Every config value of this stack's namespaces, as the Pulumi engine handed them over.

    ``pulumi.Config`` reads one key at a time; enumerating all of them is what lets the schema
    reject unknown keys (a typo must not be silently ignored). The engine passes config in
    ``PULUMI_CONFIG``; the mock runtime sets it with ``set_all_config``.
    """
    values = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    return {key: value for key, value in values.items() if key.startswith(f"{PROJECT}:") or key == REGION_KEY}


def load_stack_config_from_pulumi() -> StackConfig:
    """Validate this stack's config before any resource is declared."""
    return parse_stack_config(config_values_from_pulumi(), source=f"Pulumi.{pulumi.get_stack()}.yaml")


@dataclass(frozen=True)
class StackIdentity:
    """Where a component is deployed: every component's first input."""

    name_prefix: str  # every physical name starts with it
    region: str
    account_id: pulumi.Input[str]
    partition: pulumi.Input[str]

    def arn(self, service: str, resource: pulumi.Input[str]) -> pulumi.Output[str]:
        """``arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE``, for this stack's regional resources."""
        return pulumi.Output.concat(
            "arn:", self.partition, ":", service, ":", self.region, ":", self.account_id, ":", resource
        )


@dataclass(frozen=True)
class StackContext:
    """The validated config and the AWS provider, account and partition every component uses."""

    config: StackConfig
    provider: aws.Provider
    account_id: pulumi.Output[str]
    partition: pulumi.Output[str]

    @property
    def identity(self) -> StackIdentity:
        return StackIdentity(self.config.name_prefix, self.config.region, self.account_id, self.partition)

    def component_opts(self) -> pulumi.ResourceOptions:
        """Components pass the explicit provider on to every child."""
        return pulumi.ResourceOptions(providers={"aws": self.provider})


def create_stack_context(config: StackConfig) -> StackContext:
    provider = aws.Provider(
        "aws",
        region=config.region,
        # Cost-allocation and ownership tags on everything this stack creates.
        default_tags={"tags": config.resource_tags()},
    )
    invoke_opts = pulumi.InvokeOutputOptions(provider=provider)
    identity = aws.get_caller_identity_output(opts=invoke_opts)
    partition = aws.get_partition_output(opts=invoke_opts)
    return StackContext(config, provider, identity.account_id, partition.partition)
