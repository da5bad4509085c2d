"""ServingImages: the ECR repositories of the platform's model server images, and their tags.

One repository per image (``docker/serving-cpu.Dockerfile``, ``docker/serving-gpu.Dockerfile``):
encrypted with the stack key, scanned on push, tags immutable, untagged images expired, and
pullable by SageMaker for this account only.

An image's tag is the content hash of what goes into it: the Dockerfile and every file its
``COPY`` instructions take from the build context, less what ``.dockerignore`` leaves out
(:func:`image_tag`). The same checkout always gives the same tag, so the images workflow, which
pushes it, and ``pulumi up``, which serves it, agree without being told; a tag that exists already
holds the same content and is never pushed again (tags are immutable)::

    python -m infra.images tag cpu                      # the tag of the CPU image
    python -m infra.images repository gpu --stack dev   # the GPU image's repository name

CI passes the tags it pushed to ``pulumi up`` (``ML_PLATFORM_SERVING_IMAGE_TAG_CPU`` / ``_GPU``):
the program stops if they are not this checkout's, rather than serve an image nobody pushed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shlex
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

import pulumi
import pulumi_aws as aws

from handlers.deployer.settings import CPU, GPU, image_family
from infra.context import StackIdentity
from infra.stack_config import (
    ServingConfig,
    ServingContainer,
    StackConfigError,
    UnknownStackError,
    load_stack_config,
    project_root,
)

COMPONENT_TYPE = "mlplatform:index:ServingImages"
IMAGE_KINDS = (CPU, GPU)
DOCKER_DIR = "docker"
DOCKERIGNORE = ".dockerignore"
TAG_LENGTH = 32  # hex characters of the sha256: ECR allows 128, 32 never collide in practice
TAG_ENV = {CPU: "ML_PLATFORM_SERVING_IMAGE_TAG_CPU", GPU: "ML_PLATFORM_SERVING_IMAGE_TAG_GPU"}
UNTAGGED_EXPIRY_DAYS = 7
# SageMaker pulls with these (its documented minimum for a private image).
PULL_ACTIONS = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]
# What the DLC path serves with per family: the SDK's image table is keyed by instance type.
DLC_REFERENCE_INSTANCE_TYPES = {CPU: "ml.m5.xlarge", GPU: "ml.g4dn.xlarge"}


class ImageTagError(ValueError):
    """The images cannot be hashed (a Dockerfile or a file it copies is missing), or CI pushed
    tags that are not this checkout's."""


# --- the tag: a content hash of the build's inputs ------------------------------------------------------


def dockerfile_path(kind: str, root: Path | None = None) -> Path:
    """``docker/serving-<kind>.Dockerfile``; an unknown kind names the allowed ones."""
    if kind not in IMAGE_KINDS:
        raise ImageTagError(f"unknown image {kind!r}; allowed: {', '.join(IMAGE_KINDS)}")
    return (root or project_root()) / DOCKER_DIR / f"serving-{kind}.Dockerfile"


def image_tag(kind: str, root: Path | None = None) -> str:
    """The tag of image ``kind``: sha256 over the Dockerfile and every file it copies (path,
    executable bit and content), as the build context holds them after ``.dockerignore``."""
    folder = root or project_root()
    dockerfile = dockerfile_path(kind, folder)
    if not dockerfile.is_file():
        raise ImageTagError(f"{dockerfile.relative_to(folder)} does not exist")
    digest = hashlib.sha256()
    for relative in [dockerfile.relative_to(folder).as_posix(), *image_files(kind, folder)]:
        path = folder / relative
        executable = "x" if os.access(path, os.X_OK) else "-"
        digest.update(f"{relative}\0{executable}\0{hashlib.sha256(path.read_bytes()).hexdigest()}\n".encode())
    return digest.hexdigest()[:TAG_LENGTH]


def image_files(kind: str, root: Path | None = None) -> list[str]:
    """The context files image ``kind``'s ``COPY``/``ADD`` instructions take (sorted, relative)."""
    folder = root or project_root()
    ignore = DockerIgnore.read(folder / DOCKERIGNORE)
    files: set[str] = set()
    for source in copied_sources(dockerfile_path(kind, folder).read_text()):
        path = folder / source
        if path.is_file():
            candidates: Iterable[Path] = [path]
        elif path.is_dir():
            candidates = (p for p in path.rglob("*") if p.is_file())
        else:
            raise ImageTagError(f"{dockerfile_path(kind, folder).name} copies {source}, which does not exist")
        files.update(
            relative
            for candidate in candidates
            if not ignore.excludes(relative := candidate.relative_to(folder).as_posix())
        )
    return sorted(files)


