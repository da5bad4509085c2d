"""AWS on one machine, for local mode and the tests: moto's server, with SageMaker pipeline
executions, processing and training jobs, hosting, the runtime with data capture and API Gateway
played by real local processes, and the stack's planned resources created in it (``provision``).
Nothing here runs in the cloud; see docs/local-platform.md."""
