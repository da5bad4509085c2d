"""Start TorchServe the way the SageMaker PyTorch DLC does, on loopback (``bench/serving.py``).

    build/venv-torchserve/bin/python bench/_serving_sagemaker.py --config PATH --metrics-port M

Runs ``sagemaker_pytorch_serving_container.serving.main()`` (the DLC's entry point) with every
toolkit default, redirecting only what cannot work outside a container: the TorchServe config it
writes goes to ``--config`` instead of ``/etc/sagemaker-ts.properties``; its ``0.0.0.0`` listen
addresses become 127.0.0.1; and the ports and temp folder TorchServe would otherwise take by
default (metrics 8082, gRPC 7070/7071, worker sockets in /tmp) are moved out of the way so that
nothing else on the machine collides. ``SAGEMAKER_BASE_DIR`` (the folder holding ``model/``) and
``SAGEMAKER_BIND_TO_PORT`` come from the environment, as in the container.
"""

from __future__ import annotations

import argparse
from typing import Any

from sagemaker_pytorch_serving_container import serving, torchserve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--grpc-ports", type=int, nargs=2, required=True)
    parser.add_argument("--tmp-dir", required=True)
    args = parser.parse_args()

    generate = torchserve._generate_ts_config_properties

    def loopback_config(handler_service: Any) -> str:
        text = generate(handler_service).replace("0.0.0.0", "127.0.0.1")
        text = text.replace(
            "vmargs=-XX:-UseContainerSupport",
            f"vmargs=-XX:-UseContainerSupport -Djava.io.tmpdir={args.tmp_dir}",
        )
        inference, management = args.grpc_ports
        return text + (
            f"metrics_address=http://127.0.0.1:{args.metrics_port}\n"
            f"grpc_inference_address=127.0.0.1\ngrpc_management_address=127.0.0.1\n"
            f"grpc_inference_port={inference}\ngrpc_management_port={management}\n"
        )

    torchserve.TS_CONFIG_FILE = args.config
    torchserve._generate_ts_config_properties = loopback_config
    serving.main()


if __name__ == "__main__":
    main()
