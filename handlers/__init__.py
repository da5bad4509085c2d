"""What runs inside AWS Lambda and inside the serving container: one sub-package per runtime.

- ``api``, ``deployer``, ``monitoring``: one Lambda function each, whose entry point
  is ``<package>.handler.lambda_handler``; powertools and botocore, never torch, pulumi or the
  SageMaker SDK.
- ``registry``: the model registry client and the champion gate, shared by the deployer and ``mlctl``.
- ``common``: what every package shares (errors, AWS clients, S3 URIs, the input schema, contracts).
- ``serving``: the model server and the SageMaker inference script; the only package here that
  imports torch.

A package's modules import ``common`` and ``registry``, never another runtime's package.
"""
