"""The serving code that makes a model folder servable by the SageMaker PyTorch container as is.

``code/inference.py`` (the handler), ``code/requirements.txt`` and ``code/models/`` (the
architectures, under their own import name). Training writes them next to the weights, so the
``model.tar.gz`` SageMaker makes of ``SM_MODEL_DIR`` is the serving artifact with no repack step.
"""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

import models

from .sample_request import write_sample_request

SERVING_CODE_DIR = "code"
REQUIREMENTS = "# torch is provided by the SageMaker PyTorch inference container\nnumpy\n"


def serving_code_entries() -> dict[str, bytes]:
    """Archive member name -> content for everything under ``code/``."""
    entries = {
        f"{SERVING_CODE_DIR}/inference.py": _handler_source().read_bytes(),
        f"{SERVING_CODE_DIR}/requirements.txt": REQUIREMENTS.encode(),
    }
    for source in sorted(Path(models.__file__).parent.glob("*.py")):
        entries[f"{SERVING_CODE_DIR}/models/{source.name}"] = source.read_bytes()
    return entries


def write_serving_code(model_dir: Path) -> None:
    """Write ``code/`` into ``model_dir`` (the training container's SM_MODEL_DIR), with the sample
    request of the model saved there (``training_jobs/sample_request.py``)."""
    for name, content in serving_code_entries().items():
        target = model_dir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    write_sample_request(model_dir)


def _handler_source() -> Path:
    spec = find_spec("handlers.serving.inference")  # located without importing it (it imports torch)
    if spec is None or spec.origin is None:
        raise FileNotFoundError("handlers/serving/inference.py not found")
    return Path(spec.origin)
