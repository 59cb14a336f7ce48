#!/usr/bin/env bash
# Builds the container image and checks it, on a machine with a container engine (docker or
# podman: CONTAINER_ENGINE). Not part of tests/run.sh: the project's test machines have no engine
# and cannot pull base images. Checks: the image runs as uid 65532; `--version`; with
# SEQUENCER_YAML_S3_PATH and no arguments it runs that batch end to end against the emulator
# (host network, 127.0.0.1); `controller` starts and fails cleanly without a cluster (exit 3).
set -euo pipefail
cd "$(dirname "$0")/../.."
engine="${CONTAINER_ENGINE:-docker}"
tag="sequencer:smoke"
"$engine" build -t "$tag" .

uid="$("$engine" run --rm --entrypoint /usr/bin/id "$tag" -u)"
[ "$uid" = 65532 ] || { echo "the image runs as uid $uid, not 65532" >&2; exit 1; }
"$engine" run --rm "$tag" --version

. tests/emulator/start.sh
"$SEQUENCER_EMULATOR_PYTHON" tests/emulator/demo_world.py examples/nightly-etl.yml
"$engine" run --rm --network host --read-only \
  -e AWS_ENDPOINT_URL -e AWS_REGION -e AWS_ACCESS_KEY_ID -e AWS_SECRET_ACCESS_KEY -e AWS_EC2_METADATA_DISABLED \
  -e SEQUENCER_YAML_S3_PATH=s3://sequencer-demo/nightly-etl.yml -e SEQUENCER_SLEEP_BETWEEN_CHECKS=1 \
  "$tag"
echo "batch mode: ok"

status=0
"$engine" run --rm --read-only -e KUBECONFIG=/nonexistent -e AWS_REGION=us-east-1 \
  -e AWS_ACCESS_KEY_ID=x -e AWS_SECRET_ACCESS_KEY=x -e AWS_EC2_METADATA_DISABLED=true \
  "$tag" controller --log-format json || status=$?
[ "$status" = 3 ] || { echo "controller without a cluster exited $status, not 3" >&2; exit 1; }
echo "controller: starts, exits 3 without a cluster"
echo "image smoke test passed"
