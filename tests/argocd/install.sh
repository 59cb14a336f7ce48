#!/usr/bin/env bash
# Installs Debian's Lua 5.1 (the Lua Argo CD runs health checks with) for the Argo CD tests.
set -euo pipefail
if ! command -v lua5.1 >/dev/null; then
  echo "installing lua5.1 ..." >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq lua5.1 >&2
fi
command -v lua5.1
