#!/usr/bin/env bash
# The scale benchmark in full: N Sequences (default 1000; e.g. `benches/scale.sh 10000`) against the
# test kube-apiserver and the lean ECS endpoint, the controller built in release mode. Prints the
# figures (README's "Scale") and writes them as JSON to target/scale-N.json.
# Extra controller flags: SEQUENCER_SCALE_ARGS="--kube-qps 200 --kube-burst 400" benches/scale.sh
# Push updates (stops arrive as ECS task state change events through a queue, polled every 30 s
# as the safety net): SEQUENCER_SCALE_PUSH=1 benches/scale.sh
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-1000}"
export SEQUENCER_SCALE_N="$n"
export SEQUENCER_SCALE_REPORT="${SEQUENCER_SCALE_REPORT:-$PWD/target/scale-$n.json}"
mkdir -p "$(dirname "$SEQUENCER_SCALE_REPORT")"
tests/kube/install.sh >/dev/null
echo "machine: $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB; $(uname -sr)"
cargo test --locked --release --test scale -- --nocapture
echo "figures: $SEQUENCER_SCALE_REPORT"
