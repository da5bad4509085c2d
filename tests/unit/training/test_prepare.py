"""prepare: malformed rows dropped and counted, dedupe, 70/20/10, stable dataset versions."""

from __future__ import annotations

import hashlib
import json

import pytest

from training_jobs import prepare
from training_jobs.splitting import SPLIT_NAMES, split_of
from training_jobs.tasks import get_task

HEADER = ",".join(get_task("diabetes").header())


def diabetes_row(i: int) -> str:
    return ",".join([str(20 + i), "1", *(f"{i}.5" for _ in range(8)), str(i * 3)])


def write_csv(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([HEADER, *rows]) + "\n")


@pytest.fixture
def messy_csv(tmp_path):
    rows = [diabetes_row(i) for i in range(100)]
    rows += [
        "1,2,3",  # wrong_field_count
        diabetes_row(5).replace("25", "twenty-five", 1),  # not_a_number
        diabetes_row(6).replace("26", "nan", 1),  # non_finite
        diabetes_row(7),  # duplicate
        diabetes_row(8).replace("28", "28.0", 1),  # duplicate once normalised
        "",  # empty_row
    ]
    write_csv(tmp_path / "raw/diabetes.csv", rows)
    return tmp_path / "raw"


def test_malformed_rows_are_dropped_and_counted_by_reason(messy_csv, tmp_path):
    # GIVEN raw rows with one defect of each kind and two duplicates
    # WHEN prepared
    manifest = prepare.prepare("diabetes", messy_csv, tmp_path / "out")
    # THEN each dropped row is counted under its reason and quarantined with it
    assert manifest["rows"] == {
        "read": 106,
        "kept": 100,
        "dropped": {
            "duplicate": 2,
            "empty_row": 1,
            "non_finite": 1,
            "not_a_number": 1,
            "wrong_field_count": 1,
        },
    }
    quarantined = [json.loads(line) for line in (tmp_path / "out" / prepare.QUARANTINE_FILE).open()]
    assert sorted(q["reason"].split(":")[0] for q in quarantined) == sorted(
        ["duplicate", "duplicate", "empty_row", "non_finite", "not_a_number", "wrong_field_count"]
    )


def test_text_rows_are_validated_and_deduped_ignoring_case_and_spacing(tmp_path):
    # GIVEN JSON lines with bad JSON, a missing field, an unknown label, empty text and a near-copy
    lines = [json.dumps({"text": f"message number {i}", "label": "ham"}) for i in range(10)]
    lines += [
        "{not json",
        json.dumps({"text": "no label"}),
        json.dumps({"text": "hello", "label": "eggs"}),
        json.dumps({"text": "   ", "label": "spam"}),
        json.dumps({"text": "MESSAGE   number 3", "label": "spam"}),
    ]
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw/spam.jsonl").write_text("\n".join(lines) + "\n")
    # WHEN prepared
    manifest = prepare.prepare("spam", tmp_path / "raw", tmp_path / "out")
    # THEN each is dropped for its own reason
    assert manifest["rows"]["dropped"] == {
        "duplicate": 1,
        "empty_text": 1,
        "invalid_json": 1,
        "missing_field": 1,
        "unknown_label": 1,
    }
    assert manifest["rows"]["kept"] == 10


def test_each_row_lands_in_the_split_its_content_hash_names(messy_csv, tmp_path):
    # GIVEN 100 clean rows (after cleaning)
    # WHEN prepared
    manifest = prepare.prepare("diabetes", messy_csv, tmp_path / "out")
    # THEN no row is lost or written twice, and each sits in the split of its dedupe key's hash
    task = get_task("diabetes")
    seen = []
    for split in SPLIT_NAMES:
        lines = (tmp_path / "out" / split / "data.csv").read_text().splitlines()[1:]
        assert manifest["files"][f"{split}/data.csv"]["rows"] == len(lines)
        for line in lines:
            assert split_of(task.dedupe_key(task.parse(line))) == split
        seen += lines
    assert len(seen) == len(set(seen)) == 100
    assert manifest["split"]["method"] == "sha256-bucket"


def test_same_input_gives_same_version_and_hashes_match_files(messy_csv, tmp_path):
    # GIVEN the same raw input prepared twice into different folders
    first = prepare.prepare("diabetes", messy_csv, tmp_path / "a")
    second = prepare.prepare("diabetes", messy_csv, tmp_path / "b")
    # THEN the dataset version is the same, and each recorded hash is the file's sha256
    assert first["dataset_version"] == second["dataset_version"]
    for name, entry in first["files"].items():
        assert entry["sha256"] == hashlib.sha256((tmp_path / "b" / name).read_bytes()).hexdigest()
    assert json.loads((tmp_path / "a" / prepare.MANIFEST_FILE).read_text()) == first


def test_changed_input_or_seed_gives_a_new_version(messy_csv, tmp_path):
    # GIVEN a baseline version
    baseline = prepare.prepare("diabetes", messy_csv, tmp_path / "a")["dataset_version"]
    # WHEN one value of the raw data changes, or the split seed does
    raw = messy_csv / "diabetes.csv"
    raw.write_text(raw.read_text().replace(diabetes_row(42), diabetes_row(42).replace("42.5", "42.75"), 1))
    changed = prepare.prepare("diabetes", messy_csv, tmp_path / "b")["dataset_version"]
    reseeded = prepare.prepare("diabetes", messy_csv, tmp_path / "c", seed=1)["dataset_version"]
    # THEN each gives a version of its own
    assert len({baseline, changed, reseeded}) == 3


def test_script_follows_the_processing_contract(messy_csv, tmp_path, monkeypatch, capsys):
    # GIVEN a processing root laid out as /opt/ml/processing would be
    root = tmp_path / "processing"
    (root / "input").mkdir(parents=True)
    (messy_csv / "diabetes.csv").rename(root / "input/diabetes.csv")
    monkeypatch.setenv(prepare.PROCESSING_ROOT_ENV, str(root))
    # WHEN the script runs with only the task named
    assert prepare.main(["--task", "diabetes"]) == 0
    # THEN the splits and manifest land under output/ and the version is printed
    manifest = json.loads((root / "output/manifest.json").read_text())
    assert (root / "output/train/data.csv").is_file()
    assert manifest["dataset_version"] in capsys.readouterr().out


def test_wrong_header_is_refused(tmp_path):
    # GIVEN a CSV whose header does not match the task
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw/x.csv").write_text("a,b\n1,2\n")
    # WHEN prepared THEN it fails, naming the file, rather than silently dropping every row
    with pytest.raises(ValueError, match="header"):
        prepare.prepare("diabetes", tmp_path / "raw", tmp_path / "out")


def test_wrong_header_exits_2_with_one_line_naming_the_file(tmp_path, capsys):
    # GIVEN a CSV whose header does not match the task
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw/x.csv").write_text("a,b\n1,2\n")
    # WHEN the script runs
    code = prepare.main(
        ["--task", "diabetes", "--input-dir", str(tmp_path / "raw"), "--output-dir", str(tmp_path / "o")]
    )
    # THEN it exits 2 with one line naming the file and the expected header
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1
    assert "x.csv" in err
    assert HEADER in err
