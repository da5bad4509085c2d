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
    PIP_DISABLE_PIP_VERSION_CHECK=1

# torch first, in its own layer, from the CPU-only index (the PyPI wheel pulls CUDA libraries).
ARG TORCH_VERSION=2.13.0
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch==${TORCH_VERSION}"

# The project with only its `serve` extra (uvicorn, starlette, numpy; torch is already satisfied).
# The server needs the handlers package; an artifact brings its own code/ (e.g. code/models/).
WORKDIR /opt/ml-platform
COPY pyproject.toml README.md ./
COPY handlers ./handlers
RUN pip install ".[serve]" && rm -rf /opt/ml-platform/build

RUN useradd --create-home --uid 1000 model-server
USER model-server
WORKDIR /home/model-server

# SageMaker may pick the port (multi-container endpoints, inference pipelines): the server honours it.
LABEL com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true
EXPOSE 8080
ENTRYPOINT ["python", "-m", "handlers.serving.server", "--host", "0.0.0.0"]
CMD ["serve"]
