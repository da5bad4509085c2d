"""Shared by every Lambda package, ``mlctl`` and the Pulumi program: the error base class, lazily
made AWS clients, S3 URIs, instance types, the model's input schema, and the values a producer and
its consumers must agree on (``contracts``). Light: pydantic and botocore at most."""
