"""The generic preparer on a team's JSON-lines text and image folders."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest

from handlers.common.input_schema import ImageInputSchema, TextInputSchema, parse_input_schema
from training_jobs import prepare
from training_jobs.baselines import TEXT_FEATURES, read_baseline
from training_jobs.splitting import SPLIT_NAMES

Image = pytest.importorskip("PIL.Image")


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = prepare.main(argv)
    return code, capsys.readouterr().err


def folders(raw: Path, out: Path) -> list[str]:
    return ["--input-dir", str(raw), "--output-dir", str(out)]


def ticket(i: int) -> dict[str, str]:
    topic = ["billing", "outage", "login"][i % 3]
    return {"body": f"Ticket {i}:  my {topic}   problem\tagain", "queue": topic}


@pytest.fixture
def tickets(tmp_path: Path) -> Path:
    lines = [json.dumps(ticket(i)) for i in range(240)]
    lines += [
        "{not json",
        json.dumps(["a list"]),
        json.dumps({"body": "no queue"}),
        json.dumps({"body": 5, "queue": "login"}),
        json.dumps({"body": "  ", "queue": "login"}),
        json.dumps({"body": "TICKET 3: my billing  problem again", "queue": "login"}),
    ]
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "tickets.jsonl").write_text("\n".join(lines) + "\n")
    return tmp_path / "raw"


def test_text_splits_keep_the_declared_fields_and_normalised_text(tickets, tmp_path, capsys):
    # GIVEN JSON lines whose text and label fields have the team's own names
    out = tmp_path / "out"
    args = ["--format", "jsonl", "--text-field", "body", "--label-field", "queue", *folders(tickets, out)]
    # WHEN prepared
    code, _ = run(args, capsys)
    # THEN every line is in one split, under the same field names, its whitespace as the API leaves it
    assert code == 0
    written = [
        json.loads(line)
        for split in SPLIT_NAMES
        for line in (out / split / "data.jsonl").read_text().splitlines()
    ]
    assert len(written) == 240
    assert {"body": "Ticket 8: my login problem again", "queue": "login"} in written
    manifest = json.loads((out / prepare.MANIFEST_FILE).read_text())
    assert sorted(manifest["classes"]) == ["billing", "login", "outage"]


def test_bad_text_lines_are_quarantined_by_reason(tickets, tmp_path, capsys):
    args = ["--format", "jsonl", "--text-field", "body", "--label-field", "queue"]
    assert run([*args, *folders(tickets, tmp_path / "out")], capsys)[0] == 0
    manifest = json.loads((tmp_path / "out" / prepare.MANIFEST_FILE).read_text())
    assert manifest["rows"]["dropped"] == {
        "duplicate": 1,
        "empty_text": 1,
        "invalid_json": 1,
        "missing_field": 1,
        "not_an_object": 1,
        "wrong_type": 1,
    }


def test_text_input_schema_and_baseline_are_what_the_api_and_monitor_read(tickets, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["--format", "jsonl", "--text-field", "body", "--label-field", "queue", *folders(tickets, out)]
    assert run(args, capsys)[0] == 0
    schema = parse_input_schema((out / prepare.INPUT_SCHEMA_FILE).read_bytes())
    assert isinstance(schema, TextInputSchema)
    baseline = read_baseline(out / "baseline.json")
    assert baseline["feature_names"] == list(TEXT_FEATURES)
    assert baseline["features"]["text_words"]["count"] == len(
        (out / "train" / "data.jsonl").read_text().splitlines()
    )


def test_an_empty_jsonl_file_is_named(tickets, tmp_path, capsys):
    (tickets / "empty.jsonl").write_text("\n")
    code, err = run(["--format", "jsonl", *folders(tickets, tmp_path / "out")], capsys)
    assert code == 2
    assert err.count("\n") == 1
    assert "empty.jsonl is empty" in err


def test_tabular_flags_with_text_data_are_refused_in_one_line(tickets, tmp_path, capsys):
    code, err = run(["--format", "jsonl", "--categorical", "x", *folders(tickets, tmp_path / "out")], capsys)
    assert code == 2
    assert err == "prepare: --categorical applies to tabular data (csv, parquet), not --format jsonl\n"


def save_image(path: Path, pixels: bytes, size: tuple[int, int] = (4, 4), mode: str = "L") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.frombytes(mode, size, pixels).save(path)


@pytest.fixture
def image_folders(tmp_path: Path) -> Path:
    """Three classes of distinct 4x4 grayscale images, and one file of each defect."""
    raw = tmp_path / "raw"
    rng = random.Random(5)
    for label in ("circle", "square", "star"):
        for i in range(60):
            save_image(raw / label / f"{i}.png", bytes(rng.randrange(256) for _ in range(16)))
    save_image(raw / "star" / "big.png", bytes(25), size=(5, 5))
    (raw / "star" / "broken.png").write_bytes(b"not a png")
    (raw / "star" / "notes.txt").write_text("drawn by hand")
    save_image(raw / "loose.png", bytes(range(16)))
    return raw


def test_images_are_written_per_class_with_an_index_and_defects_quarantined(image_folders, tmp_path, capsys):
    # GIVEN image folders with a wrong-sized image, a broken one, a text file and a loose image
    out = tmp_path / "out"
    # WHEN prepared
    code, _ = run(["--format", "images", *folders(image_folders, out)], capsys)
    # THEN the 180 good images are spread over the splits as <class>/<hash>.png, listed in each index
    assert code == 0
    manifest = json.loads((out / prepare.MANIFEST_FILE).read_text())
    assert manifest["rows"]["dropped"] == {
        "no_class_folder": 1,
        "not_an_image": 1,
        "unreadable_image": 1,
        "wrong_size": 1,
    }
    indexed = []
    for split in SPLIT_NAMES:
        with (out / split / "index.csv").open(newline="") as handle:
            for row in csv.DictReader(handle):
                image = Image.open(out / split / row["file"])
                assert (image.size, image.mode, row["file"].split("/")[0]) == ((4, 4), "L", row["label"])
                indexed.append(row["file"])
    assert len(indexed) == len(set(indexed)) == 180
    assert manifest["classes"]["star"]["train"] > 0


def test_image_input_schema_and_pixel_baseline(image_folders, tmp_path, capsys):
    out = tmp_path / "out"
    assert run(["--format", "images", *folders(image_folders, out)], capsys)[0] == 0
    schema = parse_input_schema((out / prepare.INPUT_SCHEMA_FILE).read_bytes())
    assert isinstance(schema, ImageInputSchema)
    assert (schema.height, schema.width, schema.channels) == (4, 4, 1)
    baseline = read_baseline(out / "baseline.json")
    assert len(baseline["feature_names"]) == 16


def test_one_colour_image_makes_every_image_rgb(image_folders, tmp_path, capsys):
    # GIVEN grayscale images and one colour image of the same size
    save_image(image_folders / "circle" / "red.png", bytes([255, 0, 0] * 16), mode="RGB")
    out = tmp_path / "out"
    # WHEN prepared THEN every written image, and the schema, has three channels
    assert run(["--format", "images", *folders(image_folders, out)], capsys)[0] == 0
    assert json.loads((out / prepare.INPUT_SCHEMA_FILE).read_text())["channels"] == 3
    assert {Image.open(p).mode for p in (out / "train").rglob("*.png")} == {"RGB"}


def test_a_folder_without_images_is_one_line(tmp_path, capsys):
    (tmp_path / "raw" / "cat").mkdir(parents=True)
    (tmp_path / "raw" / "cat" / "a.txt").write_text("x")
    code, err = run(["--format", "images", *folders(tmp_path / "raw", tmp_path / "out")], capsys)
    assert code == 2
    assert err.count("\n") == 1
    assert "no image files" in err and "a folder named after the class" in err
