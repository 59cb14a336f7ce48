#!/usr/bin/env bash
# sequencer end to end on this machine, nothing outside 127.0.0.1:
#   1. the controller: a local kube-apiserver + etcd (the ones the tests build), the AWS emulator and
#      `sequencer controller`; the Sequence CRD and examples/sequence.yaml applied with kubectl; the
#      Sequence followed step by step until Complete, then described with its tasks and Events;
#   2. the command line: examples/nightly-etl.yml run from the file, then from S3 with
#      SEQUENCER_YAML_S3_PATH as the seed's container image did.
# Everything it starts is stopped when it ends, also on Ctrl-C. With --keep, the servers stay up
# and it prints what to export to try your own Sequences against them.
#   examples/demo.sh [--keep]
set -euo pipefail
cd "$(dirname "$0")/.."
keep=false
case "${1:-}" in
  --keep) keep=true ;;
  "") ;;
  *) echo "usage: examples/demo.sh [--keep]" >&2; exit 2 ;;
esac
say() { printf '\n== %s\n' "$*"; }
state="$(mktemp -d -t sequencer-demo.XXXXXX)"

say "building sequencer"
cargo build --quiet --bin sequencer
target="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
sequencer="$target/debug/sequencer"

# The emulator (its start script stops it when this shell exits; the trap below takes that over).
. tests/emulator/start.sh
"$SEQUENCER_EMULATOR_PYTHON" tests/emulator/demo_world.py examples/nightly-etl.yml
# The servers run in sessions of their own, so that a Ctrl-C reaches this script alone, which then
# stops them in order (the controller first, the servers it talks to last).
kube_pid="" controller_pid="" watch_pid=""
stop_all() {
  for pid in $watch_pid $controller_pid $kube_pid $SEQUENCER_EMULATOR_PID; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
}
if [ "$keep" = false ]; then
  trap 'stop_all; rm -rf "$state"' EXIT
  trap 'echo; echo "interrupted: stopping everything this demo started"; exit 130' INT TERM
else
  trap - EXIT
fi
echo "AWS emulator (ECS, S3): $AWS_ENDPOINT_URL"

say "starting kube-apiserver + etcd (the first run builds kube-apiserver and kubectl from Debian's source package: several minutes)"
kube_bin="$(tests/kube/install.sh | tail -n 1)"
kubectl="$kube_bin/kubectl"
setsid tests/kube/start.sh "$state/kube" >"$state/kube.out" 2>"$state/kube.err" &
kube_pid=$!
for _ in $(seq 900); do
  grep -q '^kube-apiserver ready ' "$state/kube.out" && break
  kill -0 "$kube_pid" 2>/dev/null || { cat "$state/kube.err" >&2; exit 1; }
  sleep 0.1
done
grep -q '^kube-apiserver ready ' "$state/kube.out" || { echo "kube-apiserver did not start:" >&2; cat "$state/kube.err" >&2; exit 1; }
export KUBECONFIG="$state/kube/kubeconfig"
echo "kube-apiserver: $("$kubectl" config view -o jsonpath='{.clusters[0].cluster.server}') (etcd: $(cat "$state/kube/etcd-endpoint"))"

say "kubectl apply -f crds/sequences.sequencer.dev.yaml"
"$kubectl" apply -f crds/sequences.sequencer.dev.yaml
"$kubectl" wait --for condition=established --timeout=60s crd/sequences.sequencer.dev >/dev/null

setsid "$sequencer" controller --http-address 127.0.0.1:0 --poll-interval 1 >"$state/controller.log" 2>&1 &
controller_pid=$!
for _ in $(seq 300); do
  address="$(sed -n 's/.*address=\([0-9.:]*\).*/\1/p' "$state/controller.log" | head -n 1)"
  [ -n "$address" ] && break
  kill -0 "$controller_pid" 2>/dev/null || { cat "$state/controller.log" >&2; exit 1; }
  sleep 0.1
done
echo "sequencer controller: /metrics, /healthz and /readyz on http://$address (log: $state/controller.log)"

say "kubectl apply -f examples/sequence.yaml"
"$kubectl" apply -f examples/sequence.yaml
say "kubectl get seq nightly-etl --watch   (until it has succeeded or failed)"
"$kubectl" get seq nightly-etl --watch &
watch_pid=$!
phase=""
for _ in $(seq 600); do
  phase="$("$kubectl" get seq nightly-etl -o jsonpath='{.status.phase}')"
  case "$phase" in Succeeded | Failed) break ;; esac
  sleep 0.5
done
sleep 1 # the watch prints the last change
kill "$watch_pid" 2>/dev/null || true
wait "$watch_pid" 2>/dev/null || true
watch_pid=""
say "kubectl describe seq nightly-etl   (managed fields left out)"
"$kubectl" describe seq nightly-etl \
  | awk '/^  Managed Fields:/ {skip = 1; next} skip && /^  [^ ]/ {skip = 0} !skip'
[ "$phase" = Succeeded ] || { echo "the Sequence ended $phase" >&2; exit 1; }

say "sequencer run examples/nightly-etl.yml"
"$sequencer" run examples/nightly-etl.yml --poll-interval 1
say "SEQUENCER_YAML_S3_PATH=s3://sequencer-demo/nightly-etl.yml sequencer"
SEQUENCER_YAML_S3_PATH=s3://sequencer-demo/nightly-etl.yml "$sequencer" --poll-interval 1

if [ "$keep" = true ]; then
  say "the servers stay up (--keep); try your own Sequences:"
  echo "  export KUBECONFIG=$KUBECONFIG"
  echo "  export AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=emulator AWS_SECRET_ACCESS_KEY=emulator"
  echo "  $kube_bin/kubectl get seq"
  echo "stop them with: kill $controller_pid $kube_pid $SEQUENCER_EMULATOR_PID"
fi
