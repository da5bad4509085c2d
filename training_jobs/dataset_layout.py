"""Where the Prepare step reads and writes, and the names of what it writes.

Standard library only and importing nothing of the package: the Pulumi program (the pipeline
definition names the manifest) and the training and evaluation jobs read these names without
loading the preparer itself.
"""

from __future__ import annotations

PROCESSING_ROOT_ENV = "MLP_PROCESSING_ROOT"
DEFAULT_PROCESSING_ROOT = "/opt/ml/processing"
MANIFEST_FILE = "manifest.json"
QUARANTINE_FILE = "quarantine/rejected.jsonl"
# handlers.common.contracts names it too (training_jobs cannot import handlers): a test compares them.
INPUT_SCHEMA_FILE = "input-schema.json"
