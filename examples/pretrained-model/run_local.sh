#!/usr/bin/env bash
# Example (b) of "Bring your own model", end to end on this machine: a model trained elsewhere is
# exported, registered (checked before upload), approved, deployed by the deployer Lambda and
# called through the local HTTPS API. Everything it starts is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
MLCTL=.venv/bin/mlctl
OUT=build/pretrained-model
trap '$MLCTL local down >/dev/null 2>&1 || true' EXIT

.venv/bin/python examples/pretrained-model/export_model.py "$OUT"
$MLCTL local up --platform-only
VERSION=$($MLCTL models register "$OUT/model.tar.gz" --local --metrics "$OUT/evaluation.json" \
  --input-schema "$OUT/input-schema.json" --example "$OUT/example.json" \
  --description "sensor-fault classifier trained outside the platform")
$MLCTL models approve "$VERSION" --local --reason "held-out accuracy checked by the lab"
$MLCTL deploy wait --local --model-version "$VERSION" --no-smoke
$MLCTL invoke --local --file "$OUT/example.json"
