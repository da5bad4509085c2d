"""Plain FastAPI + uvicorn baseline of ``bench/serving.py``: one forward pass per request.

    .venv/bin/python -m bench._serving_fastapi --model-dir DIR --port P [--torch-threads N]

``POST /invocations`` takes the benchmark's body format (``bench/_serving_inference.py``);
``GET /ping`` answers 200 once the model is loaded. The route is a plain ``def``, so FastAPI runs
it in its threadpool and the forward pass never blocks the event loop (an ``async def`` route that
runs the model does: p99 of 1.5 s at 64 callers was seen here). One uvicorn process, no batching.
Start it with ``OMP_NUM_THREADS`` = ``--torch-threads``: the threadpool's threads do not inherit
``torch.set_num_threads`` and would otherwise run every forward pass on all cores.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
import uvicorn
from fastapi import Body, FastAPI, Response


def _load_inference_module(model_dir: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_inference", model_dir / "code" / "inference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def create_app(model_dir: Path, torch_threads: int) -> FastAPI:
    """The app: the TorchScript ``model.pth`` of ``model_dir`` behind ``/invocations``."""
    torch.set_num_threads(torch_threads)
    model = torch.jit.load(str(model_dir / "model.pth"), map_location="cpu").eval()
    inference = _load_inference_module(model_dir)
    app = FastAPI()

    @app.get("/ping")
    def ping() -> Response:
        return Response(status_code=200)

    @app.post("/invocations")
    def invocations(payload: Any = Body(...)) -> Response:  # noqa: B008 - FastAPI's declaration style
        rows = payload["instances"] if isinstance(payload, dict) else payload
        with torch.inference_mode():
            output = model(torch.tensor(rows, dtype=torch.float32))
        return Response(
            content=inference.output_fn(output, "application/json"), media_type="application/json"
        )

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--torch-threads", type=int, default=1)
    args = parser.parse_args()
    app = create_app(args.model_dir, args.torch_threads)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
