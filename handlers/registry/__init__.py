"""The model registry as typed versions (SageMaker model package groups) and the champion gate that
decides whether a version may replace the served one; used by the deployer Lambda and ``mlctl``."""
