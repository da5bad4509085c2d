"""The generic preparer on a team's tabular data: CSV and Parquet with a declared schema."""

from __future__ import annotations

import csv
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from handlers.common.input_schema import TabularInputSchema, instance_model_for, parse_input_schema
from training_jobs import prepare
from training_jobs.baselines import read_baseline
from training_jobs.cleaning import ROWS_PER_CLASS_ADVISED
from training_jobs.splitting import SPLIT_NAMES

HEADER = ["tenure", "charges", "plan", "churned"]
PLANS = ["monthly", "annual", "two-year"]


def churn_row(i: int) -> list[str]:
    """A distinct, deterministic row: numbers, a category and a class."""
    return [str(i % 72 + 1), f"{20 + (i * 7.3) % 90:.2f}", PLANS[i % 3], "yes" if i % 4 == 0 else "no"]


def write_csv(path: Path, rows: list[list[str]], header: list[str] = HEADER) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows([header, *rows])
    return path


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = prepare.main(argv)
    return code, capsys.readouterr().err


def cli(raw: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--format",
        "csv",
        "--target",
        "churned",
        "--input-dir",
        str(raw),
        "--output-dir",
        str(out),
        *extra,
    ]


def read_split(out: Path, split: str) -> list[dict[str, str]]:
    with (out / split / "data.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def decoded_rows(out: Path) -> dict[tuple[str, ...], str]:
    """Each written record, its category codes turned back into text, -> its split."""
    manifest = json.loads((out / prepare.MANIFEST_FILE).read_text())
    vocabulary = manifest["columns"]["categories"]
    placed = {}
    for split in SPLIT_NAMES:
        for row in read_split(out, split):
            decoded = {k: vocabulary[k][int(v)] if k in vocabulary else v for k, v in row.items()}
            placed[tuple(decoded[name] for name in HEADER)] = split
    return placed


@pytest.fixture
def churn_raw(tmp_path: Path) -> Path:
    write_csv(tmp_path / "raw" / "churn.csv", [churn_row(i) for i in range(300)])
    return tmp_path / "raw"


def test_split_files_are_csv_with_features_then_target_and_category_codes(churn_raw, tmp_path, capsys):
    # GIVEN a team's CSV with a categorical column declared
    out = tmp_path / "out"
    # WHEN prepared
    code, _ = run(cli(churn_raw, out, "--categorical", "plan"), capsys)
    # THEN each split is a CSV whose header is the features then the target, the category as its code
    assert code == 0
    manifest = json.loads((out / prepare.MANIFEST_FILE).read_text())
    vocabulary = manifest["columns"]["categories"]["plan"]
    assert vocabulary == sorted(PLANS)
    rows = [row for split in SPLIT_NAMES for row in read_split(out, split)]
    assert list(rows[0]) == HEADER
    assert len(rows) == 300
    originals = {(float(t), float(c), plan, label) for t, c, plan, label in map(churn_row, range(300))}
    written = {
        (float(r["tenure"]), float(r["charges"]), vocabulary[int(r["plan"])], r["churned"]) for r in rows
    }
    assert written == originals
    assert manifest["classes"]["yes"]["train"] + manifest["classes"]["no"]["train"] == len(
        read_split(out, "train")
    )


def test_input_schema_lets_the_api_take_category_text_and_send_its_code(churn_raw, tmp_path, capsys):
    # GIVEN data prepared with a categorical column
    out = tmp_path / "out"
    assert run(cli(churn_raw, out, "--categorical", "plan"), capsys)[0] == 0
    # WHEN the API reads the written input schema and validates a request
    schema = parse_input_schema((out / prepare.INPUT_SCHEMA_FILE).read_bytes())
    assert isinstance(schema, TabularInputSchema)
    model = instance_model_for(schema)
    instance = model.model_validate({"tenure": 12, "charges": 50.5, "plan": "two-year"})
    # THEN the endpoint gets the code the training data used for that category
    vocabulary = json.loads((out / prepare.MANIFEST_FILE).read_text())["columns"]["categories"]["plan"]
    assert schema.to_endpoint(instance) == [12.0, 50.5, vocabulary.index("two-year")]
    # AND the schema reads back as the document it came from
    written = json.loads((out / prepare.INPUT_SCHEMA_FILE).read_text())
    assert schema.model_dump(mode="json", exclude_defaults=True) == written
    # AND an unknown category is refused, naming the allowed ones
    with pytest.raises(ValueError, match="must be one of 'annual', 'monthly', 'two-year'"):
        model.model_validate([12, 50.5, "weekly"])


def test_baseline_describes_the_train_split_as_the_endpoint_receives_it(churn_raw, tmp_path, capsys):
    # GIVEN prepared data
    out = tmp_path / "out"
    assert run(cli(churn_raw, out, "--categorical", "plan"), capsys)[0] == 0
    # WHEN its baseline is read as the drift monitor reads it
    baseline = read_baseline(out / "baseline.json")
    # THEN it covers each feature over the train split, categories as their codes
    train = read_split(out, "train")
    assert baseline["feature_names"] == ["tenure", "charges", "plan"]
    assert baseline["features"]["tenure"]["count"] == len(train)
    assert max(baseline["features"]["plan"]["sample"]) == max(float(r["plan"]) for r in train)


def test_records_keep_their_split_in_a_new_dataset_version(tmp_path, capsys):
    # GIVEN version 1, and version 2 = version 1's rows plus new ones (one a new category), shuffled
    first = [churn_row(i) for i in range(300)]
    added = [churn_row(i) for i in range(300, 450)] + [["9", "33.30", "biweekly", "no"]]
    second = first + added
    random.Random(3).shuffle(second)
    write_csv(tmp_path / "v1" / "churn.csv", first)
    write_csv(tmp_path / "v2" / "a.csv", second[:200])
    write_csv(tmp_path / "v2" / "b.csv", second[200:])
    # WHEN each version is prepared
    assert run(cli(tmp_path / "v1", tmp_path / "o1", "--categorical", "plan"), capsys)[0] == 0
    assert run(cli(tmp_path / "v2", tmp_path / "o2", "--categorical", "plan"), capsys)[0] == 0
    # THEN every record of version 1 is in the same split in version 2: no test record was trained on
    v1, v2 = decoded_rows(tmp_path / "o1"), decoded_rows(tmp_path / "o2")
    assert len(v1) == 300 and len(v2) == 451
    assert {row: v2[row] for row in v1} == v1
    assert set(v1.values()) == set(SPLIT_NAMES)


def test_parquet_and_csv_of_the_same_records_give_the_same_dataset(churn_raw, tmp_path, capsys):
    # GIVEN the same records as Parquet, numbers typed, one row with a missing value
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    rows = [churn_row(i) for i in range(300)]
    table = pa.table(
        {
            "tenure": [int(r[0]) for r in rows] + [None],
            "charges": [float(r[1]) for r in rows] + [1.5],
            "plan": [r[2] for r in rows] + ["annual"],
            "churned": [r[3] for r in rows] + ["no"],
        }
    )
    (tmp_path / "pq").mkdir()
    pq.write_table(table, tmp_path / "pq" / "churn.parquet")
    # WHEN both are prepared
    assert run(cli(churn_raw, tmp_path / "from-csv", "--categorical", "plan"), capsys)[0] == 0
    parquet_args = cli(tmp_path / "pq", tmp_path / "from-parquet", "--categorical", "plan")
    parquet_args[1] = "parquet"
    assert run(parquet_args, capsys)[0] == 0
    # THEN the split files are identical (one dataset version), and the incomplete row is quarantined
    from_csv = json.loads((tmp_path / "from-csv" / prepare.MANIFEST_FILE).read_text())
    from_parquet = json.loads((tmp_path / "from-parquet" / prepare.MANIFEST_FILE).read_text())
    assert from_parquet["dataset_version"] == from_csv["dataset_version"]
    assert from_parquet["rows"]["dropped"] == {"missing_value": 1}
    rejected = (tmp_path / "from-parquet" / prepare.QUARANTINE_FILE).read_text().splitlines()
    assert json.loads(rejected[0])["row"] == 301


def test_malformed_rows_are_quarantined_with_their_reason(tmp_path, capsys):
    # GIVEN good rows and one row of each defect
    rows = [churn_row(i) for i in range(300)]
    rows += [["5", "abc", "annual", "no"], ["5", "inf", "annual", "no"], ["5", "1.0", "annual"]]
    rows += [["6", "", "annual", "no"], ["7", "2.0", "annual", ""], churn_row(8)]
    write_csv(tmp_path / "raw" / "churn.csv", rows)
    # WHEN prepared
    code, _ = run(cli(tmp_path / "raw", tmp_path / "out", "--categorical", "plan"), capsys)
    # THEN the run succeeds, each bad row counted under its reason and kept in the quarantine with its line
    manifest = json.loads((tmp_path / "out" / prepare.MANIFEST_FILE).read_text())
    assert code == 0
    assert manifest["rows"] == {
        "read": 306,
        "kept": 300,
        "dropped": {
            "duplicate": 1,
            "missing_target": 1,
            "missing_value": 1,
            "non_finite": 1,
            "not_a_number": 1,
            "wrong_field_count": 1,
        },
    }
    quarantined = [json.loads(line) for line in (tmp_path / "out" / prepare.QUARANTINE_FILE).open()]
    first = quarantined[0]
    assert (first["line"], first["raw"], first["reason"]) == (
        302,
        "5,abc,annual,no",
        "not_a_number: charges='abc'",
    )


def test_regression_keeps_the_target_a_number_and_selected_features(tmp_path, capsys):
    # GIVEN a numeric target and an explicit feature list leaving a column out
    header = ["size", "rooms", "note", "price"]
    rows = [[str(40 + i), str(1 + i % 5), "x", f"{1000 + i * 3.5}"] for i in range(200)]
    write_csv(tmp_path / "raw" / "houses.csv", rows, header)
    args = ["--format", "csv", "--target", "price", "--problem", "regression", "--features", "size,rooms"]
    # WHEN prepared
    code, _ = run(
        [*args, "--input-dir", str(tmp_path / "raw"), "--output-dir", str(tmp_path / "out")], capsys
    )
    # THEN the splits hold only those features, then the numeric target
    assert code == 0
    train = read_split(tmp_path / "out", "train")
    assert list(train[0]) == ["size", "rooms", "price"]
    assert all(float(r["price"]) == 1000 + (int(r["size"]) - 40) * 3.5 for r in train)
    schema = json.loads((tmp_path / "out" / prepare.INPUT_SCHEMA_FILE).read_text())
    assert schema == {"kind": "tabular", "feature_names": ["size", "rooms"]}


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--target", "churn"], ["'churn'", "'tenure', 'charges', 'plan', 'churned'"]),
        (["--target", "churned"], ["'plan'", "--categorical plan"]),
        (["--target", "churned", "--features", "tenure,colour"], ["'colour'", "'tenure', 'charges'"]),
        (["--target", "churned", "--categorical", "tenure,zone"], ["--categorical", "'zone'"]),
        (
            ["--target", "churned", "--problem", "regression", "--categorical", "plan"],
            ["'churned'", "classification"],
        ),
    ],
    ids=[
        "unknown-target",
        "text-in-numeric-feature",
        "unknown-feature",
        "unknown-categorical",
        "text-target",
    ],
)
def test_a_schema_the_data_cannot_fit_is_one_line_and_exit_2(churn_raw, tmp_path, capsys, extra, expected):
    # GIVEN a declaration that does not fit the data
    argv = ["--format", "csv", *extra, "--input-dir", str(churn_raw), "--output-dir", str(tmp_path / "out")]
    # WHEN the script runs
    code, err = run(argv, capsys)
    # THEN it exits 2 with one line naming the column and what is allowed, and writes nothing
    assert code == 2
    assert err.count("\n") == 1
    for part in expected:
        assert part in err
    assert not (tmp_path / "out" / prepare.MANIFEST_FILE).exists()


