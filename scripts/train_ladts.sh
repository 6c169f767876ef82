#!/usr/bin/env bash
# Reproduces the shipped LAD-TS policies (policy/aigc_policy/artifacts/ladts-*.onnx) and the
# ladts-reference baselines of docs/ladts.md. Run from the repository root with the venv active.
# Each run writes DIR/{train.jsonl,eval.json,<algo>-<scenario>.onnx}; eval.json holds the greedy
# evaluation over 5 held-out seeds. Defaults: per-node networks, tanh ε, every reference defect fixed.
# --native-kernels: trained before the kernel pin (rl/kernels.py); reproduced on the CPU type that trained them.
set -euo pipefail
OUT=${OUT:-runs/ladts}
EPISODES=${EPISODES:-20}
UPDATE_EVERY=${UPDATE_EVERY:-5}  # 5x the paper's update rate: the paper's budget is tiny (spec §8.12)
ART=policy/aigc_policy/artifacts

train() {  # algo scenario episodes
  aigc-edge train --algo "$1" --scenario "$2" --episodes "$3" --update-every "$UPDATE_EVERY" --seed 0 --native-kernels \
    --out "$OUT/$1-$2"
}

train ladts ladts-reference "$EPISODES"
train ladts edge-hetero 400
for algo in d2sac sac-ts dqn; do
  train "$algo" ladts-reference "$EPISODES"
done

mkdir -p "$ART"
for algo in ladts d2sac sac-ts dqn; do
  cp "$OUT/$algo-ladts-reference/$algo-ladts-reference.onnx" "$ART/"
done
cp "$OUT/ladts-edge-hetero/ladts-edge-hetero.onnx" "$ART/"
