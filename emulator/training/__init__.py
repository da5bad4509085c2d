"""SageMaker training jobs run on this machine, the way SageMaker runs them: the container's
``/opt/ml`` tree, channels from S3, the training contract's environment, metrics, checkpoints and
artifacts (docs/local-platform.md)."""