def copied_sources(dockerfile: str) -> list[str]:
    """The build-context sources of every ``COPY``/``ADD`` (not ``--from`` another stage)."""
    sources: list[str] = []
    for instruction in _instructions(dockerfile):
        keyword, _, rest = instruction.partition(" ")
        if keyword.upper() not in {"COPY", "ADD"}:
            continue
        flags = []
        rest = rest.strip()
        while rest.startswith("--"):
            flag, _, rest = rest.partition(" ")
            flags.append(flag)
            rest = rest.strip()
        # The JSON form (COPY ["src", "dest"]) or the shell-like one.
        arguments = json.loads(rest) if rest.startswith("[") else shlex.split(rest)
        if any(flag.startswith("--from=") for flag in flags) or len(arguments) < 2:
            continue
        for source in arguments[:-1]:
            if re.match(r"^[a-z]+://", source) or any(char in source for char in "*?["):
                raise ImageTagError(f"COPY/ADD source {source!r}: name files or folders, no URLs or globs")
            sources.append(PurePosixPath(source.removeprefix("./")).as_posix())
    return sources


def _instructions(dockerfile: str) -> Iterator[str]:
    """Dockerfile instructions with their continuation lines joined, comments left out."""
    current = ""
    for line in dockerfile.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        yield current + stripped
        current = ""
    if current:
        yield current


@dataclass(frozen=True)
class DockerIgnore:
    """``.dockerignore`` as Docker reads it: the last matching pattern decides, ``!`` re-includes,
    ``**`` spans folders, and a pattern matching a folder excludes everything under it."""

    patterns: tuple[tuple[bool, re.Pattern[str]], ...]  # (re-include, pattern)

    @classmethod
    def read(cls, path: Path) -> DockerIgnore:
        lines = path.read_text().splitlines() if path.is_file() else []
        patterns = []
        for line in lines:
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            include = text.startswith("!")
            cleaned = PurePosixPath(text.removeprefix("!").strip().lstrip("/")).as_posix()
            patterns.append((include, re.compile(_pattern_regex(cleaned))))
        return cls(tuple(patterns))

    def excludes(self, relative: str) -> bool:
        parts = relative.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        excluded = False
        for include, pattern in self.patterns:
            if any(pattern.fullmatch(prefix) for prefix in prefixes):
                excluded = not include
        return excluded


def _pattern_regex(pattern: str) -> str:
    regex, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            regex, i = regex + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            regex, i = regex + ".*", i + 2
        elif pattern[i] == "*":
            regex, i = regex + "[^/]*", i + 1
        elif pattern[i] == "?":
            regex, i = regex + "[^/]", i + 1
        else:
            regex, i = regex + re.escape(pattern[i]), i + 1
    return regex


@cache
def checkout_tags() -> dict[str, str]:
    """This checkout's tag per image, checked against the tags CI says it pushed (if it says)."""
    tags = {kind: image_tag(kind) for kind in IMAGE_KINDS}
    for kind, tag in tags.items():
        pushed = os.environ.get(TAG_ENV[kind], "").strip()
        if pushed and pushed != tag:
            raise ImageTagError(
                f"{TAG_ENV[kind]}={pushed} is not this checkout's {kind} image ({tag}): the images "
                "workflow built another commit; run it for this one (docs/deployments.md)"
            )
    return tags


def repository_name(name_prefix: str, kind: str) -> str:
    """``<namePrefix>/serving-<kind>``: each stack has its own repositories."""
    return f"{name_prefix}/serving-{kind}"


# --- the component --------------------------------------------------------------------------------------


@dataclass
class ServingImagesArgs:
    """Inputs of :class:`ServingImages`.

    Parameters
    ----------
    stack: where the repositories live (their names start with its prefix).
    kms_key_arn: the stack key: the images are encrypted with it.
    tags: the tag each image is pushed under (:func:`checkout_tags`).
    """

    stack: StackIdentity
    kms_key_arn: pulumi.Input[str]
    tags: Mapping[str, str]


