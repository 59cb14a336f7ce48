#!/usr/bin/env bash
# Every test: formatting, lints, unit and property tests, and the integration tests that run the
# `sequencer` binary against a local AWS emulator on 127.0.0.1 (installed on first use into
# ~/.cache/sequencer; each test starts its own emulator process on a free port).
set -euo pipefail
cd "$(dirname "$0")/.."
SEQUENCER_EMULATOR_PYTHON="$(tests/emulator/install.sh | tail -n 1)"
export SEQUENCER_EMULATOR_PYTHON
cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked
