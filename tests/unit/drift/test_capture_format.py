"""SageMaker data-capture lines: JSON, BASE64 and CSV encodings, the time window, bad lines."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from handlers.monitoring.capture import (
    CapturedWindow,
    add_capture_lines,
    hour_prefixes,
    instance_row,
)

SAMPLE = Path(__file__).resolve().parents[2] / "events" / "data_capture_tabular.jsonl"
NAMES = ("f0", "f1", "f2")
START = datetime(2024, 6, 8, 11, tzinfo=UTC)
END = datetime(2024, 6, 8, 12, tzinfo=UTC)


def test_every_encoding_of_the_sample_file_is_read() -> None:
    # GIVEN the sample capture file: a JSON, a BASE64 and a CSV request
    window = CapturedWindow()
    add_capture_lines(window, SAMPLE.read_text(), NAMES, START, END)

    # THEN three requests, four instances in order, and every prediction's confidence
    assert window.requests == 3
    assert window.rows == [[0.1, -0.4, 1.2], [0.0, 0.3, -0.7], [1.5, 0.2, -0.3], [0.5, 0.5, 0.5]]
    assert window.confidences == [0.93, 0.87, 0.91, 0.8]
    assert window.skipped_lines == 0


def test_lines_outside_the_window_are_left_out() -> None:
    window = CapturedWindow()
    add_capture_lines(window, SAMPLE.read_text(), NAMES, START, datetime(2024, 6, 8, 11, 30, tzinfo=UTC))
    assert window.requests == 2  # the 11:42 request is after the window


def test_bad_lines_are_counted_not_fatal() -> None:
    # GIVEN a file with a good line, a torn line, a bad BASE64 payload and a line with no capture data
    good = SAMPLE.read_text().splitlines()[0]
    broken = json.loads(good)
    broken["captureData"]["endpointInput"].update(encoding="BASE64", data="%%% not base64")
    text = "\n".join([good, good[:40], json.dumps(broken), json.dumps({"eventVersion": "0"})])
    window = CapturedWindow()
    add_capture_lines(window, text, NAMES, START, END)
    assert (window.requests, window.skipped_lines) == (1, 3)
    assert len(window.rows) == 2


@pytest.mark.parametrize(
    ("instance", "names", "expected"),
    [
        ([1, 2, 3], NAMES, [1.0, 2.0, 3.0]),
        ([[1, 2], [3, 4]], ("a", "b", "c", "d"), [1.0, 2.0, 3.0, 4.0]),  # an image is flattened
        ([1, 2], NAMES, None),  # wrong width
        ([1, "x", 3], NAMES, None),
        ([1, True, 3], NAMES, None),
        ("free prize now", ("text_chars", "text_words"), [14.0, 3.0]),
    ],
)
def test_instances_become_baseline_rows(
    instance: object, names: tuple[str, ...], expected: list[float] | None
) -> None:
    assert instance_row(instance, names) == expected


def test_hour_folders_cover_the_window() -> None:
    prefixes = hour_prefixes("capture/ep/ep/AllTraffic", datetime(2024, 6, 8, 10, 30, tzinfo=UTC), END)
    assert prefixes == ["capture/ep/ep/AllTraffic/2024/06/08/10/", "capture/ep/ep/AllTraffic/2024/06/08/11/"]
