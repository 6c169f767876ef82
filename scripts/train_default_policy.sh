#!/usr/bin/env bash
# Reproduce policy/aigc_policy/artifacts/eat-default.onnx: one EAT policy for both edge-hetero
# (rates 1-4/s) and eat-reference (exact-group reuse, rates 0.03-0.11/s), 25 minutes, seed 0:
# per-scenario teacher (the best of opt-ts, eat-greedy and the previously shipped `eat` policy on
# training seeds), BC warm start, then discrete SAC with a decaying imitation weight; exported
# from the best checkpoint of its held-out evaluation. The export only replaces the shipped file
# if you then decide so: compare with `aigc-edge bench` first (docs/eat.md, "Measured").
# Usage: scripts/train_default_policy.sh [OUT]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/eat-mix}
SEED=${SEED:-0}
BUDGET=${BUDGET:-25m}
DEST=${DEST:-$OUT/eat-mix.onnx}
# AIGC_EDGE: the CLI to call (default: aigc-edge from `make install`)
${AIGC_EDGE:-aigc-edge} train --algo eat --scenario edge-hetero --rates 1,2,3,4 \
  --mix eat-reference:0.03,0.05,0.07,0.09,0.11 --teacher opt-ts,eat-greedy,eat --seed "$SEED" --budget "$BUDGET" \
  --demo-episodes 16 --bc-updates 1500 --eval-every 800 --eval-episodes 2 --out "$OUT"
${AIGC_EDGE:-aigc-edge} export --checkpoint "$OUT/best.pt" --out "$DEST"