def test_a_class_too_small_for_three_splits_is_named_with_the_rows_it_needs(tmp_path, capsys):
    # GIVEN plenty of two classes and two rows of a third
    rows = [churn_row(i) for i in range(300)] + [
        ["1", "1.11", "annual", "maybe"],
        ["2", "2.22", "annual", "maybe"],
    ]
    write_csv(tmp_path / "raw" / "churn.csv", rows)
    # WHEN prepared
    code, err = run(cli(tmp_path / "raw", tmp_path / "out", "--categorical", "plan"), capsys)
    # THEN it exits 2 naming the class, its count and the count it needs
    assert code == 2
    assert err.count("\n") == 1
    assert "class 'maybe' has 2 rows" in err
    assert f"at least {ROWS_PER_CLASS_ADVISED} rows" in err


def test_an_empty_file_is_named(churn_raw, tmp_path, capsys):
    # GIVEN a good file and an empty one
    (churn_raw / "late-upload.csv").write_text("")
    # WHEN prepared
    code, err = run(cli(churn_raw, tmp_path / "out", "--categorical", "plan"), capsys)
    # THEN it exits 2 naming the empty file
    assert code == 2
    assert err.count("\n") == 1
    assert "late-upload.csv is empty" in err


def test_a_header_only_file_is_named(churn_raw, tmp_path, capsys):
    write_csv(churn_raw / "header-only.csv", [])
    code, err = run(cli(churn_raw, tmp_path / "out", "--categorical", "plan"), capsys)
    assert code == 2
    assert "header-only.csv has a header but no data rows" in err


