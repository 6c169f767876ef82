#!/usr/bin/env bash
# A real, local Kubernetes control plane for tests and the demo (no containers, no mocks):
#   etcd + kube-apiserver (Node,RBAC; ServiceAccount tokens) + kube-controller-manager
#   + kwok (fake GPU nodes, pods become Running) + Prometheus (file_sd scrape targets).
# Everything listens on 127.0.0.1 on free ports chosen at start, so a test run and the demo
# can run side by side. Components come from hack/build-components.sh (versions: hack/versions.env).
#
# Usage:
#   hack/localcluster.sh up     [--dir DIR] [--nodes N] [--no-controller-manager] [--timeout SECONDS]
#   hack/localcluster.sh down   [--dir DIR]
#   hack/localcluster.sh status [--dir DIR]
#   hack/localcluster.sh kubeconfig-for [--dir DIR] --namespace NS --serviceaccount SA --out FILE [--duration 24h]
#   hack/localcluster.sh stop-component|start-component|restart-component [--dir DIR] --component NAME
#     (fault injection: NAME is kube-apiserver, prometheus, etcd, kwok or kube-controller-manager;
#      start-component re-runs the command line recorded at `up`, same ports and data)
#
# DIR (default ${AIGC_EDGE_CACHE:-$HOME/.cache/aigc-edge}/clusters/default) holds pki/, etcd/,
# prom/, logs/, pids/, targets/ (Prometheus file_sd: drop *.json there), kubeconfig (admin)
# and cluster.env (KEY=value: KUBECONFIG, APISERVER_URL, PROMETHEUS_URL, ..., PIDs).
set -euo pipefail

HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "${HACK_DIR}/versions.env"
CACHE="${AIGC_EDGE_CACHE:-$HOME/.cache/aigc-edge}"

bin_of() { printf '%s/bin/%s-%s/%s' "${CACHE}" "$1" "$2" "$1"; }
ETCD_BIN="$(bin_of etcd "${ETCD_VERSION}")"
APISERVER_BIN="$(bin_of kube-apiserver "${KUBERNETES_VERSION}")"
KCM_BIN="$(bin_of kube-controller-manager "${KUBERNETES_VERSION}")"
KUBECTL_BIN="$(bin_of kubectl "${KUBERNETES_VERSION}")"
KWOK_BIN="$(bin_of kwok "${KWOK_VERSION}")"
HELM_BIN="$(bin_of helm "${HELM_VERSION}")"
KWOK_STAGES="$(dirname "${KWOK_BIN}")/stages"
PROM_BIN="${PROMETHEUS_BIN:-/usr/bin/prometheus}"

# stop order (reverse start order)
COMPONENTS=(kwok kube-controller-manager prometheus kube-apiserver etcd)
GPU_CLASSES=(a100 l4 jetson-orin jetson-orin)

log() { printf '[localcluster] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&2
  exit 2
}

# ------------------------------------------------------------------ args
[[ $# -ge 1 ]] || usage
CMD="$1"; shift
DIR="${CACHE}/clusters/default"
NODES=4
WITH_KCM=1
TIMEOUT=120
NS="" SA="" OUT="" DURATION="24h" COMPONENT=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dir) DIR="$2"; shift 2 ;;
    --dir=*) DIR="${1#*=}"; shift ;;
    --nodes) NODES="$2"; shift 2 ;;
    --nodes=*) NODES="${1#*=}"; shift ;;
    --no-controller-manager) WITH_KCM=0; shift ;;
    --timeout) TIMEOUT="$2"; shift 2 ;;
    --namespace|-n) NS="$2"; shift 2 ;;
    --serviceaccount) SA="$2"; shift 2 ;;
    --out|-o) OUT="$2"; shift 2 ;;
    --duration) DURATION="$2"; shift 2 ;;
    --component) COMPONENT="$2"; shift 2 ;;
    -h|--help) usage ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
done
[[ "${NODES}" =~ ^[0-9]+$ && "${NODES}" -ge 1 ]] || die "--nodes must be a positive integer (got '${NODES}')"
[[ "${DIR}" =~ [[:space:]] ]] && die "--dir must not contain whitespace (got '${DIR}')"
mkdir -p "${DIR}"
DIR="$(cd "${DIR}" && pwd)"
PKI="${DIR}/pki"
PIDS="${DIR}/pids"
LOGS="${DIR}/logs"

