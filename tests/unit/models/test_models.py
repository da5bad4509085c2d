"""The architectures: registry, featurisation, save/load without the training code."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

import models
from models import InputShapeError, load_model, save_model
from models.tabular import TabularRegressorConfig
from models.text import TextClassifierConfig, hashed_tokens
from models.vision import DigitsCNNConfig

SAMPLES = {
    "digits-cnn": (DigitsCNNConfig(), [[float(i % 17) for i in range(64)], [[1.0] * 8] * 8]),
    "tabular-mlp": (
        TabularRegressorConfig(num_features=3, feature_mean=[1.0, 2.0, 3.0], feature_std=[1.0, 2.0, 4.0]),
        [[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]],
    ),
    "text-bow": (TextClassifierConfig(num_buckets=256), ["Free prize, click now!", ""]),
}


def test_registry_lists_and_builds_every_task_model():
    # GIVEN the registry WHEN asked for names THEN the three task models are there
    assert models.names() == ["digits-cnn", "tabular-mlp", "text-bow"]
    # AND each builds from its config type
    for name, (config, _) in SAMPLES.items():
        assert models.build(name, config).architecture_name == name


def test_registry_refuses_unknown_names_and_mismatched_configs():
    # GIVEN an unknown name and a config of the wrong type
    # WHEN built THEN each is refused with a message naming what exists / what was expected
    with pytest.raises(KeyError, match="digits-cnn"):
        models.get("resnet-50")
    with pytest.raises(TypeError, match="DigitsCNNConfig"):
        models.build("digits-cnn", TextClassifierConfig())


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_save_and_load_round_trip_gives_identical_outputs(name, tmp_path):
    # GIVEN a model with random weights and raw instances
    torch.manual_seed(0)
    config, instances = SAMPLES[name]
    model = models.build(name, config).eval()
    with torch.inference_mode():
        before = model(*model.encode(instances))
    # WHEN saved and loaded again from its directory alone
    save_model(model, tmp_path)
    loaded = load_model(tmp_path)
    # THEN the config file names the architecture and the outputs are identical
    assert json.loads((tmp_path / "model_config.json").read_text())["model"] == name
    with torch.inference_mode():
        assert torch.equal(loaded(*loaded.encode(instances)), before)


def test_tabular_model_standardises_with_its_stored_statistics(tmp_path):
    # GIVEN two models with the same weights but different stored input means
    torch.manual_seed(0)
    base = models.build("tabular-mlp", SAMPLES["tabular-mlp"][0]).eval()
    shifted_config = TabularRegressorConfig(
        num_features=3, feature_mean=[2.0, 4.0, 7.0], feature_std=[1.0, 2.0, 4.0]
    )
    shifted = models.build("tabular-mlp", shifted_config).eval()
    state = {k: v for k, v in base.state_dict().items() if not k.startswith("feature_")}
    shifted.load_state_dict(state, strict=False)
    # WHEN each is fed inputs offset by exactly the mean difference
    with torch.inference_mode():
        a = base(*base.encode([[1.0, 2.0, 3.0]]))
        b = shifted(*shifted.encode([[2.0, 4.0, 7.0]]))
    # THEN the predictions agree: the model scales raw inputs itself
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    ("name", "bad"),
    [
        ("digits-cnn", [[0.0] * 63]),
        ("digits-cnn", [["a"] * 64]),
        ("tabular-mlp", [[1.0, 2.0]]),
        ("tabular-mlp", [[1.0, True, 3.0]]),
        ("text-bow", [42]),
    ],
)
def test_encode_rejects_instances_of_the_wrong_shape(name, bad):
    # GIVEN an instance of the wrong shape or type
    model = models.build(name, SAMPLES[name][0])
    # WHEN encoded THEN InputShapeError names the instance
    with pytest.raises(InputShapeError, match="instance 0"):
        model.encode(bad)


def test_text_hashing_is_stable_across_interpreters():
    # GIVEN a text hashed here and in a fresh interpreter with another hash seed
    here = hashed_tokens("Claim your FREE prize", 1024, 2)
    code = "from models.text import hashed_tokens; print(hashed_tokens('Claim your FREE prize', 1024, 2))"
    there = subprocess.run(
        [sys.executable, "-c", code],
        env={"PYTHONHASHSEED": "123", "PATH": "/usr/bin"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # THEN the buckets agree (serving featurises exactly like training), words and bigrams alike
    assert str(here) == there.strip()
    assert len(here) == 4 + 3


def test_models_package_imports_no_training_or_cloud_code():
    # GIVEN a fresh interpreter WHEN the models package is imported
    code = "import sys, models; print(sorted({m.split('.')[0] for m in sys.modules}))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    # THEN nothing from training, serving infrastructure or the cloud SDKs came with it
    for forbidden in ("training_jobs", "handlers", "sklearn", "pulumi", "boto3", "botocore"):
        assert f"'{forbidden}'" not in loaded
