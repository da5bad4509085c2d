# The model server image for SageMaker bring-your-own-container endpoints, GPU instances.
#
#   docker build -f docker/serving-gpu.Dockerfile -t ml-platform-serving:gpu .
#   docker run --gpus all -p 8080:8080 -v "$PWD/model:/opt/ml/model:ro" ml-platform-serving:gpu serve
#
# Same contract as serving-cpu.Dockerfile: `docker run IMAGE serve`, model at /opt/ml/model, port 8080
# (or SAGEMAKER_BIND_TO_PORT). The default model_fn and our handler put the model on cuda when
# torch sees a GPU; batching concatenates inputs on the CPU and moves each batch once.
#
# The CUDA *base* image gives the NVIDIA container runtime its settings (NVIDIA_VISIBLE_DEVICES,
# driver capabilities); the CUDA and cuDNN libraries come with the torch wheel, so the larger
# runtime/cudnn images would only duplicate them. Keep CUDA_TAG and TORCH_CUDA on the same CUDA
# minor version, and within what the instance's driver supports (SageMaker GPU hosts: 12.x).
ARG CUDA_TAG=12.8.1-base-ubuntu22.04
FROM nvidia/cuda:${CUDA_TAG}

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/opt/ml-platform

# Python 3.11 (the project's version) from the deadsnakes PPA; Ubuntu 22.04 ships 3.10. The apt
# packages are not pinned: the PPA keeps only its newest build of each, so a pin breaks the build
# at its next release. A pushed tag is never rebuilt (immutable), so what it holds does not drift.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends software-properties-common gpg-agent \
    && add-apt-repository -y ppa:deadsnakes/ppa \
    && apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv \
    && apt-get purge -y software-properties-common gpg-agent \
    && apt-get autoremove -y \
    && rm -rf /var/lib/apt/lists/* \
    && python3.11 -m venv /opt/venv

ARG TORCH_VERSION=2.13.0
ARG TORCH_CUDA=cu128
RUN pip install --no-cache-dir --index-url "https://download.pytorch.org/whl/${TORCH_CUDA}" "torch==${TORCH_VERSION}"

# The `serve` extra's dependencies, pinned (torch is already satisfied), then only the packages
# the model server imports, found through PYTHONPATH: no project install, so the image (and its
# content-hash tag, infra/images.py) changes only when what it runs changes. An artifact brings
# its own code/ (e.g. code/models/).
WORKDIR /opt/ml-platform
COPY docker/serving-requirements.txt ./requirements.txt
RUN pip install --no-cache-dir --requirement requirements.txt
COPY handlers/__init__.py ./handlers/
COPY handlers/common ./handlers/common
COPY handlers/serving ./handlers/serving

# Numeric, so the runtime can tell it is not root without reading the image's /etc/passwd.
RUN useradd --create-home --uid 1000 --user-group model-server
USER 1000:1000
WORKDIR /home/model-server

LABEL com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true
EXPOSE 8080
ENTRYPOINT ["python", "-m", "handlers.serving.server", "--host", "0.0.0.0"]
CMD ["serve"]
