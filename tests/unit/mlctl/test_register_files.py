"""What ``mlctl models register`` decides before any model is loaded: the archive's layout and
bytes, the evaluation report's format, the address of a set of files."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from mlctl.evaluation_file import read_baseline, read_evaluation_report
from mlctl.model_archive import ArtifactError, build_archive, check_layout, file_sha256
from mlctl.register import files_sha256, upload_once
from mlctl.targets import CommandError


@pytest.mark.parametrize(
    "members",
    [
        ["model.pt"],
        ["model.pt2"],
        ["weights.pth"],
        ["model.pth", "code/inference.py"],
        ["model.bin", "config.json", "code/inference.py", "code/requirements.txt"],
        ["model.pt", "model.pt2"],  # the default handler takes model.pt first
    ],
)
def test_layouts_a_sagemaker_pytorch_container_serves_pass(members: list[str]) -> None:
    check_layout(members, "model.tar.gz")


@pytest.mark.parametrize(
    ("members", "problem"),
    [
        ([], "is empty"),
        (["code/inference.py"], "no weights beside code/"),
        (["README.md"], "neither code/inference.py nor"),
        (["model.onnx", "code/helpers.py"], "neither code/inference.py nor"),
        (["model/model.pt", "model/code/inference.py"], "everything under model/"),
        (["a.pt", "b.pt"], "several model files ['a.pt', 'b.pt']"),
    ],
)
def test_layouts_no_container_could_serve_are_refused_naming_what_is_missing(
    members: list[str], problem: str
) -> None:
    with pytest.raises(ArtifactError, match="model.tar.gz") as refused:
        check_layout(members, "model.tar.gz")
    assert problem in str(refused.value)


def make_folder(root: Path) -> Path:
    (root / "code" / "__pycache__").mkdir(parents=True)
    (root / "weights.pth").write_bytes(b"\x00weights")
    (root / "code" / "inference.py").write_text("def model_fn(model_dir):\n    return None\n")
    (root / "code" / "__pycache__" / "inference.cpython-311.pyc").write_bytes(b"cache")
    return root


def test_a_folder_packs_to_the_same_bytes_every_time(tmp_path: Path) -> None:
    # GIVEN the same files in two folders, written at different times
    first = build_archive(make_folder(tmp_path / "one"), tmp_path / "out-one")
    second = build_archive(make_folder(tmp_path / "two"), tmp_path / "out-two")
    # THEN both archives are identical, hold no cache files, and are addressed by their sha256
    assert first.path.read_bytes() == second.path.read_bytes()
    assert first.sha256 == second.sha256 == file_sha256(second.path)
    assert first.members == ("code/inference.py", "weights.pth")
    # AND a changed byte is a new address
    (tmp_path / "two" / "weights.pth").write_bytes(b"\x01weights")
    assert build_archive(tmp_path / "two", tmp_path / "out-three").sha256 != first.sha256


def test_an_existing_archive_is_used_as_it_is(tmp_path: Path) -> None:
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as out:
        info = tarfile.TarInfo("./model.pt")
        info.size = 3
        out.addfile(info, io.BytesIO(b"abc"))
    built = build_archive(archive, tmp_path / "work")
    assert built.path == archive and built.members == ("model.pt",)
    assert not (tmp_path / "work").exists()


def test_an_archive_member_leaving_the_folder_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as out:
        info = tarfile.TarInfo("../model.pt")
        info.size = 1
        out.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(ArtifactError, match="leaves the archive's folder"):
        build_archive(archive, tmp_path / "work")


def test_a_lone_model_file_is_packed_under_the_name_the_default_handler_loads(tmp_path: Path) -> None:
    (tmp_path / "sensors-v3.pt2").write_bytes(b"program")
    built = build_archive(tmp_path / "sensors-v3.pt2", tmp_path / "work")
    assert built.members == ("model.pt2",)


def test_the_files_address_changes_with_any_name_or_byte() -> None:
    files = {"evaluation.json": b"{}", "input-schema.json": b'{"kind": "text"}'}
    assert files_sha256(files) == files_sha256(dict(reversed(files.items())))
    assert files_sha256(files) != files_sha256({**files, "evaluation.json": b"{ }"})
    assert files_sha256(files) != files_sha256(
        {"evaluation.json": b"{}", "baseline.json": b'{"kind": "text"}'}
    )


def test_a_report_in_the_evaluation_format_gives_metrics_directions_and_dataset(tmp_path: Path) -> None:
    document = {
        "metrics": {"f1": {"value": 0.8, "direction": "higher"}, "mape": {"value": 12, "direction": "lower"}},
        "dataset_version": "v7",
        "samples": 10,
        "model": "anything else is kept",
    }
    path = tmp_path / "evaluation.json"
    path.write_text(json.dumps(document))
    report = read_evaluation_report(path)
    assert report.metrics == {"f1": 0.8, "mape": 12.0}
    assert report.directions == {"f1": "higher", "mape": "lower"}
    assert report.dataset_version == "v7"
    assert report.content == path.read_bytes()


def test_a_non_finite_metric_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evaluation.json"
    path.write_text('{"metrics": {"rmse": {"value": NaN, "direction": "lower"}}}')
    with pytest.raises(CommandError, match="finite number"):
        read_evaluation_report(path)


def test_a_baseline_needs_the_monitors_format(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps({"format": "ml-platform/baseline/v1", "features": {}}))
    assert read_baseline(path).content == path.read_bytes()
    path.write_text(json.dumps({"format": "v0", "features": {}}))
    with pytest.raises(CommandError, match="is not a baseline"):
        read_baseline(path)


class RacingS3:
    """S3 where another registration puts the same key between our check and our put."""

    def __init__(self) -> None:
        self.puts: list[dict[str, object]] = []

    def head_object(self, **_: object) -> None:
        raise ClientError({"Error": {"Code": "404", "Message": "Not Found"}}, "HeadObject")

    def put_object(self, **request: object) -> None:
        self.puts.append(request)
        raise ClientError({"Error": {"Code": "PreconditionFailed", "Message": "exists"}}, "PutObject")


def test_an_upload_never_overwrites_a_key_written_meanwhile(capsys: pytest.CaptureFixture[str]) -> None:
    s3 = RacingS3()
    uri = upload_once(s3, "artifacts", "registered-models/abc/model.tar.gz", b"model")
    assert uri == "s3://artifacts/registered-models/abc/model.tar.gz"
    assert [put["IfNoneMatch"] for put in s3.puts] == ["*"]  # the put was conditional
    assert "already there" in capsys.readouterr().err
