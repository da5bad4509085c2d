"""``mlctl models register``: a model trained elsewhere, checked, uploaded and registered for approval.

In order, and nothing is uploaded until every check has passed:

1. the option files are read and checked (``mlctl.evaluation_file``);
2. the model becomes one ``model.tar.gz`` (``mlctl.model_archive``), which the model server's own
   loading code loads in a subprocess and uses to answer one request (``mlctl.model_check``);
3. the serving image is the one the training pipeline registers with: the stack's image for the
   family (CPU or GPU) of its ``serving.instanceType``, from the stack output ``servingImages``
   (the platform's model server, or SageMaker's PyTorch image with ``serving.container:
   sagemaker-dlc``);
4. the files are uploaded, content-addressed, into the stack's artifacts bucket; a key that exists
   already holds the same bytes (its name is their sha256) and is reused, never overwritten::

       registered-models/<sha256 of model.tar.gz>/model.tar.gz
       registered-models/<sha256 of model.tar.gz>/evaluation/<sha256 of the files>/evaluation.json
                                                                                   input-schema.json
                                                                                   baseline.json

   The input schema and baseline lie beside the report, where the deployer looks for a version's
   serving files (``handlers/deployer/serving_files.py``) and publishes them once it serves;
5. the version is registered in the stack's model package group as ``PendingManualApproval``:
   the report as its ``ModelMetrics.ModelQuality.Statistics``, each metric as ``metric.<name>`` and
   its direction as ``direction.<name>``. Its number is printed alone on stdout (progress goes to
   stderr), and ``mlctl models approve N`` deploys it like any other version.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from handlers.common.contracts import BASELINE_FILE, INPUT_SCHEMA_FILE
from handlers.common.s3_uri import S3Uri
from handlers.deployer.settings import image_family
from handlers.registry.client import PENDING, ModelRegistry
from mlctl.evaluation_file import (
    EvaluationReport,
    ServingFile,
    read_baseline,
    read_evaluation_report,
    read_input_schema,
)
from mlctl.model_archive import ARCHIVE_NAME, ArtifactError, ModelArchive, build_archive
from mlctl.model_check import check_model, check_request
from mlctl.targets import (
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    PlatformTarget,
    client,
    resolve_target,
    run_guarded,
)

REGISTERED_PREFIX = "registered-models"
EVALUATION_FILE = "evaluation.json"
CONTENT_TYPE = "application/json"
SINGLE_PUT_MAX_BYTES = 5 * 1024**3  # S3's limit for one PUT; larger archives go up in parts


@dataclass(frozen=True)
class Submission:
    """Everything a registration uploads, read and checked."""

    report: EvaluationReport | None
    schema: ServingFile | None
    baseline: ServingFile | None

    def evaluation_files(self) -> dict[str, bytes]:
        """The files of the evaluation folder, by name (none without a report)."""
        if self.report is None:
            return {}
        files = {EVALUATION_FILE: self.report.content}
        if self.schema is not None:
            files[INPUT_SCHEMA_FILE] = self.schema.content
        if self.baseline is not None:
            files[BASELINE_FILE] = self.baseline.content
        return files


def add_register_parser(
    actions: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """``mlctl models register``; the caller adds the target options."""
    register = actions.add_parser(
        "register",
        help="check a model trained elsewhere, upload it and register it for approval",
        description="Takes a model.tar.gz, a folder in the SageMaker PyTorch layout, or a lone .pt/.pt2 "
        "file (local path or s3://); loads it and answers one request before anything is uploaded.",
    )
    register.add_argument(
        "source", metavar="PATH|s3://...", help="model.tar.gz, model folder, or .pt/.pt2 file"
    )
    register.add_argument(
        "--metrics", type=Path, metavar="FILE", help="evaluation.json (the platform's format)"
    )
    register.add_argument(
        "--input-schema", type=Path, metavar="FILE", help="what the API validates requests with"
    )
    register.add_argument("--baseline", type=Path, metavar="FILE", help="the drift monitor's baseline")
    register.add_argument(
        "--example", type=Path, metavar="FILE", help="one JSON request the model must answer"
    )
    register.add_argument("--description", metavar="TEXT", help="the version's description")
    register.set_defaults(handler=_register)
    return register


def _register(args: argparse.Namespace) -> int:
    def action() -> int:
        submission = read_submission(args)
        request = check_request(args.example, submission.schema.schema if submission.schema else None)
        target = resolve_target(args)
        with tempfile.TemporaryDirectory(prefix="mlctl-register-") as work:
            source = _local_source(target, args.source, Path(work))
            archive = build_archive(source, Path(work) / "packed", sample_request=request)
            answer = check_model(archive.path, request)
            _say(f"checked: {archive.path.name} loaded and answered {request.decode()[:80]} with {answer}")
            version = _upload_and_register(target, archive, submission, args)
        _say(f"registered {version.label} ({version.status})")
        _say(f"deploy it with: mlctl models approve {version.version}")
        if submission.report is None:
            _say(
                "note: no --metrics, so the champion gate has nothing to compare: while another version "
                "serves, approving it needs --skip-champion-gate"
            )
        print(version.version)
        return EXIT_OK

    return run_guarded("models register", action)


def read_submission(args: argparse.Namespace) -> Submission:
    """The option files, each checked; serving files need a report to lie beside."""
    if (args.input_schema or args.baseline) and not args.metrics:
        raise CommandError(
            "--input-schema and --baseline need --metrics: the deployer finds a version's serving files "
            "beside its evaluation report",
            EXIT_USAGE,
        )
    return Submission(
        report=read_evaluation_report(args.metrics) if args.metrics else None,
        schema=read_input_schema(args.input_schema) if args.input_schema else None,
        baseline=read_baseline(args.baseline) if args.baseline else None,
    )


def serving_image(target: PlatformTarget) -> tuple[str, str]:
    """The image the pipeline registers models with: the stack's for the family of its serving
    instance type (stack output ``servingImages``). Returns (image, instance type)."""
    from infra.stack_config import StackConfigError, UnknownStackError, load_stack_config  # noqa: PLC0415

    try:
        instance_type = load_stack_config(target.stack).serving.instance_type
    except (StackConfigError, UnknownStackError, OSError) as exc:
        raise CommandError(f"cannot read the {target.stack} stack's serving instance type: {exc}") from None
    images = target.output("servingImages")
    family = image_family(instance_type)
    image = images.get(family) if isinstance(images, dict) else None
    if not isinstance(image, str) or not image:
        raise CommandError(
            f"stack {target.stack!r} output 'servingImages' names no {family} image "
            f"(for serving.instanceType {instance_type}): deploy the stack with this version"
        )
    return image, instance_type


def _upload_and_register(
    target: PlatformTarget,
    archive: ModelArchive,
    submission: Submission,
    args: argparse.Namespace,
) -> Any:
    image, instance_type = serving_image(target)  # before any upload: a failure leaves nothing behind
    s3, bucket = client(target, "s3"), _artifacts_bucket(target)
    folder = f"{REGISTERED_PREFIX}/{archive.sha256}"
    artifact_uri = upload_once(s3, bucket, f"{folder}/{ARCHIVE_NAME}", archive.path)
    report_uri = None
    files = submission.evaluation_files()
    if files:
        evaluation = f"{folder}/evaluation/{files_sha256(files)}"
        uris = {name: upload_once(s3, bucket, f"{evaluation}/{name}", body) for name, body in files.items()}
        report_uri = uris[EVALUATION_FILE]
    report = submission.report
    return ModelRegistry(client(target, "sagemaker")).register(
        str(target.output("modelPackageGroupName")),
        artifact_uri,
        image,
        metrics=report.metrics if report else None,
        directions=report.directions if report else None,
        dataset_version=report.dataset_version if report else None,
        evaluation_report_uri=report_uri,
        description=args.description or f"registered with mlctl from {Path(args.source).name}",
        approval_status=PENDING,
        content_types=(CONTENT_TYPE,),
        instance_types=(instance_type,),
    )


def upload_once(s3: Any, bucket: str, key: str, body: bytes | Path) -> str:
    """Put ``body`` (bytes or a file) at ``key`` unless the key exists: its name is the content's
    address, so it holds the same bytes. Returns the URI."""
    uri = f"s3://{bucket}/{key}"
    if _exists(s3, bucket, key):
        _say(f"already there (same content): {uri}")
        return uri
    if isinstance(body, Path) and body.stat().st_size > SINGLE_PUT_MAX_BYTES:
        s3.upload_file(str(body), bucket, key)  # in parts; the check above is all that guards it
    else:
        try:
            with contextlib.ExitStack() as stack:
                content = stack.enter_context(body.open("rb")) if isinstance(body, Path) else body
                # Conditional: a registration running at the same time never overwrites the other's.
                s3.put_object(Bucket=bucket, Key=key, Body=content, IfNoneMatch="*")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "PreconditionFailed":
                raise
            _say(f"already there (same content): {uri}")
            return uri
    _say(f"uploaded {uri}")
    return uri


def _exists(s3: Any, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
            return False
        raise
    return True


def files_sha256(files: dict[str, bytes]) -> str:
    """One address for a set of named files: a change to any name or byte is a new one."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(f"{name}\0{hashlib.sha256(files[name]).hexdigest()}\n".encode())
    return digest.hexdigest()


def _local_source(target: PlatformTarget, source: str, work: Path) -> Path:
    """The source as a local path: an ``s3://`` object is downloaded first."""
    if not source.startswith("s3://"):
        return Path(source).absolute()  # the load check runs in another working folder
    try:
        location = S3Uri.parse(source)
    except ValueError as exc:
        raise CommandError(f"{source}: {exc}", EXIT_USAGE) from None
    name = location.key.rsplit("/", 1)[-1] if location.key else ""
    if not name:
        raise ArtifactError(f"{source} names no object: give a model.tar.gz or a .pt/.pt2 file")
    path = work / "download" / name
    path.parent.mkdir(parents=True)
    try:
        client(target, "s3").download_file(location.bucket, location.key, str(path))
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        raise ArtifactError(f"{source} cannot be downloaded: {code}") from None
    return path


def _artifacts_bucket(target: PlatformTarget) -> str:
    buckets = target.output("bucketNames")
    if not isinstance(buckets, dict) or not buckets.get("artifacts"):
        raise CommandError(
            f"stack {target.stack!r} output 'bucketNames' names no artifacts bucket", EXIT_USAGE
        )
    return str(buckets["artifacts"])


def _say(line: str) -> None:
    print(line, file=sys.stderr)
