"""The code every Lambda function of the stack runs: one handlers zip and one powertools layer.

Built once per program run (``infra/__main__.py``) and handed to each component that declares
functions. The zip is deterministic, so an unchanged build changes no function; the layer zip is
cached per powertools version, since building it downloads from the package index.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_aws as aws

from infra.lambda_package import (
    DEFAULT_OUT,
    LAMBDA_RUNTIME,
    LAYER_LAYOUT_VERSION,
    build_handlers_zip,
    build_layer_zip,
)

# infra/lambda_package.py downloads the layer for manylinux2014_x86_64: the functions must match it.
ARCHITECTURE = "x86_64"
LAYER_CACHE_DIR = DEFAULT_OUT / "layer-cache"
# The layer was first declared inside the API component: its logical name stays, and an alias
# names its old parent, so a stack deployed before keeps the same layer (no replacement).
LAYER_RESOURCE_NAME = "api-powertools-layer"
PREVIOUS_PARENT = ("api", "mlplatform:index:PredictionApi")


@dataclass(frozen=True)
class LambdaCode:
    """What every function deploys: the handlers zip, its hash (Lambda's CodeSha256) and the layer."""

    archive: pulumi.Archive
    code_hash: str
    layer_arn: pulumi.Input[str]


def build_lambda_code(
    name_prefix: str, configured_layer_arn: str | None, opts: pulumi.ResourceOptions | None = None
) -> LambdaCode:
    """The handlers zip, and the configured layer ARN or our own layer version built from the cache."""
    handlers_zip = build_handlers_zip()
    assert handlers_zip.path is not None
    layer_arn = configured_layer_arn or powertools_layer(name_prefix, opts)
    return LambdaCode(
        pulumi.FileArchive(str(handlers_zip.path)), source_code_hash(handlers_zip.path), layer_arn
    )


def previous_parent_alias() -> pulumi.Alias:
    """Where resources that moved out of the API component were declared before."""
    name, type_ = PREVIOUS_PARENT
    return pulumi.Alias(parent=pulumi.create_urn(name, type_))


def source_code_hash(path: Path) -> str:
    """What Lambda reports as CodeSha256: base64 of the zip's SHA-256."""
    return base64.b64encode(hashlib.sha256(path.read_bytes()).digest()).decode()


def cached_layer_name() -> str:
    """The cached layer zip's name: one per powertools version, runtime, platform and layout."""
    version = importlib.metadata.version("aws-lambda-powertools")
    return f"powertools-{version}-{LAMBDA_RUNTIME}-{ARCHITECTURE}-v{LAYER_LAYOUT_VERSION}.zip"


def powertools_layer_zip(cache_dir: Path | None = None) -> Path:
    """The powertools layer zip, built once per powertools version and reused afterwards.

    ``build_layer_zip`` downloads from the package index (10 s or more) and always rebuilds, so
    every ``pulumi preview`` and offline plan would pay for it. The cached zip is keyed by the
    powertools version installed; delete the folder to force a rebuild.
    """
    folder = cache_dir or LAYER_CACHE_DIR
    cached = folder / cached_layer_name()
    if cached.is_file():
        return cached
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        artifact = build_layer_zip(Path(scratch))
        if artifact.note.startswith("copied"):
            pulumi.log.warn(f"powertools layer {artifact.note}; check it matches Lambda's platform")
        assert artifact.path is not None
        # Built aside and renamed into place: a concurrent run never reads a half-written zip.
        artifact.path.replace(cached)
    return cached


def powertools_layer(name_prefix: str, opts: pulumi.ResourceOptions | None = None) -> pulumi.Output[str]:
    """Our own layer version of aws-lambda-powertools, from the cached zip."""
    path = powertools_layer_zip()
    layer = aws.lambda_.LayerVersion(
        LAYER_RESOURCE_NAME,
        layer_name=f"{name_prefix}-powertools",
        description="aws-lambda-powertools[parser,tracer] for the platform's functions",
        code=pulumi.FileArchive(str(path)),
        source_code_hash=source_code_hash(path),
        compatible_runtimes=[LAMBDA_RUNTIME],
        compatible_architectures=[ARCHITECTURE],
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(aliases=[previous_parent_alias()])),
    )
    return layer.arn
