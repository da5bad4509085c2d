"""The tag record of a job's outcome: exact round trips inside SageMaker's tag rules."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from emulator.training import tags

# SageMaker's tag alphabet (botocore's service model), with \p{L}/\p{N}/\p{Z} as Python classes.
TAG_ALPHABET = re.compile(r"[\w\s.:/=+\-@]*")


@given(st.text())
def test_any_text_round_trips_through_the_tag_alphabet(text: str) -> None:
    encoded = tags.encode(text)
    assert TAG_ALPHABET.fullmatch(encoded)
    assert tags.decode(encoded) == text


def test_plain_reasons_stay_readable() -> None:
    # GIVEN a failure reason of letters, digits and common punctuation
    # WHEN encoded, THEN it reads unchanged in the console
    assert tags.encode("Loss diverged at step 3: lr/2 = 0.5") == "Loss diverged at step 3: lr/2 =3D 0.5"


@given(st.text(min_size=1, max_size=2000))
def test_long_reasons_are_split_over_tags_and_read_back(text: str) -> None:
    # GIVEN a reason that may be longer than one tag value once encoded
    # WHEN it is recorded
    outcome = tags.outcome_tags("Failed", text, {})
    chunks = [t["Value"] for t in outcome if t["Key"].startswith(tags.FAILURE_REASON_TAG)]

    # THEN every tag fits, and reading back gives what run() reports: the start of the reason
    assert all(len(chunk) <= tags.MAX_TAG_VALUE for chunk in chunks)
    assert len(chunks) <= tags.MAX_REASON_CHUNKS
    read_back = tags.parse_outcome(outcome)
    assert read_back is not None
    assert read_back[1] == tags.recordable_reason(text)
    assert text.startswith(read_back[1])


def test_a_full_length_sagemaker_reason_is_kept_whole() -> None:
    # GIVEN a 1024-character reason (SageMaker's limit) of a typical traceback's characters
    reason = ("Traceback (most recent call last): File 'train.py', line 3\n" * 20)[:1024]

    # WHEN recorded and read back, THEN nothing is lost
    assert tags.parse_outcome(tags.outcome_tags("Failed", reason, {})) == ("Failed", reason, {})


def test_outcome_round_trips_and_last_tag_of_a_key_wins() -> None:
    # GIVEN an InProgress record followed by the final one (moto appends on AddTags)
    recorded = [
        *tags.outcome_tags("InProgress", None, {}),
        *tags.outcome_tags("Failed", "bad 'input' (row 3)", {"val:loss": 0.25, "acc %": 1.0}),
        {"Key": "team", "Value": "ml"},
    ]

    # WHEN it is parsed, THEN the final status, reason and metrics come back exactly
    assert tags.parse_outcome(recorded) == ("Failed", "bad 'input' (row 3)", {"val:loss": 0.25, "acc %": 1.0})


def test_tags_without_a_local_record_parse_to_none() -> None:
    assert tags.parse_outcome([{"Key": "team", "Value": "ml"}]) is None
