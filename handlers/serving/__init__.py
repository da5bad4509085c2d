"""The serving container: the batching model server (``python -m handlers.serving.server``) and the
SageMaker inference script shipped in ``model.tar.gz``. The only handlers package that imports torch."""
