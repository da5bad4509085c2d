# The model server image for SageMaker bring-your-own-container endpoints, CPU instances.
#
#   docker build -f docker/serving-cpu.Dockerfile -t ml-platform-serving:cpu .
#   docker run -p 8080:8080 -v "$PWD/model:/opt/ml/model:ro" ml-platform-serving:cpu serve
#
# SageMaker starts the container as `docker run IMAGE serve`, mounts the extracted model.tar.gz at
# /opt/ml/model and calls GET /ping and POST /invocations on port 8080 (or SAGEMAKER_BIND_TO_PORT).
# Tuning comes from the container's environment: SAGEMAKER_MODEL_SERVER_WORKERS,
# SAGEMAKER_MODEL_SERVER_TIMEOUT, SAGEMAKER_MAX_PAYLOAD_IN_MB, SAGEMAKER_PROGRAM.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/opt/ml-platform

# torch first, in its own layer, from the CPU-only index (the PyPI wheel pulls CUDA libraries).
ARG TORCH_VERSION=2.13.0
RUN pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu "torch==${TORCH_VERSION}"

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

# SageMaker may pick the port (multi-container endpoints, inference pipelines): the server honours it.
LABEL com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true
EXPOSE 8080
ENTRYPOINT ["python", "-m", "handlers.serving.server", "--host", "0.0.0.0"]
CMD ["serve"]