class ServingImages(pulumi.ComponentResource):
    """One ECR repository per serving image, and the URI each image is served from."""

    repositories: dict[str, aws.ecr.Repository]
    image_uris: dict[str, pulumi.Output[str]]

    def __init__(
        self, name: str, args: ServingImagesArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(COMPONENT_TYPE, name, None, opts)
        self._name = name
        self._args = args
        self.repositories = {kind: self._repository(kind) for kind in IMAGE_KINDS}
        self.image_uris = {
            kind: pulumi.Output.concat(repository.repository_url, ":", args.tags[kind])
            for kind, repository in self.repositories.items()
        }
        self.register_outputs(
            {
                "repositoryArns": {kind: repo.arn for kind, repo in self.repositories.items()},
                "imageUris": self.image_uris,
            }
        )

    def _child(self, **kwargs: Any) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, **kwargs)

    def _repository(self, kind: str) -> aws.ecr.Repository:
        args = self._args
        repository = aws.ecr.Repository(
            f"{self._name}-{kind}-repository",
            name=repository_name(args.stack.name_prefix, kind),
            # A tag names one content hash forever: what a model was deployed with stays pullable.
            image_tag_mutability="IMMUTABLE",
            image_scanning_configuration={"scan_on_push": True},
            encryption_configurations=[{"encryption_type": "KMS", "kms_key": args.kms_key_arn}],
            opts=self._child(),
        )
        aws.ecr.LifecyclePolicy(
            f"{self._name}-{kind}-lifecycle",
            repository=repository.name,
            policy=json.dumps(untagged_expiry_policy()),
            opts=self._child(),
        )
        aws.ecr.RepositoryPolicy(
            f"{self._name}-{kind}-policy",
            repository=repository.name,
            policy=sagemaker_pull_policy(args.stack.account_id),
            opts=self._child(),
        )
        return repository


def untagged_expiry_policy() -> dict[str, Any]:
    """Untagged images (a failed push's leftovers) go after a week; tagged ones stay, since a
    deployed model may still serve from any of them."""
    return {
        "rules": [
            {
                "rulePriority": 1,
                "description": f"expire untagged images after {UNTAGGED_EXPIRY_DAYS} days",
                "selection": {
                    "tagStatus": "untagged",
                    "countType": "sinceImagePushed",
                    "countUnit": "days",
                    "countNumber": UNTAGGED_EXPIRY_DAYS,
                },
                "action": {"type": "expire"},
            }
        ]
    }


def sagemaker_pull_policy(account_id: pulumi.Input[str]) -> pulumi.Output[str]:
    """SageMaker may pull, acting for this account only (confused-deputy protection)."""
    return pulumi.Output.json_dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "SageMakerPullForThisAccount",
                    "Effect": "Allow",
                    "Principal": {"Service": "sagemaker.amazonaws.com"},
                    "Action": PULL_ACTIONS,
                    "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
                }
            ],
        }
    )


@dataclass(frozen=True)
class ServedImages:
    """What the stack's models serve with (``serving.container``): the image per instance
    family, and the repositories the model role must pull from."""

    uris: dict[str, pulumi.Input[str]]
    repository_arns: Sequence[pulumi.Input[str]]

    def for_instance_type(self, instance_type: str) -> pulumi.Input[str]:
        """The image for ``instance_type``'s family (CPU or GPU)."""
        return self.uris[image_family(instance_type)]


def served_images(serving: ServingConfig, images: ServingImages, region: str) -> ServedImages:
    """The platform's images, or SageMaker's PyTorch inference images with ``sagemaker-dlc``."""
    if serving.container is ServingContainer.PLATFORM:
        return ServedImages(
            uris=dict(images.image_uris),
            repository_arns=[repository.arn for repository in images.repositories.values()],
        )
    from infra.pipeline_definition import inference_image_uri  # noqa: PLC0415 - the SageMaker SDK
    from infra.training import image_repository_arn  # noqa: PLC0415

    uris = {kind: inference_image_uri(region, DLC_REFERENCE_INSTANCE_TYPES[kind]) for kind in IMAGE_KINDS}
    return ServedImages(
        uris=dict(uris), repository_arns=sorted({image_repository_arn(uri) for uri in uris.values()})
    )


# --- the command line the images workflow calls ---------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``tag KIND`` or ``repository KIND --stack STACK``: one line on stdout; mistakes are one
    line on stderr and exit 2."""
    parser = argparse.ArgumentParser(prog="python -m infra.images", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    tag = commands.add_parser("tag", help="the content-hash tag of a serving image")
    tag.add_argument("kind", choices=IMAGE_KINDS)
    repository = commands.add_parser("repository", help="a serving image's ECR repository name")
    repository.add_argument("kind", choices=IMAGE_KINDS)
    repository.add_argument("--stack", required=True, help="the stack (Pulumi.<stack>.yaml)")
    args = parser.parse_args(argv)
    try:
        if args.command == "tag":
            print(image_tag(args.kind))
        else:
            print(repository_name(load_stack_config(args.stack).name_prefix, args.kind))
    except (ImageTagError, StackConfigError, UnknownStackError, OSError) as exc:
        print(f"infra.images: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
