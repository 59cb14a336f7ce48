#!/usr/bin/env bash
# Installs the Helm library for the chart tests: helm-python-sdk (Helm 4 as a library, no helm
# binary), pinned, in a venv outside the work tree. Prints the venv's python on its last line.
set -euo pipefail
VERSION=0.2.2
cache="${SEQUENCER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sequencer}"
venv="$cache/helm-venv-$VERSION"
if ! "$venv/bin/python" -c 'import helm_python' >/dev/null 2>&1; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "helm-python-sdk==$VERSION" >&2
fi
echo "$venv/bin/python"
