"""The Lambda deployment zip: only what the handlers need, deterministic, and no heavy imports."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from infra import lambda_package as packaging


def test_handlers_zip_holds_the_handlers_and_their_local_imports_only(tmp_path: Path) -> None:
    # WHEN the zip is built
    artifact = packaging.build_handlers_zip(tmp_path)
    names = zipfile.ZipFile(artifact.path).namelist()  # type: ignore[arg-type]
    # THEN every entry point and what it imports are there, in order, and nothing else
    expected = {
        "__init__",
        "api/handler",
        "deployer/handler",
        "monitoring/handler",
        "api/error_responses",
        "common/input_schema",
        "common/errors",
    }
    assert {f"handlers/{module}.py" for module in expected} <= set(names)
    assert names == sorted(names)
    assert "handlers/serving/inference.py" not in names  # the serving container's code (torch)
    assert "infra/lambda_package.py" not in names
    assert not [n for n in names if "test" in n]
    assert artifact.files == len(names) and artifact.zipped_bytes < 5 * 1024 * 1024


def test_every_module_in_the_zip_carries_hash_checked_bytecode_of_its_own_source(tmp_path: Path) -> None:
    # WHEN the zip is built
    archive = zipfile.ZipFile(packaging.build_handlers_zip(tmp_path).path)  # type: ignore[arg-type]
    sources = [name for name in archive.namelist() if name.endswith(".py")]
    # THEN each source has bytecode where CPython 3.11 looks for it, and nothing else is compiled
    pycs = {importlib.util.cache_from_source(name) for name in sources}
    assert pycs == {name for name in archive.namelist() if name.endswith(".pyc")}
    assert all(".cpython-311." in name for name in pycs)
    for source in sources:
        header = archive.read(importlib.util.cache_from_source(source))[:16]
        # PEP 552 header: magic, flags (0b11 = hash-based, checked), then the source's hash
        assert header[:4] == importlib.util.MAGIC_NUMBER
        assert int.from_bytes(header[4:8], "little") == 0b11
        assert header[8:16] == importlib.util.source_hash(archive.read(source))


def test_lambda_imports_the_shipped_bytecode_from_a_read_only_task_root(tmp_path: Path) -> None:
    # GIVEN the zip extracted as Lambda does: a read-only task root where nothing can be written
    task_root = tmp_path / "task"
    zipfile.ZipFile(packaging.build_handlers_zip(tmp_path).path).extractall(task_root)  # type: ignore[arg-type]
    # WHEN a handler is imported there with verbose imports
    result = subprocess.run(
        [sys.executable, "-v", "-c", "import handlers.api.handler"],
        capture_output=True, text=True, cwd=task_root, check=True,
        env={**os.environ, "PYTHONPATH": str(task_root), "PYTHONDONTWRITEBYTECODE": "1"},
    )  # fmt: skip
    # THEN every handlers module came from its shipped bytecode: none was compiled at import
    lines = result.stderr.splitlines()
    imported = [line for line in lines if line.startswith("import 'handlers")]
    shipped = f"# code object from '{task_root / 'handlers'}"
    from_bytecode = [
        line
        for line in lines
        if line.startswith(shipped) and "/__pycache__/" in line and line.endswith(".cpython-311.pyc'")
    ]
    assert len(imported) > 3 and len(from_bytecode) == len(imported)


def test_an_edited_source_is_compiled_again_not_served_from_stale_bytecode(tmp_path: Path) -> None:
    # GIVEN the extracted zip with one source changed after the build (e.g. in the console editor)
    task_root = tmp_path / "task"
    zipfile.ZipFile(packaging.build_handlers_zip(tmp_path).path).extractall(task_root)  # type: ignore[arg-type]
    exceptions = task_root / "handlers" / "common" / "errors.py"
    exceptions.write_text(exceptions.read_text() + "\nEDITED_AFTER_BUILD = True\n")
    # WHEN it is imported
    result = subprocess.run(
        [sys.executable, "-c", "import handlers.common.errors as m; print(m.EDITED_AFTER_BUILD)"],
        capture_output=True, text=True, cwd=task_root, check=False,
        env={**os.environ, "PYTHONPATH": str(task_root), "PYTHONDONTWRITEBYTECODE": "1"},
    )  # fmt: skip
    # THEN the edit is what runs
    assert result.returncode == 0 and result.stdout.strip() == "True", result.stderr


def test_bytecode_for_another_python_is_refused_with_the_runtime_named(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(packaging, "LAMBDA_RUNTIME", "python3.13")
    refusal = r"python3.13 runtime needs bytecode compiled by Python 3.13"
    with pytest.raises(packaging.PackagingError, match=refusal):
        packaging.build_handlers_zip(tmp_path)


def test_handlers_zip_is_byte_for_byte_reproducible(tmp_path: Path) -> None:
    first = packaging.build_handlers_zip(tmp_path / "a")
    second = packaging.build_handlers_zip(tmp_path / "b")
    assert first.path and second.path
    assert first.path.read_bytes() == second.path.read_bytes()
    assert {info.date_time for info in zipfile.ZipFile(first.path).infolist()} == {packaging.FIXED_DATE}


def test_a_handler_importing_torch_refuses_to_package(tmp_path: Path) -> None:
    # GIVEN a handler package whose helper imports torch
    (tmp_path / "handlers").mkdir()
    (tmp_path / "handlers" / "__init__.py").write_text("")
    (tmp_path / "handlers" / "api.py").write_text("from handlers import helper\n")
    (tmp_path / "handlers" / "helper.py").write_text("import torch\n")
    # WHEN / THEN
    with pytest.raises(packaging.PackagingError, match="torch"):
        packaging.handler_sources(tmp_path, ["handlers.api"])


def test_offline_layer_has_powertools_and_pydantic_but_not_the_runtime_sdk(tmp_path: Path) -> None:
    # WHEN the layer is built from installed packages (no package index in tests)
    artifact = packaging.build_layer_zip(tmp_path, offline=True)
    names = zipfile.ZipFile(artifact.path).namelist()  # type: ignore[arg-type]
    tops = {name.split("/")[1] for name in names}
    # THEN it is laid out for Lambda (python/...) with the parser and tracer dependencies
    assert all(name.startswith("python/") for name in names)
    assert {"aws_lambda_powertools", "pydantic", "pydantic_core", "aws_xray_sdk"} <= tops
    assert not tops & {"boto3", "botocore", "s3transfer"}
    assert "installed" in artifact.note
    # and the layer's modules ship their bytecode too (pydantic's compile time is most of it)
    assert "python/pydantic/__pycache__/main.cpython-311.pyc" in names


def test_cli_prints_a_size_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert packaging.main(["--out", str(tmp_path), "--layer", "public"]) == 0
    report = capsys.readouterr().out
    assert "handlers" in report and "AWSLambdaPowertoolsPythonV3-python311-x86_64" in report
    assert (tmp_path / "handlers.zip").is_file() and not (tmp_path / "powertools-layer.zip").exists()


def test_an_unchanged_zip_is_kept_and_a_changed_source_rebuilds_it(tmp_path: Path, monkeypatch) -> None:
    # GIVEN a copy of the repository's handlers, built once
    root = tmp_path / "repo"
    shutil.copytree(
        packaging.REPO_ROOT / "handlers", root / "handlers", ignore=shutil.ignore_patterns("__pycache__")
    )
    first = packaging.build_handlers_zip(tmp_path / "out", root)
    built = first.path.read_bytes()  # type: ignore[union-attr]
    compiled: list[int] = []
    real_bytecode = packaging._bytecode

    def counted_bytecode(*args):
        compiled.append(1)
        return real_bytecode(*args)

    monkeypatch.setattr(packaging, "_bytecode", counted_bytecode)
    # WHEN it is built again from the same sources
    again = packaging.build_handlers_zip(tmp_path / "out", root)
    # THEN nothing is compiled and the zip is the same, with the same counts
    assert compiled == [] and again == first and again.path.read_bytes() == built  # type: ignore[union-attr]
    # AND after a source changes, the zip is built anew with it
    errors = root / "handlers" / "common" / "errors.py"
    errors.write_text(errors.read_text() + "\nCHANGED = True\n")
    changed = packaging.build_handlers_zip(tmp_path / "out", root)
    assert compiled == [1]
    assert b"CHANGED = True" in zipfile.ZipFile(changed.path).read("handlers/common/errors.py")  # type: ignore[arg-type]
