#!/usr/bin/env bash
# Reproduces policy/aigc_policy/artifacts/eat-ladts-reference.onnx: the EAT network trained on
# ladts-reference by behaviour cloning of `spt:32` (shortest task first among the 32 tasks the
# encoder sees), no SAC phase. Run from the repository root with the venv active; about 30
# minutes on 2 shared cores (two 30,000-decision demo episodes, 3,000 BC updates, one evaluation).
# --native-kernels: trained before the kernel pin (rl/kernels.py); reproduced on the CPU type that trained it.
set -euo pipefail
OUT=${OUT:-runs/eat-ladts-reference}
aigc-edge train --algo eat --scenario ladts-reference --teacher spt:32 --demo-episodes 2 \
  --bc-updates 3000 --budget 0 --eval-episodes 1 --seed 0 --native-kernels --out "$OUT"
aigc-edge export --checkpoint "$OUT/best.pt" --out policy/aigc_policy/artifacts/eat-ladts-reference.onnx
