"""An image's tag is the content hash of its Dockerfile and of every file it copies, after
``.dockerignore``: the images workflow and ``pulumi up`` compute it with the same function."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from infra.images import (
    IMAGE_KINDS,
    DockerIgnore,
    ImageTagError,
    copied_sources,
    dockerfile_path,
    image_files,
    image_tag,
)
from infra.stack_config import project_root

ROOT = project_root()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of what the images are built from: the Dockerfiles, .dockerignore and copied folders."""
    for name in ("docker", "handlers"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / ".dockerignore", tmp_path / ".dockerignore")
    return tmp_path


def test_the_files_are_what_the_dockerfile_copies_less_the_dockerignore() -> None:
    for kind in IMAGE_KINDS:
        files = image_files(kind)
        # THEN the server's code and the pinned requirements are in, bytecode and other packages out
        assert "handlers/serving/server.py" in files
        assert "handlers/__init__.py" in files
        assert "docker/serving-requirements.txt" in files
        assert not any("__pycache__" in f or f.endswith(".pyc") for f in files)
        assert not any(f.startswith(("handlers/api/", "handlers/deployer/", "infra/")) for f in files)
        # AND every file lies under a source the Dockerfile copies
        sources = copied_sources(dockerfile_path(kind).read_text())
        assert all(any(f == s or f.startswith(f"{s}/") for s in sources) for f in files)


def test_the_same_content_gives_the_same_tag(project: Path) -> None:
    # GIVEN a copy of the project with bytecode beside the sources (what a test run leaves)
    cache = project / "handlers" / "serving" / "__pycache__"
    cache.mkdir()
    (cache / "server.cpython-311.pyc").write_bytes(b"\x00bytecode")
    # THEN its tags are the checkout's: the copy's location and ignored files do not count
    assert {kind: image_tag(kind, project) for kind in IMAGE_KINDS} == {
        kind: image_tag(kind) for kind in IMAGE_KINDS
    }
    assert len(image_tag("cpu")) == 32 and image_tag("cpu") != image_tag("gpu")


@pytest.mark.parametrize(
    ("changed", "cpu_changes"),
    [
        ("handlers/serving/server.py", True),
        ("handlers/common/errors.py", True),
        ("docker/serving-requirements.txt", True),
        ("docker/serving-gpu.Dockerfile", False),
        ("handlers/deployer/plan.py", False),
    ],
)
def test_a_change_to_an_input_gives_a_new_tag(project: Path, changed: str, cpu_changes: bool) -> None:
    # GIVEN the CPU and GPU tags of the copy
    before = {kind: image_tag(kind, project) for kind in IMAGE_KINDS}
    # WHEN one file changes
    path = project / changed
    path.write_text(path.read_text() + "\n# changed\n")
    after = {kind: image_tag(kind, project) for kind in IMAGE_KINDS}
    # THEN the CPU tag changes exactly when the CPU image copies that file (or is built from it)
    assert (after["cpu"] != before["cpu"]) is cpu_changes
    assert (after["gpu"] != before["gpu"]) is (changed != "handlers/deployer/plan.py")


def test_a_new_file_in_a_copied_folder_gives_a_new_tag(project: Path) -> None:
    before = image_tag("cpu", project)
    (project / "handlers" / "serving" / "extra.py").write_text("X = 1\n")
    assert image_tag("cpu", project) != before


def test_the_executable_bit_counts(project: Path) -> None:
    before = image_tag("cpu", project)
    (project / "handlers" / "serving" / "server.py").chmod(0o755)
    assert image_tag("cpu", project) != before


def test_a_missing_copied_file_is_named(project: Path) -> None:
    (project / "docker" / "serving-requirements.txt").unlink()
    with pytest.raises(ImageTagError, match="copies docker/serving-requirements.txt, which does not exist"):
        image_tag("cpu", project)


def test_an_unknown_image_names_the_allowed_ones() -> None:
    with pytest.raises(ImageTagError, match="unknown image 'tpu'; allowed: cpu, gpu"):
        image_tag("tpu")


def test_copy_instructions_are_read_as_docker_reads_them() -> None:
    # GIVEN a Dockerfile with continued lines, flags, the JSON form and a copy from another stage
    dockerfile = (
        "FROM python:3.11-slim AS build\n"
        "# COPY commented/out .\n"
        "COPY --chown=1000:1000 a.txt \\\n"
        "     ./b/ /dest/\n"
        'COPY ["c.txt", "/dest/"]\n'
        "COPY --from=build /opt/venv /opt/venv\n"
        "ADD d /d\n"
    )
    # THEN the build-context sources are exactly those
    assert copied_sources(dockerfile) == ["a.txt", "b", "c.txt", "d"]


def test_urls_and_globs_are_refused_because_they_cannot_be_hashed() -> None:
    with pytest.raises(ImageTagError, match="no URLs or globs"):
        copied_sources("COPY handlers/*.py /x/\n")


def test_dockerignore_patterns(tmp_path: Path) -> None:
    # GIVEN patterns of each kind Docker supports
    path = tmp_path / ".dockerignore"
    path.write_text("# comment\n**/__pycache__\n*.md\n!README.md\n/build\ndocs/*.txt\n")
    ignore = DockerIgnore.read(path)
    # THEN the last matching pattern decides, ** spans folders, a folder takes its contents along
    assert ignore.excludes("handlers/serving/__pycache__/server.cpython-311.pyc")
    assert ignore.excludes("__pycache__/x.pyc")
    assert ignore.excludes("NOTES.md") and not ignore.excludes("README.md")
    assert not ignore.excludes("docs/guide.md")  # * does not cross folders
    assert ignore.excludes("build/lib/x.py")
    assert ignore.excludes("docs/a.txt") and not ignore.excludes("docs/sub/a.txt")
    assert not ignore.excludes("handlers/serving/server.py")


# --- the command line the workflow calls -------------------------------------------------------------------


def run_cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "infra.images", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("kind", IMAGE_KINDS)
def test_the_tag_command_prints_the_programs_tag(kind: str) -> None:
    result = run_cli("tag", kind)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{image_tag(kind)}\n"


def test_the_repository_command_prints_the_stacks_repository() -> None:
    result = run_cli("repository", "gpu", "--stack", "prod")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "mlp-prod/serving-gpu\n"


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (("tag", "tpu"), "invalid choice: 'tpu'"),
        (("repository", "cpu", "--stack", "nope"), "nope"),
    ],
)
def test_mistakes_are_one_line_and_exit_2(argv: tuple[str, ...], says: str) -> None:
    result = run_cli(*argv)
    assert result.returncode == 2
    assert result.stdout == ""
    assert says in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 2  # argparse: usage line + the error
