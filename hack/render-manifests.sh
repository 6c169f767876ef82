#!/usr/bin/env bash
# Renders manifests/ from the Helm chart (default values, release "aigc" in namespace aigc-system),
# so that the plain manifests and the chart cannot drift. Hand-written and left alone:
# manifests/namespace.yaml and manifests/examples/.
#
#   hack/render-manifests.sh            refresh manifests/ and the chart's CRD copy (make manifests)
#   hack/render-manifests.sh OUT_DIR    render into OUT_DIR only (tests/unit/test_chart.py compares)
set -euo pipefail

HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "${HACK_DIR}")"
# shellcheck source=versions.env
source "${HACK_DIR}/versions.env"
CACHE="${AIGC_EDGE_CACHE:-$HOME/.cache/aigc-edge}"
HELM="${HELM:-${CACHE}/bin/helm-${HELM_VERSION}/helm}"
CHART="${REPO}/charts/aigc-edge-scheduler"
CRD="${REPO}/operator/aigc_api/crds/aigctasks.yaml"
OUT="${1:-${REPO}/manifests}"

[[ -x "${HELM}" ]] || { echo "render-manifests: no helm at ${HELM} (run: make components)" >&2; exit 1; }
if [[ $# -eq 0 ]]; then
  cp "${CRD}" "${CHART}/crds/aigctasks.yaml"
fi

work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT
render() {
  "${HELM}" template aigc "${CHART}" --namespace aigc-system --kube-version "${KUBERNETES_VERSION}" "$@"
}
render --output-dir "${work}" >/dev/null
templates="${work}/aigc-edge-scheduler/templates"

header="# Generated from charts/aigc-edge-scheduler by hack/render-manifests.sh: edit the chart, then run make manifests."
mkdir -p "${OUT}/crds" "${OUT}/optional"
for f in "${templates}/"*.yaml; do
  { echo "${header}"; cat "${f}"; } >"${OUT}/$(basename "${f}")"
done
# (helm ignores --show-only together with --output-dir)
{ echo "${header}"; render --set serviceMonitor.enabled=true --show-only templates/servicemonitor.yaml; } \
  >"${OUT}/optional/servicemonitor.yaml"
cp "${CRD}" "${OUT}/crds/aigctasks.yaml"
# Plain copies of the chart's defaults: tests and the simulator read them as files.
cp "${CHART}/files/model-catalog.yaml" "${CHART}/files/perf-profile.yaml" "${OUT}/"

{
  echo "${header}"
  echo "# kubectl apply -k manifests/   (kubectl apply --server-side -f manifests/crds/ on upgrades: docs/crds.md)"
  echo "apiVersion: kustomize.config.k8s.io/v1beta1"
  echo "kind: Kustomization"
  echo "resources:"
  echo "  - namespace.yaml"
  echo "  - crds/aigctasks.yaml"
  for f in "${templates}/"*.yaml; do
    echo "  - $(basename "${f}")"
  done
} >"${OUT}/kustomization.yaml"
