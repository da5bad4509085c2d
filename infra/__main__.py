"""The ml-platform Pulumi program: read config once, build the components, export their outputs."""

import pulumi

from infra.context import create_stack_context, load_stack_config_from_pulumi
from infra.data_lake import DataLake, DataLakeArgs

config = load_stack_config_from_pulumi()  # bad config stops here, before any resource
context = create_stack_context(config)

data_lake = DataLake(
    "data-lake",
    DataLakeArgs(
        name_prefix=config.name_prefix,
        region=config.region,
        account_id=context.account_id,
        partition=context.partition,
        data=config.data,
    ),
    opts=context.component_opts(),
)

pulumi.export("environment", config.environment.value)
pulumi.export("region", config.region)
pulumi.export("bucketNames", data_lake.bucket_names)
pulumi.export("bucketArns", data_lake.bucket_arns)
pulumi.export("kmsKeyArn", data_lake.key.arn)