def test_the_module_exits_2_without_a_traceback(churn_raw, tmp_path):
    # GIVEN the processing container's command line with an unknown target
    argv = cli(churn_raw, tmp_path / "out")
    argv[3] = "churn"
    # WHEN run as a module
    result = subprocess.run(
        [sys.executable, "-m", "training_jobs.prepare", *argv],
        cwd=Path(__file__).resolve().parents[3],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    # THEN the exit code is 2 and stderr is one line, no traceback
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("prepare: --target 'churn'") and result.stderr.count("\n") == 1


def test_help_names_both_ways_to_run(capsys):
    with pytest.raises(SystemExit) as exit_info:
        prepare.main(["--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    for flag in (
        "--task",
        "--format",
        "--target",
        "--features",
        "--problem",
        "--categorical",
        "--text-field",
    ):
        assert flag in out


def test_when_no_row_is_usable_the_quarantine_says_why(tmp_path, capsys):
    # GIVEN rows that all miss the target
    write_csv(tmp_path / "raw" / "churn.csv", [[*churn_row(i)[:3], ""] for i in range(20)])
    # WHEN prepared
    code, err = run(cli(tmp_path / "raw", tmp_path / "out", "--categorical", "plan"), capsys)
    # THEN one line points at the quarantine, which holds every row with its reason
    assert code == 2
    assert err.count("\n") == 1
    assert "none of the 20 rows is usable" in err and prepare.QUARANTINE_FILE in err
    rejected = (tmp_path / "out" / prepare.QUARANTINE_FILE).read_text().splitlines()
    assert {json.loads(line)["reason"] for line in rejected} == {"missing_target: churned"}
