#!/usr/bin/env bash
# 30-minute soak on the real local control plane (not part of `make test`): a steady stream of
# AIGCTasks (SOAK_RATE per second for SOAK_MINUTES) onto SOAK_NODES simulate workers, then the
# same audit as the load test (lost / placed twice / executed twice), placement latency
# percentiles, operator peak RSS and drain time. Writes bench/out/soak.json.
#
#   bash bench/soak.sh                        # 30 min, 5 tasks/s, 8 nodes (9,000 tasks)
#   SOAK_MINUTES=5 SOAK_RATE=2 bash bench/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES="${SOAK_MINUTES:-30}"
RATE="${SOAK_RATE:-5}"
NODES="${SOAK_NODES:-8}"
TASKS="$(python3 -c "print(int(${MINUTES} * 60 * ${RATE}))")"
PY="${PYTHON:-python3}"
mkdir -p bench/out
export PYTHONPATH="policy:operator:sd-worker${PYTHONPATH:+:${PYTHONPATH}}"
echo "soak: ${TASKS} tasks at ${RATE}/s for ${MINUTES} min on ${NODES} nodes" >&2
exec "${PY}" bench/load_test.py --tasks "${TASKS}" --rate "${RATE}" --nodes "${NODES}" \
  --time-scale "${SOAK_TIME_SCALE:-0.05}" --timeout "$((MINUTES * 60 + 900))" --out bench/out/soak.json
