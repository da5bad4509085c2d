"""How the model server batches our own handler: lists of instances in, a dict with a list out."""

from __future__ import annotations

from handlers.serving import inference
from handlers.serving.batching import _batch_key, _concatenate, split_rows


def test_lists_of_instances_can_share_a_forward_pass() -> None:
    # GIVEN two requests' input_fn results (lists of instances, as our handler returns them)
    first = inference.input_fn('{"instances": [[1, 2], [3, 4]]}', "application/json")
    second = inference.input_fn('{"instances": [[5, 6]]}', "application/json")
    # THEN they are batchable together and concatenate in order
    assert _batch_key(first) == (2, ("list",)) and _batch_key(second) == (1, ("list",))
    assert _concatenate([first, second]) == [*first, *second]


def test_our_handlers_output_is_cut_per_request_and_the_model_name_shared() -> None:
    output = {"model": "digits-cnn", "predictions": [{"label": 1}, {"label": 2}, {"label": 3}]}
    parts = split_rows(output, [2, 1])
    assert parts == [
        {"model": "digits-cnn", "predictions": [{"label": 1}, {"label": 2}]},
        {"model": "digits-cnn", "predictions": [{"label": 3}]},
    ]


def test_an_output_without_rows_is_not_split() -> None:
    assert split_rows({"model": "digits-cnn"}, [1, 1]) is None
    assert split_rows({"predictions": [1, 2, 3]}, [1, 1]) is None


def test_empty_or_scalar_inputs_run_alone() -> None:
    assert _batch_key([]) == (None, None)
    assert _batch_key("text") == (None, None)
