#!/usr/bin/env bash
# Runs examples/nightly-etl.yml end to end against a local AWS emulator on 127.0.0.1:
# builds sequencer, starts the emulator, creates the demo's cluster and task definitions, then
# runs the batch step by step (and once more from S3, as the seed's container image did).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --bin sequencer
sequencer() { cargo run --quiet --bin sequencer -- "$@"; }
. tests/emulator/start.sh
"$SEQUENCER_EMULATOR_PYTHON" tests/emulator/demo_world.py examples/nightly-etl.yml
echo "== sequencer run examples/nightly-etl.yml  (emulator at $AWS_ENDPOINT_URL)"
sequencer run examples/nightly-etl.yml --poll-interval 1
echo
echo "== SEQUENCER_YAML_S3_PATH=s3://sequencer-demo/nightly-etl.yml sequencer"
SEQUENCER_YAML_S3_PATH=s3://sequencer-demo/nightly-etl.yml sequencer --poll-interval 1
