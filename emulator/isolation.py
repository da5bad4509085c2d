"""Local mode never reaches real AWS and never holds a user's secrets in the open.

- :func:`without_user_aws` is the environment of the emulator: the user's AWS credentials,
  profile and config files are gone, so nothing it starts inherits them and a missing profile
  cannot break it; its clients use the emulator's own key pair (:data:`EMULATOR_CREDENTIALS`).
- :func:`user_aws_hidden` does the same for this process while local mode runs handler code in it.
- :func:`without_aws` is the environment of a process that calls no AWS at all (a model server).
- :func:`write_private` writes a file only its owner can read (state files hold the API key).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import NamedTuple

# What botocore reads to find credentials or a profile (beside the config files named below).
USER_AWS_VARIABLES = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
)
PRIVATE_FILE_MODE = 0o600


class AccessKeyPair(NamedTuple):
    access_key_id: str
    secret_access_key: str


# The emulator's own AWS identity. moto checks no signature; the local API Gateway under IAM auth
# accepts requests signed with this pair only, so a client signs with it, never with a user's keys.
EMULATOR_CREDENTIALS = AccessKeyPair(access_key_id="local", secret_access_key="local")


def without_user_aws(environment: Mapping[str, str]) -> dict[str, str]:
    """``environment`` without the user's AWS identity: for the emulator and all it starts."""
    isolated = {name: value for name, value in environment.items() if name not in USER_AWS_VARIABLES}
    # No profile, SSO or credential_process from the user's files; no instance metadata lookups.
    isolated.update(
        AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull, AWS_EC2_METADATA_DISABLED="true"
    )
    return isolated


@contextlib.contextmanager
def user_aws_hidden() -> Iterator[None]:
    """Within the block, this process's environment is :func:`without_user_aws`'s; restored after."""
    saved = dict(os.environ)
    isolated = without_user_aws(saved)
    os.environ.clear()
    os.environ.update(isolated)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def without_aws(environment: Mapping[str, str]) -> dict[str, str]:
    """``environment`` without any ``AWS_*`` variable: for processes that call no AWS."""
    return {name: value for name, value in environment.items() if not name.startswith("AWS_")}


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only (0600), replacing it whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.unlink(missing_ok=True)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    with os.fdopen(descriptor, "w", encoding="utf-8") as out:
        out.write(text)
    temporary.replace(path)  # readers never see half a file