# ------------------------------------------------------------------ process helpers
pid_of() { # name -> pid if our process is alive, else empty
  local f="${PIDS}/$1.pid" pid
  [[ -f "${f}" ]] || return 0
  pid="$(cat "${f}" 2>/dev/null || true)"
  [[ "${pid}" =~ ^[0-9]+$ ]] || return 0
  kill -0 "${pid}" 2>/dev/null || return 0
  # guard against pid reuse: every process we start has DIR in its command line
  tr '\0' ' ' < "/proc/${pid}/cmdline" 2>/dev/null | grep -qF -- "${DIR}" || return 0
  printf '%s' "${pid}"
}

start_proc() { # name cmd...
  local name="$1"; shift
  mkdir -p "${PIDS}" "${LOGS}"
  # own session, no inherited stdio: callers capturing our output must not wait on these.
  setsid "$@" >>"${LOGS}/${name}.log" 2>&1 </dev/null &
  echo $! > "${PIDS}/${name}.pid"
  printf '%s\0' "$@" > "${PIDS}/${name}.cmd"  # for start-component
}

stop_proc() { # name
  local name="$1" pid i
  pid="$(pid_of "${name}")"
  if [[ -n "${pid}" ]]; then
    kill -TERM "${pid}" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
      kill -0 "${pid}" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "${pid}" 2>/dev/null; then
      log "${name} (pid ${pid}) did not stop on SIGTERM; sending SIGKILL"
      kill -KILL "${pid}" 2>/dev/null || true
    fi
    log "stopped ${name} (pid ${pid})"
  fi
  rm -f "${PIDS}/${name}.pid"
}

fail_with_log() { # name message
  log "---- last lines of ${LOGS}/$1.log ----"
  tail -n 40 "${LOGS}/$1.log" >&2 2>/dev/null || true
  log "----"
  die "$2"
}

EXIT_PORT_RACE=75

wait_for() { # name timeout-seconds cmd... (cmd succeeds when ready)
  local name="$1" t="$2"; shift 2
  local deadline=$((SECONDS + t))
  until "$@" >/dev/null 2>&1; do
    if [[ -z "$(pid_of "${name}")" ]]; then
      if grep -qi "address already in use" "${LOGS}/${name}.log" 2>/dev/null; then
        log "${name}: its port was taken between choosing and binding it; retrying with new ports"
        exit "${EXIT_PORT_RACE}"
      fi
      fail_with_log "${name}" "${name} exited during startup"
    fi
    if ((SECONDS >= deadline)); then
      fail_with_log "${name}" "${name} not ready after ${t}s"
    fi
    sleep 0.2
  done
}

free_ports() { # count -> that many distinct free loopback TCP ports
  python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
PY
}

need() { command -v "$1" >/dev/null 2>&1 || die "$1 is required but not installed${2:+ ($2)}"; }

