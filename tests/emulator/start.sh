#!/usr/bin/env bash
# Starts the emulator on a free 127.0.0.1 port in the background. Source it:
#   . tests/emulator/start.sh
# It exports AWS_ENDPOINT_URL, dummy credentials and a region, SEQUENCER_EMULATOR_PID and
# SEQUENCER_EMULATOR_PYTHON, and stops the emulator when the calling shell exits.
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SEQUENCER_EMULATOR_PYTHON="$("$here/install.sh" | tail -n 1)"
export SEQUENCER_EMULATOR_PYTHON
log="$(mktemp -t sequencer-emulator.XXXXXX.log)"
# In a session of its own: a Ctrl-C reaches the caller, whose exit stops the emulator in order
# (it would otherwise die at once, under a caller still talking to it).
setsid "$SEQUENCER_EMULATOR_PYTHON" "$here/sequencer_emulator.py" --host 127.0.0.1 --port 0 >"$log" 2>&1 &
SEQUENCER_EMULATOR_PID=$!
export SEQUENCER_EMULATOR_PID
trap 'kill "$SEQUENCER_EMULATOR_PID" 2>/dev/null; wait "$SEQUENCER_EMULATOR_PID" 2>/dev/null || true' EXIT
for _ in $(seq 300); do
  url="$(sed -n 's/^sequencer-emulator listening on \(http:[^ ]*\)$/\1/p' "$log")"
  [ -n "$url" ] && break
  if ! kill -0 "$SEQUENCER_EMULATOR_PID" 2>/dev/null; then
    echo "the emulator did not start:" >&2; cat "$log" >&2; exit 1
  fi
  sleep 0.1
done
if [ -z "$url" ]; then echo "the emulator did not answer in 30 s:" >&2; cat "$log" >&2; exit 1; fi
export AWS_ENDPOINT_URL="$url" AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 AWS_ACCESS_KEY_ID=emulator AWS_SECRET_ACCESS_KEY=emulator \
       AWS_EC2_METADATA_DISABLED=true
unset AWS_PROFILE AWS_SESSION_TOKEN
