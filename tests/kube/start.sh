#!/usr/bin/env bash
# Starts etcd and kube-apiserver on free 127.0.0.1 ports with fresh certificates in DIR, writes
# DIR/kubeconfig (admin token) once /readyz answers, prints "kube-apiserver ready DIR/kubeconfig",
# and stays in the foreground until SIGTERM or SIGINT, then stops both. SIGUSR1 restarts
# kube-apiserver alone (same port, same etcd: an API-server restart as clusters see in upgrades);
# DIR/etcd-endpoint names etcd's client URL (for compaction in the reliability run).
#   tests/kube/start.sh DIR
set -euo pipefail
dir="${1:?usage: start.sh DIR}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bin="$("$here/install.sh" | tail -n 1)"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }
etcd_client=$(free_port); etcd_peer=$(free_port); etcd_metrics=$(free_port); api=$(free_port)

cd "$dir"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=sequencer-test-ca" -keyout ca.key -out ca.crt 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" -keyout server.key -out server.csr 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >san.ext
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile san.ext -out server.crt 2>/dev/null
openssl genrsa -out sa.key 2048 2>/dev/null
openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
token="$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"
printf '%s,admin,1000,system:masters\n' "$token" >tokens.csv

pids=()
sleeper=""
stop() {
  trap - TERM INT EXIT
  for p in "${pids[@]}" $sleeper; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  exit 0
}
trap stop TERM INT EXIT

etcd --name test --data-dir "$dir/etcd" \
  --listen-client-urls "http://127.0.0.1:$etcd_client" --advertise-client-urls "http://127.0.0.1:$etcd_client" \
  --listen-peer-urls "http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
  --initial-cluster "test=http://127.0.0.1:$etcd_peer" --listen-metrics-urls "http://127.0.0.1:$etcd_metrics" \
  >"$dir/etcd.log" 2>&1 &
pids+=($!)
start_apiserver() {
  "$bin/kube-apiserver" --etcd-servers "http://127.0.0.1:$etcd_client" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api" \
    --tls-cert-file server.crt --tls-private-key-file server.key --client-ca-file ca.crt \
    --token-auth-file tokens.csv --authorization-mode RBAC \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file sa.pub --service-account-signing-key-file sa.key \
    --service-cluster-ip-range 10.0.0.0/24 --disable-admission-plugins ServiceAccount \
    >>"$dir/kube-apiserver.log" 2>&1 &
  pids[1]=$!
}
restart_apiserver() {
  kill "${pids[1]}" 2>/dev/null || true
  wait "${pids[1]}" 2>/dev/null || true
  start_apiserver
  echo "kube-apiserver restarted" >>"$dir/restarts.log"
}
start_apiserver
trap restart_apiserver USR1
printf 'http://127.0.0.1:%s\n' "$etcd_client" >"$dir/etcd-endpoint"

cat >kubeconfig <<KC
apiVersion: v1
kind: Config
clusters:
- name: test
  cluster: {server: "https://127.0.0.1:$api", certificate-authority: "$dir/ca.crt"}
users:
- name: admin
  user: {token: "$token"}
contexts:
- name: test
  context: {cluster: test, user: admin, namespace: default}
current-context: test
KC
for _ in $(seq 600); do
  if curl -sf --cacert ca.crt -H "Authorization: Bearer $token" "https://127.0.0.1:$api/readyz" >/dev/null 2>&1; then
    echo "kube-apiserver ready $dir/kubeconfig"
    # The sleep gets no stdio of ours: a sleep outliving this script (a trap interrupts the wait)
    # must not hold the caller's output pipe open. A SIGUSR1 interrupts the wait: end that sleep.
    while :; do
      sleep 3600 </dev/null >/dev/null 2>&1 & sleeper=$!
      wait "$sleeper" || true
      kill "$sleeper" 2>/dev/null || true
    done
  fi
  for p in "${pids[@]}"; do
    kill -0 "$p" 2>/dev/null || { echo "etcd or kube-apiserver exited; logs in $dir" >&2; tail -n 20 "$dir/kube-apiserver.log" "$dir/etcd.log" >&2; exit 1; }
  done
  sleep 0.1
done
echo "kube-apiserver was not ready after 60 s; logs in $dir" >&2
exit 1
