"""The Lambda deployment zip: only what the handlers need, deterministic, and no heavy imports."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from handlers import packaging


def test_handlers_zip_holds_the_handlers_and_their_local_imports_only(tmp_path: Path) -> None:
    # WHEN the zip is built
    artifact = packaging.build_handlers_zip(tmp_path)
    names = zipfile.ZipFile(artifact.path).namelist()  # type: ignore[arg-type]
    # THEN both entry points and what they import are there, in order, and nothing else
    expected = {"__init__", "predict_api", "preprocess_batch", "api_errors", "input_schema", "exceptions"}
    assert {f"handlers/{module}.py" for module in expected} <= set(names)
    assert names == sorted(names)
    assert "handlers/inference.py" not in names  # the serving container's code (torch)
    assert "handlers/packaging.py" not in names
    assert not [n for n in names if "test" in n or "__pycache__" in n or n.endswith(".pyc")]
    assert artifact.files == len(names) and artifact.zipped_bytes < 5 * 1024 * 1024


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


def test_cli_prints_a_size_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert packaging.main(["--out", str(tmp_path), "--layer", "public"]) == 0
    report = capsys.readouterr().out
    assert "handlers" in report and "AWSLambdaPowertoolsPythonV3-python311-x86_64" in report
    assert (tmp_path / "handlers.zip").is_file() and not (tmp_path / "powertools-layer.zip").exists()
