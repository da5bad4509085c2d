"""ModelRegistry: the model package group every trained model version is registered in.

Versions arrive as ``PendingManualApproval``; only an approved version may be deployed.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.context import StackIdentity

COMPONENT_TYPE = "mlplatform:index:ModelRegistry"


@dataclass
class ModelRegistryArgs:
    """Inputs of a :class:`ModelRegistry`: the stack it belongs to (its name prefix)."""

    stack: StackIdentity


class ModelRegistry(pulumi.ComponentResource):
    """The model package group of this stack."""

    group: aws.sagemaker.ModelPackageGroup

    def __init__(
        self, name: str, args: ModelRegistryArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(COMPONENT_TYPE, name, None, opts)
        prefix = args.stack.name_prefix
        self.group_name = f"{prefix}-models"
        self.group = aws.sagemaker.ModelPackageGroup(
            f"{name}-group",
            model_package_group_name=self.group_name,
            model_package_group_description=f"{prefix}: model versions from the training pipeline",
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs(
            {"modelPackageGroupName": self.group_name, "modelPackageGroupArn": self.group.arn}
        )
