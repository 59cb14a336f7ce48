#!/usr/bin/env bash
# The full reliability run: the real controller SIGKILLed 200 times at random instants over 20
# Sequences of 10 steps (some with count 3, some retried, some failing), against the test
# kube-apiserver and the AWS emulator, with 30 % throttling and 10 % 5xx on every ECS call, a
# 10-minute ECS outage, ListTasks lag, partial ListTasks answers and early MISSING, an etcd
# compaction and API-server restart, a concurrent writer (409s), malformed Sequences and batch
# files applied alongside, and 10 minutes of fuzzing of the input readers. Prints a table of
# figures; fails on any duplicate launch, lost step, wrong final state, stuck Sequence, accepted
# malformed input or panic. About 25 minutes. The test command (tests/run.sh) runs its quick mode.
#
#   tests/reliability.sh [--outage-seconds N] [--kills N] [--fuzz-seconds N] [--seed N]
set -euo pipefail
cd "$(dirname "$0")/.."
while [ $# -gt 0 ]; do
  case "$1" in
    --outage-seconds) export SEQUENCER_RELIABILITY_OUTAGE_SECONDS="$2"; shift 2 ;;
    --kills) export SEQUENCER_RELIABILITY_KILLS="$2"; shift 2 ;;
    --fuzz-seconds) export SEQUENCER_RELIABILITY_FUZZ_SECONDS="$2"; shift 2 ;;
    --seed) export SEQUENCER_RELIABILITY_SEED="$2"; shift 2 ;;
    *) echo "unknown option $1; see the comment at the top of $0" >&2; exit 2 ;;
  esac
done
export SEQUENCER_RELIABILITY=full
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sequencer/target}"
SEQUENCER_EMULATOR_PYTHON="$(tests/emulator/install.sh | tail -n 1)"
export SEQUENCER_EMULATOR_PYTHON
tests/kube/install.sh >/dev/null
cargo test --locked --test reliability -- --nocapture
