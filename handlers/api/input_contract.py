"""Which input contract the served model has: its input schema, or none (requests pass through).

The deployer publishes a version's ``input-schema.json`` where ``MODEL_INPUT_SCHEMA_URI`` points and
withdraws it for a version that has none (a model brought from elsewhere), so a missing object means
"no schema", not a fault. A schema that is there but invalid, or unreadable (access denied), stays a
configuration error: the API must not silently stop validating.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from handlers.common.input_schema import SCHEMA_ENV, SCHEMA_URI_ENV, AnyInputSchema, load_input_schema

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_MISSING = frozenset({"NoSuchKey", "404", "NotFound"})


def deployed_input_schema(
    environ: Mapping[str, str], s3_client_factory: Callable[[], S3Client] | None = None
) -> AnyInputSchema | None:
    """The served model's input schema, or None when the deployment has none.

    None when neither ``MODEL_INPUT_SCHEMA`` nor ``MODEL_INPUT_SCHEMA_URI`` is set, or when the
    object the URI names does not exist; raises ``ConfigurationError`` for a schema that is invalid.
    """
    if not environ.get(SCHEMA_ENV, "").strip() and not environ.get(SCHEMA_URI_ENV, "").strip():
        return None
    try:
        return load_input_schema(environ, s3_client_factory)
    except ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code", "")) in _MISSING:
            return None
        raise
