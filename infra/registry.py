"""ModelRegistry: the model package group every trained model version is registered in.

Versions arrive as ``PendingManualApproval``; only an approved version may be deployed.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

COMPONENT_TYPE = "mlplatform:index:ModelRegistry"


@dataclass
class ModelRegistryArgs:
    """Inputs of a :class:`ModelRegistry`: the stack's name prefix."""

    name_prefix: str


class ModelRegistry(pulumi.ComponentResource):
    """The model package group of this stack."""

    group: aws.sagemaker.ModelPackageGroup

    def __init__(
        self, name: str, args: ModelRegistryArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(COMPONENT_TYPE, name, None, opts)
        self.group_name = f"{args.name_prefix}-models"
        self.group = aws.sagemaker.ModelPackageGroup(
            f"{name}-group",
            model_package_group_name=self.group_name,
            model_package_group_description=f"{args.name_prefix}: model versions from the training pipeline",
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs(
            {"modelPackageGroupName": self.group_name, "modelPackageGroupArn": self.group.arn}
        )
