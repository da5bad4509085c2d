"""bench/gpu_check.py's report: written whatever ran, the CUDA half's absence named, comparisons drawn."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def gpu_check():
    # bench/ is no installed package (pyproject's packages.find): import it from the checkout.
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(REPO))
        yield importlib.import_module("bench.gpu_check")


def cuda_less_report(gpu_check):
    report = gpu_check.new_report({"device": "cpu", "quick": True}, gpu_check.QUICK)
    report["environment"] = {"python": "3.11", "torch": {"torch": "2.13.0+cpu", "cuda_available": False}}
    gpu_check.choose_halves(report, cuda_available=False, device="cpu")
    return report


def test_a_report_without_cuda_is_written_and_names_why_the_cuda_half_did_not_run(gpu_check, tmp_path):
    # GIVEN a run on a machine without CUDA that got no further than the environment
    report = cuda_less_report(gpu_check)
    # WHEN the report is written
    gpu_check.write_report(tmp_path, report)
    # THEN both files exist, the JSON reads back, and the summary says why there is no CUDA half
    assert json.loads((tmp_path / gpu_check.REPORT_FILE).read_text())["halves"]["cpu"] == "run"
    summary = (tmp_path / gpu_check.SUMMARY_FILE).read_text()
    assert "cuda half: skipped: cuda not available" in summary
    assert "INCOMPLETE" in summary  # nothing has run yet


def test_only_an_explicit_cuda_request_without_cuda_is_an_error(gpu_check):
    for device, errors in (("cpu", 0), ("auto", 0), ("cuda", 1)):
        report = gpu_check.new_report({}, gpu_check.QUICK)
        assert gpu_check.choose_halves(report, cuda_available=False, device=device) is False
        assert len(report["errors"]) == errors
    report = gpu_check.new_report({}, gpu_check.QUICK)
    assert gpu_check.choose_halves(report, cuda_available=True, device="auto") is True


def test_cuda_and_cpu_runs_are_compared_and_a_model_left_on_the_cpu_is_a_finding(gpu_check):
    # GIVEN training on both devices (AMP off and on) and a server that ignored the visible GPU
    report = cuda_less_report(gpu_check)
    common = {"quality_metric": "accuracy", "loss_finite": True, "train_forward_outputs": ["float16@cuda:0"]}
    report["training"]["runs"] = [
        {**common, "task": "digits", "device": "cuda:0", "amp_requested": False, "samples_per_s": 400.0}
        | {"quality_value": 0.9},
        {**common, "task": "digits", "device": "cuda:0", "amp_requested": True, "samples_per_s": 600.0}
        | {"quality_value": 0.91},
        {**common, "task": "digits", "device": "cpu", "amp_requested": False, "samples_per_s": 200.0}
        | {"quality_value": 0.9},
    ]
    load = {"instances_per_request": 1, "concurrency": 1, "rps": 100.0, "p50_ms": 1.0, "p99_ms": 2.0}
    report["serving"]["runs"] = [
        {"task": "digits", "mode": "gpu-visible", "model_loaded_on": "cpu", "loads": [load]},
        {"task": "digits", "mode": "cpu", "model_loaded_on": "cpu", "loads": [load | {"rps": 50.0}]},
    ]
    # WHEN the findings are drawn
    found = gpu_check.findings(report)
    # THEN they hold the ratios and the server that did not use the GPU
    assert "serving digits: the GPU was visible but the model loaded on cpu" in found
    assert any("cuda/cpu samples/s x2.00" in f and "amp on/off samples/s x1.50" in f for f in found)
    assert any(f.startswith("serving digits 1 x 1:") and "req/s x2.00" in f for f in found)


def test_a_package_that_does_not_import_is_reported_missing(gpu_check):
    found = gpu_check.probe_imports({"json": "json", "no-such-dist": "no_such_module_gpu_check"})
    assert found["json"]["importable"] is True
    assert gpu_check.missing(found, ("json", "no-such-dist")) == ["no-such-dist"]
