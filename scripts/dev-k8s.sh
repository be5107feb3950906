#!/usr/bin/env bash
# dev-k8s.sh up|down|status|build — a REAL Kubernetes control plane for gpufleet's tests.
#
#   etcd 3.4 (Debian package etcd-server) + kube-apiserver / kube-controller-manager /
#   kube-scheduler v1.20.2 BUILT from Debian's `kubernetes` source package with Debian's Go
#   (vendored reflect2 swapped for Debian's 1.0.2: Go >= 1.18 otherwise makes every JSON
#   request panic). ~5 min of 2-core CPU once; binaries cached in $GPUFLEET_K8S_CACHE/bin.
#   Pods never execute: tests/tooling/fake_kubelet.py registers GPU nodes, moves bound pods
#   to Running then Succeeded/Failed, and serves the kubelet containerLogs endpoint so the
#   pod log API (apiserver -> kubelet) is really exercised.
#
# Idempotent. Writes /var/lib/gpufleet-dev/k8s.env (sourced by scripts/dev-env.sh).
# Knobs: GPUFLEET_K8S_DIR (/var/lib/gpufleet-dev/k8s)  GPUFLEET_K8S_CACHE (/var/cache/gpufleet-k8s)
#        GPUFLEET_K8S_API_PORT (16443) GPUFLEET_K8S_ETCD_PORT (22379) GPUFLEET_K8S_KUBELET_PORT (10350)
#        GPUFLEET_K8S_NODES (4) GPUFLEET_K8S_GPUS (8) GPUFLEET_K8S_PRODUCT (NVIDIA-A100-SXM4-80GB)
#        GPUFLEET_K8S_PYTHON (python with the `kubernetes` client; default: repo .venv)
#        GPUFLEET_K8S_CLEAN=1 (wipe etcd data on up)
set -euo pipefail
K=${GPUFLEET_K8S_DIR:-/var/lib/gpufleet-dev/k8s}
C=${GPUFLEET_K8S_CACHE:-/var/cache/gpufleet-k8s}
ENVF=${GPUFLEET_K8S_ENV:-/var/lib/gpufleet-dev/k8s.env}
API_PORT=${GPUFLEET_K8S_API_PORT:-16443}
ETCD_PORT=${GPUFLEET_K8S_ETCD_PORT:-22379}
KUBELET_PORT=${GPUFLEET_K8S_KUBELET_PORT:-10350}
NODES=${GPUFLEET_K8S_NODES:-4}
GPUS=${GPUFLEET_K8S_GPUS:-8}
PRODUCT=${GPUFLEET_K8S_PRODUCT:-NVIDIA-A100-SXM4-80GB}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${GPUFLEET_K8S_PYTHON:-$ROOT/.venv/bin/python}
BIN=$C/bin
KUBE_VERSION=v1.20.2
T0=$(date +%s%N)
log() { local ms=$(( ($(date +%s%N) - T0) / 1000000 )); printf '[dev-k8s %4d.%03ds] %s\n' $((ms/1000)) $((ms%1000)) "$*"; }
die() { log "ERROR: $*"; exit 1; }
wait_for() { local t=$1 what=$2; shift 2; local end=$(( $(date +%s) + t ))
  until "$@" >/dev/null 2>&1; do [ "$(date +%s)" -lt "$end" ] || die "timed out after ${t}s: $what"; sleep 0.2; done; }
# alive <name> <comm>: the pid file names a live process with that command name
alive() { local pf=$K/run/$1.pid pid; [ -s "$pf" ] || return 1; pid=$(cat "$pf")
  [ -d "/proc/$pid" ] && [ "$(cut -c1-15 < "/proc/$pid/comm" 2>/dev/null)" = "$(cut -c1-15 <<<"$2")" ]; }
# start <name> <comm> <cmd...>: a daemon in its own session, with a pid file and a log
start() { local name=$1 comm=$2; shift 2
  if alive "$name" "$comm"; then log "$name already running (pid $(cat "$K/run/$name.pid"))"; return; fi
  ( cd "$K"; exec setsid "$@" </dev/null >"$K/log/$name.log" 2>&1 ) &
  echo $! > "$K/run/$name.pid"; }