check_binaries() {
  local missing=() b
  for b in "${ETCD_BIN}" "${APISERVER_BIN}" "${KUBECTL_BIN}" "${KWOK_BIN}" "${PROM_BIN}"; do
    [[ -x "${b}" ]] || missing+=("${b}")
  done
  if [[ "${WITH_KCM}" == 1 && ! -x "${KCM_BIN}" ]]; then missing+=("${KCM_BIN}"); fi
  [[ -f "${KWOK_STAGES}/.ready" ]] || missing+=("${KWOK_STAGES}/")
  if [[ ${#missing[@]} -gt 0 ]]; then
    die "components missing: ${missing[*]} -- run hack/build-components.sh first"
  fi
}

# ------------------------------------------------------------------ pki
gen_pki() {
  if [[ -f "${PKI}/.ready-v2" ]]; then return 0; fi
  need openssl "apt-get install -y openssl"
  rm -rf "${PKI}"; mkdir -p "${PKI}"; chmod 700 "${PKI}"
  cat > "${PKI}/openssl.cnf" <<'CNF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = placeholder
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign, digitalSignature
subjectKeyIdentifier = hash
[v3_server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = @alt
authorityKeyIdentifier = keyid
[v3_client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
[alt]
IP.1 = 127.0.0.1
IP.2 = 10.96.0.1
DNS.1 = localhost
DNS.2 = kubernetes
DNS.3 = kubernetes.default
DNS.4 = kubernetes.default.svc
DNS.5 = kubernetes.default.svc.cluster.local
CNF
  (
    cd "${PKI}"
    local q=(-config openssl.cnf)
    openssl genrsa -out ca.key 2048 2>/dev/null
    openssl req -x509 -new "${q[@]}" -extensions v3_ca -key ca.key -sha256 -days 3650 \
      -subj "/CN=aigc-edge-local-ca" -out ca.crt
    # separate CA for the aggregation layer (requestheader / front-proxy)
    openssl genrsa -out front-proxy-ca.key 2048 2>/dev/null
    openssl req -x509 -new "${q[@]}" -extensions v3_ca -key front-proxy-ca.key -sha256 -days 3650 \
      -subj "/CN=aigc-edge-front-proxy-ca" -out front-proxy-ca.crt
    sign() { # name subject extensions [ca-name]
      local ca="${4:-ca}"
      openssl genrsa -out "$1.key" 2048 2>/dev/null
      openssl req -new "${q[@]}" -key "$1.key" -subj "$2" -out "$1.csr"
      openssl x509 -req -in "$1.csr" -CA "${ca}.crt" -CAkey "${ca}.key" -set_serial "0x$(openssl rand -hex 16)" \
        -sha256 -days 3650 -extfile openssl.cnf -extensions "$3" -out "$1.crt" 2>/dev/null
      rm -f "$1.csr"
    }
    sign apiserver "/CN=kube-apiserver" v3_server
    sign admin "/O=system:masters/CN=aigc-edge-admin" v3_client
    sign front-proxy-client "/CN=front-proxy-client" v3_client front-proxy-ca
    # service-account token signing key pair
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    chmod 600 ./*.key
  )
  touch "${PKI}/.ready-v2"
}

b64() { base64 -w0 < "$1"; }

write_kubeconfig() { # file server user-yaml-lines
  local file="$1" server="$2" user="$3" tmp
  tmp="${file}.tmp.$$"
  cat > "${tmp}" <<KC
apiVersion: v1
kind: Config
clusters:
- name: aigc-edge-local
  cluster:
    server: ${server}
    certificate-authority-data: $(b64 "${PKI}/ca.crt")
users:
- name: user
  user:
${user}
contexts:
- name: aigc-edge-local
  context:
    cluster: aigc-edge-local
    user: user
current-context: aigc-edge-local
KC
  chmod 600 "${tmp}"
  mv -f "${tmp}" "${file}"
}

# ------------------------------------------------------------------ manifests
nodes_manifest() {
  local i class arch cpu mem
  for ((i = 0; i < NODES; i++)); do
    class="${GPU_CLASSES[$((i % ${#GPU_CLASSES[@]}))]}"
    case "${class}" in
      a100) arch=amd64 cpu=32 mem=256Gi ;;
      l4) arch=amd64 cpu=16 mem=64Gi ;;
      *) arch=arm64 cpu=12 mem=32Gi ;;
    esac
    cat <<NODE
---
apiVersion: v1
kind: Node
metadata:
  name: edge-${i}
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    aigc.edge.io/gpu-class: ${class}
    aigc.edge.io/gpu-node: "true"
    kubernetes.io/hostname: edge-${i}
    kubernetes.io/os: linux
    kubernetes.io/arch: ${arch}
    beta.kubernetes.io/os: linux
    beta.kubernetes.io/arch: ${arch}
    type: kwok
spec: {}
status:
  capacity:
    cpu: "${cpu}"
    memory: ${mem}
    pods: "110"
    nvidia.com/gpu: "1"
  allocatable:
    cpu: "${cpu}"
    memory: ${mem}
    pods: "110"
    nvidia.com/gpu: "1"
  nodeInfo:
    architecture: ${arch}
    operatingSystem: linux
NODE
  done
}

write_prometheus_config() { # prom-port
  cat > "${DIR}/prometheus.yml" <<PROM
# Generated by hack/localcluster.sh. Add scrape targets at run time by writing
# ${DIR}/targets/<name>.json  ([{"targets": ["127.0.0.1:PORT"], "labels": {"job": "NAME"}}]).
global:
  scrape_interval: 2s
  scrape_timeout: 2s
  evaluation_interval: 2s
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ["127.0.0.1:$1"]
  - job_name: file-sd
    file_sd_configs:
      - files: ["${DIR}/targets/*.json"]
        refresh_interval: 2s
PROM
}

# ------------------------------------------------------------------ commands
all_running() {
  local c
  for c in etcd kube-apiserver kwok prometheus; do
    [[ -n "$(pid_of "${c}")" ]] || return 1
  done
  if grep -q '^KCM_PID=[0-9]' "${DIR}/cluster.env" 2>/dev/null; then
    [[ -n "$(pid_of kube-controller-manager)" ]] || return 1
  fi
  [[ -f "${DIR}/cluster.env" ]]
}

cmd_down() {
  local c
  for c in "${COMPONENTS[@]}"; do stop_proc "${c}"; done
  rm -f "${DIR}/cluster.env"
  log "down (${DIR})"
}

cmd_status() {
  local c pid rc=0
  for c in etcd kube-apiserver kube-controller-manager kwok prometheus; do
    pid="$(pid_of "${c}")"
    if [[ -n "${pid}" ]]; then
      printf '%-24s running (pid %s)\n' "${c}" "${pid}"
    else
      printf '%-24s stopped\n' "${c}"
    fi
  done
  if all_running; then
    if "${KUBECTL_BIN}" --kubeconfig "${DIR}/kubeconfig" get --raw /readyz >/dev/null 2>&1; then
      echo "apiserver: ready"
    else
      echo "apiserver: NOT ready"; rc=1
    fi
    cat "${DIR}/cluster.env"
  else
    echo "cluster: not (fully) running in ${DIR}"; rc=3
  fi
  return "${rc}"
}

cmd_up() {
  local t0=${SECONDS}
  if all_running && "${KUBECTL_BIN}" --kubeconfig "${DIR}/kubeconfig" get --raw /readyz >/dev/null 2>&1; then
    log "already running in ${DIR}"
    cat "${DIR}/cluster.env"
    return 0
  fi
  check_binaries
  need curl "apt-get install -y curl"
  need python3
  need setsid "util-linux"
  cmd_down >/dev/null 2>&1 || true   # clean up a partial earlier start

  # fresh state every time (the PKI is kept: it is only certificates)
  rm -rf "${DIR}/etcd" "${DIR}/prom" "${DIR}/targets" "${PIDS}" "${LOGS}" "${DIR}/kwok" \
         "${DIR}/kubeconfig" "${DIR}/cluster.env"
  mkdir -p "${DIR}/targets" "${PIDS}" "${LOGS}" "${DIR}/kwok"
  gen_pki

  local ports etcd_port peer_port api_port prom_port kcm_port
  read -r etcd_port peer_port api_port prom_port kcm_port <<<"$(free_ports 5)"
  local etcd_url="http://127.0.0.1:${etcd_port}"
  local api_url="https://127.0.0.1:${api_port}"
  local prom_url="http://127.0.0.1:${prom_port}"

  log "starting etcd ${ETCD_VERSION} on ${etcd_url}"
  start_proc etcd "${ETCD_BIN}" \
    --name=aigc-edge --data-dir="${DIR}/etcd" \
    --listen-client-urls="${etcd_url}" --advertise-client-urls="${etcd_url}" \
    --listen-peer-urls="http://127.0.0.1:${peer_port}" \
    --initial-advertise-peer-urls="http://127.0.0.1:${peer_port}" \
    --initial-cluster="aigc-edge=http://127.0.0.1:${peer_port}" --initial-cluster-state=new \
    --unsafe-no-fsync --log-level=warn

  log "starting prometheus on ${prom_url}"
  write_prometheus_config "${prom_port}"
  start_proc prometheus "${PROM_BIN}" \
    --config.file="${DIR}/prometheus.yml" --storage.tsdb.path="${DIR}/prom" \
    --storage.tsdb.retention.time=1d --web.listen-address="127.0.0.1:${prom_port}"

  wait_for etcd 30 curl -fsS "${etcd_url}/health"

  log "starting kube-apiserver ${KUBERNETES_VERSION} on ${api_url}"
  start_proc kube-apiserver "${APISERVER_BIN}" \
    --etcd-servers="${etcd_url}" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="${api_port}" \
    --endpoint-reconciler-type=none \
    --tls-cert-file="${PKI}/apiserver.crt" --tls-private-key-file="${PKI}/apiserver.key" \
    --client-ca-file="${PKI}/ca.crt" \
    --requestheader-client-ca-file="${PKI}/front-proxy-ca.crt" \
    --requestheader-allowed-names=front-proxy-client \
    --requestheader-username-headers=X-Remote-User \
    --requestheader-group-headers=X-Remote-Group \
    --requestheader-extra-headers-prefix=X-Remote-Extra- \
    --proxy-client-cert-file="${PKI}/front-proxy-client.crt" \
    --proxy-client-key-file="${PKI}/front-proxy-client.key" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="${PKI}/sa.pub" \
    --service-account-signing-key-file="${PKI}/sa.key" \
    --service-cluster-ip-range=10.96.0.0/16 \
    --authorization-mode=Node,RBAC \
    --enable-admission-plugins=NodeRestriction \
    --allow-privileged=true \
    --profiling=false \
    --event-ttl=1h

  wait_for kube-apiserver "${TIMEOUT}" curl -fsS --cacert "${PKI}/ca.crt" \
    --cert "${PKI}/admin.crt" --key "${PKI}/admin.key" "${api_url}/readyz"
  write_kubeconfig "${DIR}/kubeconfig" "${api_url}" \
"    client-certificate-data: $(b64 "${PKI}/admin.crt")
    client-key-data: $(b64 "${PKI}/admin.key")"
  local k=("${KUBECTL_BIN}" --kubeconfig "${DIR}/kubeconfig")
  log "kube-apiserver ready after $((SECONDS - t0))s"

  if [[ "${WITH_KCM}" == 1 ]]; then
    log "starting kube-controller-manager ${KUBERNETES_VERSION}"
    start_proc kube-controller-manager "${KCM_BIN}" \
      --kubeconfig="${DIR}/kubeconfig" \
      --authentication-kubeconfig="${DIR}/kubeconfig" \
      --authorization-kubeconfig="${DIR}/kubeconfig" \
      --bind-address=127.0.0.1 --secure-port="${kcm_port}" \
      --leader-elect=false \
      --use-service-account-credentials=true \
      --service-account-private-key-file="${PKI}/sa.key" \
      --root-ca-file="${PKI}/ca.crt" \
      --cluster-signing-cert-file="${PKI}/ca.crt" --cluster-signing-key-file="${PKI}/ca.key" \
      --service-cluster-ip-range=10.96.0.0/16 \
      --cluster-name=aigc-edge-local \
      --profiling=false
  fi

  log "starting kwok ${KWOK_VERSION}"
  # kwok's stage configs (node init + lease heartbeat; pod ready/complete/delete)
  local f first=1
  : > "${DIR}/kwok/kwok.yaml"
  for f in "${KWOK_STAGES}"/*.yaml; do
    [[ ${first} == 1 ]] || echo '---' >> "${DIR}/kwok/kwok.yaml"
    cat "${f}" >> "${DIR}/kwok/kwok.yaml"; first=0
  done
  start_proc kwok "${KWOK_BIN}" \
    --config="${DIR}/kwok/kwok.yaml" \
    --kubeconfig="${DIR}/kubeconfig" \
    --manage-all-nodes=false \
    --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
    --cidr=10.0.0.0/16 --node-ip=10.0.0.1 \
    --node-lease-duration-seconds=40

  log "creating ${NODES} fake GPU nodes (edge-0..edge-$((NODES - 1)))"
  nodes_manifest > "${DIR}/nodes.yaml"
  "${k[@]}" apply -f "${DIR}/nodes.yaml" >/dev/null

  wait_for prometheus 60 curl -fsS "${prom_url}/-/ready"
  local deadline=$((SECONDS + 90)) ready
  while :; do
    ready="$("${k[@]}" get nodes -l aigc.edge.io/gpu-node=true \
      -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' 2>/dev/null \
      | grep -c '^True$' || true)"
    [[ "${ready}" -ge "${NODES}" ]] && break
    [[ -n "$(pid_of kwok)" ]] || fail_with_log kwok "kwok exited during startup"
    ((SECONDS < deadline)) || fail_with_log kwok "only ${ready}/${NODES} nodes Ready after 90s"
    sleep 0.3
  done
  if [[ "${WITH_KCM}" == 1 ]]; then
    # the service-account controller must have created default/default before pods can be created
    wait_for kube-controller-manager 60 "${k[@]}" -n default get serviceaccount default
  fi

  local kcm_pid=""
  [[ "${WITH_KCM}" == 1 ]] && kcm_pid="$(pid_of kube-controller-manager)"
  cat > "${DIR}/cluster.env.tmp" <<ENV
KUBECONFIG=${DIR}/kubeconfig
APISERVER_URL=${api_url}
PROMETHEUS_URL=${prom_url}
ETCD_URL=${etcd_url}
CLUSTER_DIR=${DIR}
PROMETHEUS_TARGETS_DIR=${DIR}/targets
NODES=${NODES}
KUBECTL=${KUBECTL_BIN}
HELM=${HELM_BIN}
KUBERNETES_VERSION=${KUBERNETES_VERSION}
ETCD_PID=$(pid_of etcd)
APISERVER_PID=$(pid_of kube-apiserver)
KCM_PID=${kcm_pid}
KWOK_PID=$(pid_of kwok)
PROMETHEUS_PID=$(pid_of prometheus)
ENV
  mv -f "${DIR}/cluster.env.tmp" "${DIR}/cluster.env"
  log "cluster up in $((SECONDS - t0))s (${NODES} nodes Ready, Prometheus ready)"
  cat "${DIR}/cluster.env"
}

cmd_kubeconfig_for() {
  [[ -n "${NS}" && -n "${SA}" && -n "${OUT}" ]] || die "kubeconfig-for needs --namespace, --serviceaccount and --out"
  [[ -f "${DIR}/cluster.env" ]] || die "no running cluster in ${DIR} (run: hack/localcluster.sh up --dir ${DIR})"
  local api_url token
  api_url="$(sed -n 's/^APISERVER_URL=//p' "${DIR}/cluster.env")"
  # TokenRequest API (bound service-account token)
  token="$("${KUBECTL_BIN}" --kubeconfig "${DIR}/kubeconfig" -n "${NS}" create token "${SA}" \
    --duration="${DURATION}")" || die "kubectl create token ${NS}/${SA} failed"
  mkdir -p "$(dirname "${OUT}")"
  write_kubeconfig "${OUT}" "${api_url}" "    token: ${token}"
  printf '%s\n' "${OUT}"
}

component_ready() { # name -> 0 when it answers
  local api_url prom_url
  case "$1" in
    kube-apiserver)
      api_url="$(sed -n 's/^APISERVER_URL=//p' "${DIR}/cluster.env")"
      curl -fsS --cacert "${PKI}/ca.crt" --cert "${PKI}/admin.crt" --key "${PKI}/admin.key" "${api_url}/readyz" ;;
    prometheus)
      prom_url="$(sed -n 's/^PROMETHEUS_URL=//p' "${DIR}/cluster.env")"
      curl -fsS "${prom_url}/-/ready" ;;
    *) [[ -n "$(pid_of "$1")" ]] ;;
  esac
}

component_env_key() {
  case "$1" in
    kube-apiserver) echo APISERVER_PID ;; prometheus) echo PROMETHEUS_PID ;; etcd) echo ETCD_PID ;;
    kwok) echo KWOK_PID ;; kube-controller-manager) echo KCM_PID ;;
  esac
}

cmd_stop_component() {
  [[ " ${COMPONENTS[*]} " == *" ${COMPONENT} "* ]] || die "--component must be one of: ${COMPONENTS[*]}"
  [[ -f "${DIR}/cluster.env" ]] || die "no running cluster in ${DIR}"
  stop_proc "${COMPONENT}"
}

cmd_start_component() {
  [[ " ${COMPONENTS[*]} " == *" ${COMPONENT} "* ]] || die "--component must be one of: ${COMPONENTS[*]}"
  [[ -f "${DIR}/cluster.env" ]] || die "no running cluster in ${DIR}"
  [[ -f "${PIDS}/${COMPONENT}.cmd" ]] || die "no recorded command for ${COMPONENT} (cluster started before this feature?)"
  if [[ -z "$(pid_of "${COMPONENT}")" ]]; then
    local argv=()
    mapfile -d '' argv < "${PIDS}/${COMPONENT}.cmd"
    log "starting ${COMPONENT} again"
    start_proc "${COMPONENT}" "${argv[@]}"
  fi
  wait_for "${COMPONENT}" "${TIMEOUT}" component_ready "${COMPONENT}"
  local key
  key="$(component_env_key "${COMPONENT}")"
  sed -i "s/^${key}=.*/${key}=$(pid_of "${COMPONENT}")/" "${DIR}/cluster.env"
  log "${COMPONENT} ready (pid $(pid_of "${COMPONENT}"))"
}

case "${CMD}" in
  stop-component) cmd_stop_component ;;
  start-component) cmd_start_component ;;
  restart-component) cmd_stop_component; cmd_start_component ;;
  up)
    for attempt in 1 2 3; do
      rc=0
      (cmd_up) || rc=$?
      [[ "${rc}" == "${EXIT_PORT_RACE}" && "${attempt}" -lt 3 ]] || break
    done
    [[ "${rc}" == 0 ]] || cmd_down >/dev/null 2>&1 || true
    exit "${rc}"
    ;;
  down) cmd_down ;;
  status) cmd_status ;;
  kubeconfig-for) cmd_kubeconfig_for ;;
  -h|--help|help) usage ;;
  *) die "unknown command '${CMD}' (expected up|down|status|kubeconfig-for|stop-component|start-component|restart-component)" ;;
esac
