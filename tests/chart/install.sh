#!/usr/bin/env bash
# Installs the Helm library for the chart tests: helm-python-sdk (Helm 4 as a library, no helm
# binary) and cel-python, pinned, in a venv outside the work tree. Prints the venv's python on its last line.
set -euo pipefail
VERSION=0.2.2
cache="${SEQUENCER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sequencer}"
venv="$cache/helm-venv-$VERSION"
CEL_VERSION=0.5.0   # cel-python: evaluates the chart's ValidatingAdmissionPolicy (tests/chart/vap.py)
if ! "$venv/bin/python" -c 'import helm_python' >/dev/null 2>&1; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "helm-python-sdk==$VERSION" >&2
fi
if [ "$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("cel-python"))' 2>/dev/null)" != "$CEL_VERSION" ]; then
  "$venv/bin/pip" install --quiet --disable-pip-version-check "cel-python==$CEL_VERSION" >&2
fi
echo "$venv/bin/python"
