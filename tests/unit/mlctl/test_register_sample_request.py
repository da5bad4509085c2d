"""``mlctl models register`` puts the request it checks into the archive as code/sample-request.json,
the model server's warm-up request, in each of the three forms a model comes in."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from handlers.common.contracts import SAMPLE_REQUEST_FILE
from mlctl.model_archive import build_archive

REQUEST = b'{"instances": [[0.5, 1.2, -0.3, 0.1]]}'


def tarball(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.uname = len(data), 1_700_000_000, "team"
            archive.addfile(info, io.BytesIO(data))
    return path


def contents(path: Path) -> dict[str, bytes]:
    with tarfile.open(path, "r:gz") as archive:
        return {m.name: archive.extractfile(m).read() for m in archive.getmembers() if m.isfile()}  # type: ignore[union-attr]


def test_a_folder_and_a_lone_model_carry_the_request(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    (folder / "code").mkdir(parents=True)
    (folder / "weights.pth").write_bytes(b"weights")
    (folder / "code" / "inference.py").write_text("def model_fn(model_dir):\n    return None\n")
    packed = build_archive(folder, tmp_path / "out-folder", sample_request=REQUEST)
    assert packed.members == ("code/inference.py", SAMPLE_REQUEST_FILE, "weights.pth")
    assert contents(packed.path)[SAMPLE_REQUEST_FILE] == REQUEST
    (tmp_path / "sensors.pt2").write_bytes(b"program")
    lone = build_archive(tmp_path / "sensors.pt2", tmp_path / "out-lone", sample_request=REQUEST)
    assert lone.members == (SAMPLE_REQUEST_FILE, "model.pt2")
    assert contents(lone.path)[SAMPLE_REQUEST_FILE] == REQUEST


def test_an_archive_is_copied_member_for_member_with_the_request_added(tmp_path: Path) -> None:
    # GIVEN a team's model.tar.gz without a sample request
    given = tarball(tmp_path / "model.tar.gz", {"./model.pt": b"abc", "code/inference.py": b"# code"})
    with tarfile.open(given, "r:gz") as archive:
        before = {m.name: (m.mtime, m.uname, m.mode) for m in archive.getmembers()}
    # WHEN it is built with the checked request
    built = build_archive(given, tmp_path / "work", sample_request=REQUEST)
    # THEN a copy holds every member, bytes and metadata as they were, then the request
    assert built.path != given
    assert contents(built.path) == {
        "./model.pt": b"abc",
        "code/inference.py": b"# code",
        SAMPLE_REQUEST_FILE: REQUEST,
    }
    with tarfile.open(built.path, "r:gz") as archive:
        after = {m.name: (m.mtime, m.uname, m.mode) for m in archive.getmembers()}
        assert archive.getnames()[-1] == SAMPLE_REQUEST_FILE
    assert {name: after[name] for name in before} == before
    # AND the same archive and request always give the same bytes (the key is their sha256)
    again = build_archive(given, tmp_path / "again", sample_request=REQUEST)
    assert again.sha256 == built.sha256


def test_a_sample_request_the_model_brings_is_kept(tmp_path: Path) -> None:
    own = b'{"instances": [[9.0, 9.0, 9.0, 9.0]]}'
    given = tarball(tmp_path / "model.tar.gz", {"model.pt": b"abc", SAMPLE_REQUEST_FILE: own})
    built = build_archive(given, tmp_path / "work", sample_request=REQUEST)
    assert built.path == given  # used as it is
    assert contents(built.path)[SAMPLE_REQUEST_FILE] == own
