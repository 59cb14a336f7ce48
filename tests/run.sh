#!/usr/bin/env bash
# Every test: formatting, lints, the demo (README's first command), unit and property tests, the
# integration tests that run the `sequencer` binary against a local AWS emulator on 127.0.0.1, the
# CRD and controller tests against a real kube-apiserver + etcd on 127.0.0.1 (both installed on
# first use into ~/.cache/sequencer; each test starts its own servers on free ports), and the
# container image built from the Dockerfile and run (podman or docker; cached there too).
set -euo pipefail
cd "$(dirname "$0")/.."
SEQUENCER_EMULATOR_PYTHON="$(tests/emulator/install.sh | tail -n 1)"
export SEQUENCER_EMULATOR_PYTHON
# A real kube-apiserver + etcd for the CRD tests, built once from Debian's source (cached).
tests/kube/install.sh >/dev/null
# The Helm library (helm-python-sdk, pinned) for the chart tests.
SEQUENCER_HELM_PYTHON="$(tests/chart/install.sh | tail -n 1)"
export SEQUENCER_HELM_PYTHON
# Lua 5.1, which Argo CD runs health checks with.
tests/argocd/install.sh >/dev/null
# The container image, from the unchanged Dockerfile (the first build takes about 15 minutes).
SEQUENCER_TEST_IMAGE="$(tests/image/build.sh | tail -n 1)"
export SEQUENCER_TEST_IMAGE
cargo fmt --all --check
cargo clippy --locked --workspace --all-targets -- -D warnings

demo_log="$(mktemp -t sequencer-demo.XXXXXX.log)"
if ! ./examples/demo.sh >"$demo_log" 2>&1 || [ "$(grep -c ' SUCCEEDED in ' "$demo_log")" != 2 ] \
   || ! grep -q -E '^nightly-etl +Succeeded +3/3' "$demo_log"; then
  echo "examples/demo.sh failed:" >&2; cat "$demo_log" >&2; exit 1
fi
echo "examples/demo.sh: the Sequence completed and both command-line runs succeeded"

test_log="$(mktemp -t sequencer-tests.XXXXXX.log)"
status=0
if cargo nextest --version >/dev/null 2>&1; then
  # Most tests spend their time waiting on servers of their own (kube-apiserver, etcd, the
  # emulator, a controller), so test binaries and tests run side by side, each test in a process
  # of its own: the suite's wall time is about its longest tests', not their sum.
  cargo nextest run --locked --workspace --no-fail-fast \
    --test-threads "${SEQUENCER_TEST_THREADS:-4}" 2>&1 | tee "$test_log" || status=$?
  summary=$(grep -E '^ *Summary \[' "$test_log" | tail -n 1)
  passed=$(sed -n -E 's/.* ([0-9]+) passed.*/\1/p' <<<"$summary")
  failed=$(sed -n -E 's/.* ([0-9]+) failed.*/\1/p' <<<"$summary")
else
  cargo test --locked --workspace 2>&1 | tee "$test_log" || status=$?
  totals=$(awk '/^test result: /{for(i=1;i<=NF;i++){if($(i+1) ~ /^passed/)p+=$i; if($(i+1) ~ /^failed/)f+=$i}} END{print p+0, f+0}' "$test_log")
  passed=${totals% *}
  failed=${totals#* }
fi
echo "tests: ${passed:-0} passed, ${failed:-0} failed"
exit "$status"
