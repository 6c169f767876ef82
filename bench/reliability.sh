#!/usr/bin/env bash
# The reliability lane (tests/e2e/reliability) at the issue's full sizes: 200-task bursts for every
# fault, Prometheus down for 60 s, 1,000 fuzzed documents. Figures: bench/out/reliability.jsonl
# (one JSON line per scenario; docs/reliability.md is written from them).
#
#   bash bench/reliability.sh                 # whole lane, full sizes
#   bash bench/reliability.sh -k prometheus   # extra pytest arguments select scenarios
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench/out
export PYTHONPATH="policy:operator:sd-worker${PYTHONPATH:+:${PYTHONPATH}}"
export AIGC_RELIABILITY_OUT="${AIGC_RELIABILITY_OUT:-$PWD/bench/out/reliability.jsonl}"
export AIGC_REL_BURST="${AIGC_REL_BURST:-200}"
export AIGC_REL_WORKER_BURST="${AIGC_REL_WORKER_BURST:-200}"
export AIGC_REL_NODE_BURST="${AIGC_REL_NODE_BURST:-200}"
export AIGC_REL_APISERVER_BURST="${AIGC_REL_APISERVER_BURST:-200}"
export AIGC_REL_PROM_WAVE="${AIGC_REL_PROM_WAVE:-70}"
export AIGC_REL_PROM_OUTAGE_S="${AIGC_REL_PROM_OUTAGE_S:-60}"
export AIGC_REL_METRICS_TASKS="${AIGC_REL_METRICS_TASKS:-200}"
export AIGC_REL_FUZZ_EXAMPLES="${AIGC_REL_FUZZ_EXAMPLES:-1000}"
export AIGC_REL_FUZZ_CREATE="${AIGC_REL_FUZZ_CREATE:-200}"
exec "${PYTHON:-python3}" -m pytest -q -s -m e2e -p no:cacheprovider tests/e2e/reliability "$@"