stop() { local name=$1 comm=$2 pf=$K/run/$1.pid pid i
  [ -s "$pf" ] || return 0; pid=$(cat "$pf")
  if alive "$name" "$comm"; then
    kill -TERM "$pid"; for i in $(seq 1 100); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
    [ -d "/proc/$pid" ] && kill -KILL "$pid"
    log "stopped $name (pid $pid)"
  fi
  rm -f "$pf"; }
have_pkg() { dpkg-query -W -f='${Status}\n' "$1" 2>/dev/null | grep -q '^install ok installed'; }

install_pkgs() {
  local pkgs="etcd-server openssl curl" missing="" p prc=0
  have_binaries || pkgs="$pkgs golang-go dpkg-dev rsync golang-github-modern-go-reflect2-dev"
  for p in $pkgs; do have_pkg "$p" || missing="$missing $p"; done
  [ -z "$missing" ] && return 0
  apt-cache policy etcd-server 2>/dev/null | grep -q 'Candidate: [0-9]' || apt-get update -qq
  # no daemon auto-start from postinst (etcd-server would start its own etcd)
  [ -e /usr/sbin/policy-rc.d ] || { printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; prc=1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null \
    || { [ $prc = 1 ] && rm -f /usr/sbin/policy-rc.d; die "apt-get install failed:$missing"; }
  [ $prc = 1 ] && rm -f /usr/sbin/policy-rc.d
  log "installed:$missing"
}

have_binaries() { [ -x "$BIN/kube-apiserver" ] && [ -x "$BIN/kube-scheduler" ] && [ -x "$BIN/kube-controller-manager" ]; }

build() {
  have_binaries && return 0
  install_pkgs
  if ! apt-cache showsrc kubernetes 2>/dev/null | grep -q '^Package: kubernetes'; then
    sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources \
      > /etc/apt/sources.list.d/gpufleet-deb-src.sources
    apt-get update -qq
  fi
  mkdir -p "$C/src" "$BIN"
  ( cd "$C/src" && { ls -d kubernetes-*/ >/dev/null 2>&1 || apt-get source -qq kubernetes >/dev/null; } )
  local src v; src=$(ls -d "$C"/src/kubernetes-*/ | head -1)
  v="$src/vendor/github.com/modern-go/reflect2"
  if [ ! -e "$v/go_above_118.go" ]; then   # reflect2 1.0.1 + Go >= 1.18 = nil deref in every decode
    rm -f "$v"/*.go "$v"/*.s
    cp /usr/share/gocode/src/github.com/modern-go/reflect2/*.go /usr/share/gocode/src/github.com/modern-go/reflect2/*.s "$v/"
  fi
  log "building kube-apiserver, kube-scheduler, kube-controller-manager $KUBE_VERSION from $src (minutes; log $C/build.log)"
  ( cd "$src" && env HOME="$C/home" GOFLAGS=-p=2 KUBE_GIT_VERSION=$KUBE_VERSION KUBE_GIT_TREE_STATE=clean CGO_ENABLED=0 \
      make WHAT="cmd/kube-apiserver cmd/kube-scheduler cmd/kube-controller-manager" ) > "$C/build.log" 2>&1 \
    || die "build failed, see $C/build.log"
  for b in kube-apiserver kube-scheduler kube-controller-manager; do
    cp "$src/_output/bin/$b" "$BIN/$b.tmp" && mv "$BIN/$b.tmp" "$BIN/$b"; done
  rm -rf "$src/_output" "$C/home/.cache"   # GBs of objects; the binaries stay in $BIN
  log "built: $("$BIN/kube-apiserver" --version)"
}


cert() {  # cert <name> <CN> <O or ""> <extensions>: key + cert signed by our CA
  local P=$K/pki subj="/CN=$2"; [ -n "$3" ] && subj="/O=$3/CN=$2"
  openssl req -newkey rsa:2048 -nodes -subj "$subj" -keyout "$P/$1.key" -out "$P/$1.csr" 2>/dev/null
  printf '%b' "$4" > "$P/$1.ext"
  openssl x509 -req -in "$P/$1.csr" -CA "$P/ca.crt" -CAkey "$P/ca.key" -CAcreateserial -days 3650 \
    -extfile "$P/$1.ext" -out "$P/$1.crt" 2>/dev/null
  rm -f "$P/$1.csr" "$P/$1.ext"
}

pki() {
  local P=$K/pki
  mkdir -p "$P"; chmod 700 "$P"
  [ -s "$P/kubelet-client.crt" ] && return 0
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=gpufleet-dev-ca" \
    -keyout "$P/ca.key" -out "$P/ca.crt" 2>/dev/null
  cert apiserver kube-apiserver "" \
    'subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n'
  cert kubelet fake-kubelet "" 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n'
  cert kubelet-client kube-apiserver-kubelet-client system:masters 'extendedKeyUsage=clientAuth\n'
  openssl genrsa -out "$P/sa.key" 2048 2>/dev/null
  openssl rsa -in "$P/sa.key" -pubout -out "$P/sa.pub" 2>/dev/null
  # a static bearer token for an admin in system:masters (loopback-only test cluster)
  echo "$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n'),admin,admin,system:masters" > "$P/tokens.csv"
  chmod 600 "$P"/*.key "$P/tokens.csv"
}

kubeconfig() {
  local token; token=$(cut -d, -f1 "$K/pki/tokens.csv")
  umask 077
  cat > "$K/admin.kubeconfig.tmp" <<KC
apiVersion: v1
kind: Config
clusters:
- name: gpufleet-dev
  cluster: {server: "https://127.0.0.1:$API_PORT", certificate-authority: "$K/pki/ca.crt"}
users:
- name: admin
  user: {token: "$token"}
contexts:
- name: gpufleet-dev
  context: {cluster: gpufleet-dev, user: admin, namespace: default}
current-context: gpufleet-dev
KC
  mv "$K/admin.kubeconfig.tmp" "$K/admin.kubeconfig"
}

api() { curl -sf --max-time 5 --cacert "$K/pki/ca.crt" -H "Authorization: Bearer $(cut -d, -f1 "$K/pki/tokens.csv")" \
  "https://127.0.0.1:$API_PORT$1"; }

start_control_plane() {
  local P=$K/pki
  [ "${GPUFLEET_K8S_CLEAN:-0}" = 1 ] && ! alive etcd etcd && { rm -rf "$K/etcd"; log "wiped etcd data"; }
  mkdir -p "$K/etcd"; chmod 700 "$K/etcd"
  start etcd etcd /usr/bin/etcd --name gpufleet-dev --data-dir "$K/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$((ETCD_PORT+1))" --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT+1))" \
    --initial-cluster "gpufleet-dev=http://127.0.0.1:$((ETCD_PORT+1))" --unsafe-no-fsync
  wait_for 30 etcd curl -sf "http://127.0.0.1:$ETCD_PORT/health"
  log "etcd up on 127.0.0.1:$ETCD_PORT"
  start kube-apiserver kube-apiserver "$BIN/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$API_PORT" --insecure-port=0 \
    --tls-cert-file="$P/apiserver.crt" --tls-private-key-file="$P/apiserver.key" --client-ca-file="$P/ca.crt" \
    --token-auth-file="$P/tokens.csv" --authorization-mode=Node,RBAC \
    --kubelet-client-certificate="$P/kubelet-client.crt" --kubelet-client-key="$P/kubelet-client.key" \
    --kubelet-certificate-authority="$P/ca.crt" --kubelet-preferred-address-types=InternalIP,Hostname \
    --service-cluster-ip-range=10.0.0.0/24 --allow-privileged=true \
    --service-account-key-file="$P/sa.pub" --service-account-signing-key-file="$P/sa.key" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local
  wait_for 90 "kube-apiserver /readyz" api /readyz
  log "kube-apiserver ready at https://127.0.0.1:$API_PORT ($(api /version | sed -n 's/.*"gitVersion": "\(.*\)".*/\1/p'))"
  start kube-controller-manager kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig="$K/admin.kubeconfig" --authentication-kubeconfig="$K/admin.kubeconfig" \
    --authorization-kubeconfig="$K/admin.kubeconfig" --leader-elect=false --port=0 \
    --bind-address=127.0.0.1 --secure-port=$((API_PORT+1)) \
    --service-account-private-key-file="$P/sa.key" --root-ca-file="$P/ca.crt" --use-service-account-credentials=false \
    --controllers='*,-nodeipam,-cloud-node-lifecycle,-service,-route' --cluster-name=gpufleet-dev \
    --kube-api-qps=200 --kube-api-burst=400
  start kube-scheduler kube-scheduler "$BIN/kube-scheduler" \
    --kubeconfig="$K/admin.kubeconfig" --authentication-kubeconfig="$K/admin.kubeconfig" \
    --authorization-kubeconfig="$K/admin.kubeconfig" --leader-elect=false --port=0 \
    --bind-address=127.0.0.1 --secure-port=$((API_PORT+2)) --kube-api-qps=200 --kube-api-burst=400
  wait_for 60 "default ServiceAccount (controller-manager working)" api /api/v1/namespaces/default/serviceaccounts/default
  log "kube-controller-manager + kube-scheduler running"
}

kubelet_python() {
  if "$PY" -c 'import kubernetes' 2>/dev/null; then echo "$PY"; return; fi
  if ! "$K/venv/bin/python" -c 'import kubernetes' 2>/dev/null; then  # CI: before the project venv exists
    python3 -m venv "$K/venv" >/dev/null
    "$K/venv/bin/pip" install -q 'kubernetes>=29' >"$K/log/pip.log" 2>&1 || die "pip install kubernetes failed: $K/log/pip.log"
  fi
  echo "$K/venv/bin/python"
}

start_kubelet() {
  local py; py=$(kubelet_python)
  start fake-kubelet python "$py" "$ROOT/tests/tooling/fake_kubelet.py" --kubeconfig "$K/admin.kubeconfig" \
    --nodes "$NODES" --gpus "$GPUS" --gpu-product "$PRODUCT" --log-port "$KUBELET_PORT" \
    --tls-cert "$K/pki/kubelet.crt" --tls-key "$K/pki/kubelet.key" --client-ca "$K/pki/ca.crt" \
    --state-dir "$K/kubelet"
  ready_nodes() { local n; n=$(api /api/v1/nodes?labelSelector=type%3Dfake-kubelet) || return 1
    [ "$(grep -c '"type": "Ready"' <<<"$n")" -ge "$NODES" ] && ! grep -q 'node.kubernetes.io/not-ready' <<<"$n"; }
  wait_for 60 "$NODES fake GPU nodes Ready and untainted (log $K/log/fake-kubelet.log)" ready_nodes
  log "fake-kubelet: $NODES nodes gpu-node-01.. nvidia.com/gpu=$GPUS ($PRODUCT), logs on :$KUBELET_PORT"
}

write_env() {
  mkdir -p "$(dirname "$ENVF")"
  cat > "$ENVF.tmp" <<EOV
# written by scripts/dev-k8s.sh up — source me (scripts/dev-env.sh does)
export GPUFLEET_TEST_KUBECONFIG=$K/admin.kubeconfig
export GPUFLEET_TEST_K8S_NODES=$NODES
export GPUFLEET_TEST_K8S_GPUS=$GPUS
export GPUFLEET_TEST_K8S_GPU_PRODUCT=$PRODUCT
export GPUFLEET_K8S_BIN=$BIN
EOV
  mv "$ENVF.tmp" "$ENVF"
}

up() {
  [ "$(id -u)" = 0 ] || die "run as root"
  build
  install_pkgs
  mkdir -p "$K"/{run,log,kubelet}
  pki
  kubeconfig
  start_control_plane
  start_kubelet
  write_env
  log "ready: kubeconfig $K/admin.kubeconfig; env in $ENVF"
}

down() {
  stop fake-kubelet python
  stop kube-scheduler kube-scheduler
  stop kube-controller-manager kube-controller-manager
  stop kube-apiserver kube-apiserver
  stop etcd etcd
  rm -f "$ENVF"
  if [ "${1:-}" = --purge ]; then rm -rf "$K"; log "purged $K (binaries kept in $BIN)"; fi
  log "down"
}

status() {
  local rc=0 n c
  for n in etcd:etcd kube-apiserver:kube-apiserver kube-controller-manager:kube-controller-manager \
           kube-scheduler:kube-scheduler fake-kubelet:python; do
    c=${n#*:}; n=${n%%:*}
    if alive "$n" "$c"; then echo "$n: running (pid $(cat "$K/run/$n.pid"))"; else echo "$n: stopped"; rc=1; fi
  done
  if [ -s "$K/pki/tokens.csv" ] && api /readyz >/dev/null; then echo "api: ready https://127.0.0.1:$API_PORT"
  else echo "api: not reachable"; rc=1; fi
  have_binaries && echo "binaries: $BIN ($("$BIN/kube-apiserver" --version))" || echo "binaries: not built"
  return $rc
}

case "${1:-up}" in
  up) up ;;
  down) shift; down "$@" ;;
  status) status ;;
  build) build ;;
  *) die "usage: $0 up|down|status|build" ;;
esac
