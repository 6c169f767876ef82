#!/usr/bin/env bash
# Reproduces policy/aigc_policy/artifacts/eat-default.onnx, the policy the operator runs: the lean
# EAT network (rl/networks.py ALGOS["eat"]) trained on edge-hetero (1-4 tasks/s) and eat-reference
# (0.01-0.11 tasks/s, exact-group reuse) at once. At each rate the better of opt-ts and the shipped
# eat-reference policy on training seeds is the teacher (opt-ts on edge-hetero, the eat-reference
# policy on eat-reference); behaviour cloning (40 demo episodes per scenario, 3,000 updates), then
# 2 DAgger rounds (12 episodes per scenario, 1,500 updates each); no SAC phase; seed 0. About 5
# minutes on one core. `aigc-edge train` pins its CPU kernels (rl/kernels.py), so any x86-64 CPU
# with AVX2 writes the same file (docs/eat.md, "Training kernels"). Exported from the checkpoint
# with the best held-out score.
# Usage: scripts/train_default_policy.sh [OUT]   (DEST=path to export somewhere else)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/eat-default}
DEST=${DEST:-policy/aigc_policy/artifacts/eat-default.onnx}
aigc-edge train --algo eat --scenario edge-hetero --rates 1,2,3,4 --mix eat-reference:0.01,0.03,0.05,0.07,0.09,0.11 \
  --teacher opt-ts,eat:policy/aigc_policy/artifacts/eat-eat-reference.onnx \
  --demo-episodes 40 --bc-updates 3000 --dagger-rounds 2 --dagger-episodes 12 --dagger-updates 1500 \
  --budget 0 --eval-episodes 3 --seed 0 --threads 1 --out "$OUT"
aigc-edge export --checkpoint "$OUT/best.pt" --out "$DEST"
