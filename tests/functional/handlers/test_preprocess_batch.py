"""Batch preprocessing against moto S3, driven by real S3 notification / EventBridge / SQS events."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote_plus

import pytest

from handlers.preprocess import handler as preprocess_batch

from .conftest import TABULAR_SCHEMA, TEXT_SCHEMA, FakeContext, load_event

RAW, PROCESSED = "mlp-dev-raw", "mlp-dev-processed"

SPAM_JSONL = (
    b'{"text": "Win a  FREE cruise", "label": "spam"}\n'
    b'{"text": "Win a FREE cruise ", "label": "spam"}\n'  # the same record once cleaned
    b'{"text": 42, "label": "ham"}\n'
    b"not json at all\n"
    b"\n"
    b'{"text": "caf\xc3\xa9 at noon?", "label": "ham"}\n'
    b'{"text": "bad \xff byte", "label": "ham"}\n'
    b'{"text": "   ", "label": "ham"}\n'
)
DIABETES_CSV = b"age,bmi,bp,label\n60,30,105,151\n40,20,75,NaN-is-a-label-here\n50,x,90,1\n1,2\n70,35,inf,3\n"


@pytest.fixture
def s3(aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    client = aws["s3"]
    for bucket in (RAW, PROCESSED):
        client.create_bucket(Bucket=bucket)
        client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    monkeypatch.setenv("PROCESSED_BUCKET", PROCESSED)
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    preprocess_batch.s3_client.set(client)
    preprocess_batch.input_schema.cache_clear()
    yield client
    preprocess_batch.s3_client.set(None)
    preprocess_batch.input_schema.cache_clear()


def use_schema(monkeypatch: pytest.MonkeyPatch, schema: dict[str, Any]) -> None:
    monkeypatch.setenv("MODEL_INPUT_SCHEMA", json.dumps(schema))
    preprocess_batch.input_schema.cache_clear()


def s3_notification(key: str, version_id: str) -> dict[str, Any]:
    event = load_event("s3_object_created.json")
    obj = event["Records"][0]["s3"]
    obj["bucket"]["name"] = RAW
    obj["object"]["key"], obj["object"]["versionId"] = quote_plus(key, safe="/"), version_id
    return event


def eventbridge(key: str, version_id: str) -> dict[str, Any]:
    event = load_event("eventbridge_object_created.json")
    event["detail"]["bucket"]["name"] = RAW
    event["detail"]["object"]["key"], event["detail"]["object"]["version-id"] = key, version_id
    return event


def read(s3: Any, key: str) -> bytes:
    return bytes(s3.get_object(Bucket=PROCESSED, Key=key)["Body"].read())


def jsonl(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.decode().splitlines()]


def test_good_records_are_written_and_bad_ones_quarantined_with_reasons(
    s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a text schema and a raw JSONL file (key with a space and parentheses) with some bad rows
    use_schema(monkeypatch, TEXT_SCHEMA)
    key = "raw/spam/2024-05-25/messages batch(1).jsonl"
    version = s3.put_object(Bucket=RAW, Key=key, Body=SPAM_JSONL)["VersionId"]
    # WHEN the real S3 notification (URL-encoded key) arrives
    summary = preprocess_batch.lambda_handler(s3_notification(key, version), FakeContext())
    # THEN the clean records are written under processed/<path>/<version>/
    output_key = f"processed/spam/2024-05-25/messages batch(1).jsonl/{version}/part-0000.jsonl"
    assert summary["output_key"] == output_key
    assert jsonl(read(s3, output_key)) == [
        {"instance": "Win a FREE cruise", "label": "spam"},
        {"instance": "café at noon?", "label": "ham"},
    ]
    assert (summary["processed"], summary["quarantined"], summary["duplicates"]) == (2, 4, 1)
    # AND every bad record is quarantined with its line number and reason
    rejected = jsonl(read(s3, summary["quarantine_key"]))
    assert (
        summary["quarantine_key"]
        == f"quarantine/spam/2024-05-25/messages batch(1).jsonl/{version}/rejected.jsonl"
    )
    assert [(r["line"], r["reason"].split(":")[0]) for r in rejected] == [
        (3, "text"),
        (4, "not valid JSON"),
        (7, "not valid UTF-8"),
        (8, "text"),
    ]
    assert "empty" in rejected[3]["reason"]


def test_replaying_the_same_version_writes_nothing_new(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN an object already preprocessed once
    use_schema(monkeypatch, TEXT_SCHEMA)
    key = "raw/spam/day.jsonl"
    version = s3.put_object(Bucket=RAW, Key=key, Body=SPAM_JSONL)["VersionId"]
    first = preprocess_batch.lambda_handler(s3_notification(key, version), FakeContext())
    written = s3.list_object_versions(Bucket=PROCESSED)["Versions"]
    output = read(s3, first["output_key"])
    # WHEN the same event is delivered again
    second = preprocess_batch.lambda_handler(s3_notification(key, version), FakeContext())
    # THEN it reports a replay with the same counts and key, and no object version is added
    assert second["replayed"] is True and first["replayed"] is False
    assert {k: v for k, v in second.items() if k != "replayed"} == {
        k: v for k, v in first.items() if k != "replayed"
    }
    assert s3.list_object_versions(Bucket=PROCESSED)["Versions"] == written
    assert read(s3, first["output_key"]) == output


def test_the_same_content_gives_the_same_bytes(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the same raw bytes uploaded as two versions
    use_schema(monkeypatch, TEXT_SCHEMA)
    key = "raw/spam/again.jsonl"
    v1 = s3.put_object(Bucket=RAW, Key=key, Body=SPAM_JSONL)["VersionId"]
    v2 = s3.put_object(Bucket=RAW, Key=key, Body=SPAM_JSONL)["VersionId"]
    # WHEN both are processed
    a = preprocess_batch.lambda_handler(s3_notification(key, v1), FakeContext())
    b = preprocess_batch.lambda_handler(s3_notification(key, v2), FakeContext())
    # THEN each version has its own output, byte for byte equal
    assert a["output_key"] != b["output_key"]
    assert read(s3, a["output_key"]) == read(s3, b["output_key"])


def test_eventbridge_csv_reads_the_announced_version_and_scales(
    s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a tabular schema and a CSV whose first version is the one the event announces
    use_schema(monkeypatch, TABULAR_SCHEMA)
    key = "raw/diabetes/2024-05-25/patients.csv"
    version = s3.put_object(Bucket=RAW, Key=key, Body=DIABETES_CSV)["VersionId"]
    s3.put_object(Bucket=RAW, Key=key, Body=b"age,bmi,bp,label\n1,1,1,1\n")  # a later upload
    # WHEN the real EventBridge "Object Created" event arrives
    summary = preprocess_batch.lambda_handler(eventbridge(key, version), FakeContext())
    # THEN the announced version was read, scaled with the schema's statistics, labels kept
    assert jsonl(read(s3, summary["output_key"])) == [
        {"instance": [1.0, 1.0, 1.0], "label": "151"},
        {"instance": [-1.0, -1.0, -1.0], "label": "NaN-is-a-label-here"},
    ]
    # AND the non-number, short row and infinite value are quarantined (CSV line numbers)
    rejected = jsonl(read(s3, summary["quarantine_key"]))
    assert [(r["line"], r["reason"]) for r in rejected] == [
        (4, "bmi: Input should be a valid number"),
        (5, "has 2 fields; the header has 4"),
        (6, "bp: Input should be a finite number"),
    ]


def test_an_unknown_file_type_fails_the_invocation(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN an object that is neither CSV nor JSONL
    use_schema(monkeypatch, TEXT_SCHEMA)
    version = s3.put_object(Bucket=RAW, Key="raw/spam/readme.txt", Body=b"hello")["VersionId"]
    # WHEN / THEN the invocation fails (Lambda retries it, then its failure destination keeps it)
    with pytest.raises(preprocess_batch.SourceObjectError):
        preprocess_batch.lambda_handler(s3_notification("raw/spam/readme.txt", version), FakeContext())
    assert "Contents" not in s3.list_objects_v2(Bucket=PROCESSED)


def test_sqs_batch_reports_only_the_failed_message(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN an SQS batch: one message about a good object, one about an unreadable object
    use_schema(monkeypatch, TEXT_SCHEMA)
    good = s3.put_object(Bucket=RAW, Key="raw/spam/good.jsonl", Body=SPAM_JSONL)["VersionId"]
    bad = s3.put_object(Bucket=RAW, Key="raw/spam/bad.bin", Body=b"\x00")["VersionId"]
    event = {
        "Records": [
            _sqs_message("msg-good", s3_notification("raw/spam/good.jsonl", good)),
            _sqs_message("msg-bad", eventbridge("raw/spam/bad.bin", bad)),
        ]
    }
    # WHEN the handler runs
    response = preprocess_batch.lambda_handler(event, FakeContext())
    # THEN only the bad message is reported for retry, and the good one was processed
    assert response == {"batchItemFailures": [{"itemIdentifier": "msg-bad"}]}
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=PROCESSED)["Contents"]]
    assert f"processed/spam/good.jsonl/{good}/part-0000.jsonl" in listed


def test_unversioned_object_is_named_by_etag_and_a_changed_object_is_refused(
    aws: dict[str, Any], s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN an unversioned raw bucket, where the event carries the ETag only
    use_schema(monkeypatch, TEXT_SCHEMA)
    s3.create_bucket(Bucket="mlp-dev-unversioned")
    etag = s3.put_object(Bucket="mlp-dev-unversioned", Key="raw/a.jsonl", Body=SPAM_JSONL)["ETag"].strip('"')
    event = s3_notification("raw/a.jsonl", "")
    event["Records"][0]["s3"]["bucket"]["name"] = "mlp-dev-unversioned"
    del event["Records"][0]["s3"]["object"]["versionId"]
    event["Records"][0]["s3"]["object"]["eTag"] = etag
    # WHEN it is processed
    summary = preprocess_batch.lambda_handler(event, FakeContext())
    # THEN the ETag names the output
    assert summary["output_key"] == f"processed/a.jsonl/{etag}/part-0000.jsonl"
    # AND once the object is overwritten, an event for a version that is gone is refused
    s3.put_object(Bucket="mlp-dev-unversioned", Key="raw/b.jsonl", Body=b'{"text": "new"}\n')
    stale = s3_notification("raw/b.jsonl", "")
    stale["Records"][0]["s3"]["bucket"]["name"] = "mlp-dev-unversioned"
    del stale["Records"][0]["s3"]["object"]["versionId"]
    stale["Records"][0]["s3"]["object"]["eTag"] = etag  # the ETag of other content
    with pytest.raises(preprocess_batch.SourceObjectError):
        preprocess_batch.lambda_handler(stale, FakeContext())


def _sqs_message(message_id: str, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "messageId": message_id,
        "receiptHandle": f"AQEB{message_id}",
        "body": json.dumps(body),
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1716630066123",
            "SenderId": "AIDAIENQZJOLO23YVJ4VO",
            "ApproximateFirstReceiveTimestamp": "1716630066130",
        },
        "messageAttributes": {},
        "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:mlp-dev-raw-objects",
        "awsRegion": "us-east-1",
    }
