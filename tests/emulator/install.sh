#!/usr/bin/env bash
# Installs the local AWS emulator (moto, pinned: the extension reads moto's internals) into a venv
# kept outside the work tree, so every clone and CI run on this machine reuses it.
# Prints the venv's python path on its last line.
set -euo pipefail
MOTO_VERSION=5.2.5
cache="${SEQUENCER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sequencer}"
venv="$cache/moto-venv-$MOTO_VERSION"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import moto, flask; assert moto.__version__ == '$MOTO_VERSION'" 2>/dev/null; then
  echo "installing moto $MOTO_VERSION into $venv ..." >&2
  rm -rf "$venv"
  mkdir -p "$cache"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION" >&2
fi
echo "$venv/bin/python"
