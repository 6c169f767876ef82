#!/usr/bin/env bash
# Reproduce policy/aigc_policy/artifacts/eat-default.onnx: a 30-minute EAT run on edge-hetero
# (BC warm start from the best heuristic, then discrete SAC; single-threaded torch), exported
# from the best checkpoint of its held-out evaluation. Usage: scripts/train_default_policy.sh [OUT]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/eat-default}
SEED=${SEED:-0}
BUDGET=${BUDGET:-30m}
# AIGC_EDGE: the CLI to call (default: aigc-edge from `make install`)
${AIGC_EDGE:-aigc-edge} train --algo eat --scenario edge-hetero --rates 1,2,3,4 --seed "$SEED" --budget "$BUDGET" \
  --demo-episodes 40 --bc-updates 2000 --eval-every 1000 --eval-episodes 3 --out "$OUT"
${AIGC_EDGE:-aigc-edge} export --checkpoint "$OUT/best.pt" --out policy/aigc_policy/artifacts/eat-default.onnx
