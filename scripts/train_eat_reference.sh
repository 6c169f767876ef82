#!/usr/bin/env bash
# Reproduces policy/aigc_policy/artifacts/eat-eat-reference.onnx: the EAT network trained on
# eat-reference (rates 0.01-0.11) by behaviour cloning of the rollout planner (`rollout`:
# warm-first + eat-greedy bases, 8 sampled 30 s futures), then 3 DAgger rounds; no SAC phase
# (SAC fine-tuning made this policy worse, docs/eat.md). Run from the repository root with the
# venv active; about 20 minutes on 2 shared cores (360 demo episodes, 6,000 + 3 x 1,500 updates).
# --native-kernels: trained before the kernel pin (rl/kernels.py); reproduced on the CPU type that trained it.
set -euo pipefail
OUT=${OUT:-runs/eat-eat-reference}
DEST=${DEST:-policy/aigc_policy/artifacts/eat-eat-reference.onnx}
aigc-edge train --algo eat --scenario eat-reference --rates 0.01,0.03,0.05,0.07,0.09,0.11 --teacher rollout \
  --demo-episodes 360 --bc-updates 6000 --dagger-rounds 3 --dagger-episodes 60 --dagger-updates 1500 \
  --budget 0 --eval-episodes 3 --seed 0 --native-kernels --out "$OUT"
aigc-edge export --checkpoint "$OUT/best.pt" --out "$DEST"
