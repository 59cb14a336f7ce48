#!/usr/bin/env bash
# Runs the container engine the image tests use, with its arguments: `tests/image/engine.sh run ...`.
#
# The engine is CONTAINER_ENGINE if set, else docker where a Docker engine answers, else podman
# (installed from Debian's packages on first use, as root). podman runs with a private
# configuration and image store under ~/.cache/sequencer/containers, so nothing global changes:
#   - runtime runc: crun refuses hosts with hybrid cgroups ("cgroups in hybrid mode not supported");
#   - cgroupfs instead of systemd, which these machines do not run;
#   - container ulimits at most the host's hard limits: podman's defaults raise them past those
#     and runc then fails with "error setting rlimit".
# `tests/image/engine.sh --which` prints the engine's name and exits.
set -euo pipefail

cache="${SEQUENCER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sequencer}"

pick_engine() {
  if [ -n "${CONTAINER_ENGINE:-}" ]; then
    echo "$CONTAINER_ENGINE"
  elif command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    echo docker
  else
    echo podman
  fi
}

install_podman() {
  local need=()
  for tool in podman runc conmon slirp4netns fuse-overlayfs newuidmap; do
    command -v "$tool" >/dev/null || need+=("$tool")
  done
  [ -x /usr/lib/podman/netavark ] || need+=(netavark)
  [ ${#need[@]} -eq 0 ] && return 0
  if [ "$(id -u)" != 0 ]; then
    echo "podman is missing (${need[*]}); install podman, runc and netavark, or set CONTAINER_ENGINE" >&2
    exit 1
  fi
  echo "installing podman and runc from Debian's packages ..." >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc conmon netavark aardvark-dns \
    containernetworking-plugins slirp4netns uidmap fuse-overlayfs >&2
}

configure_podman() {
  local dir="$cache/containers"
  # Runtime state (locks, mounts, the marker podman uses to notice a reboot) must not outlive a
  # reboot, and /run and /tmp need not be tmpfs: one directory per boot.
  local boot
  boot="$(cut -c1-8 /proc/sys/kernel/random/boot_id 2>/dev/null || echo boot)"
  local run="${XDG_RUNTIME_DIR:-/tmp}/sequencer-podman-$(id -u)-$boot"
  mkdir -p "$dir" "$run"
  local nofile
  nofile="$(ulimit -Hn)"
  [ "$nofile" = unlimited ] && nofile=1048576
  local conf store
  conf="$(mktemp "$dir/.containers.conf.XXXXXX")"
  store="$(mktemp "$dir/.storage.conf.XXXXXX")"
  cat >"$conf" <<CONF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=4096:4096"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "$run/tmp"
CONF
  cat >"$store" <<CONF
[storage]
driver = "overlay"
graphroot = "$dir/storage"
runroot = "$run/storage"
CONF
  # Each caller writes its own copy and renames it into place, so that concurrent callers never
  # read a half-written file.
  mv -f "$conf" "$dir/containers.conf"
  mv -f "$store" "$dir/storage.conf"
  export CONTAINERS_CONF="$dir/containers.conf" CONTAINERS_STORAGE_CONF="$dir/storage.conf"
}

engine="$(pick_engine)"
if [ "${1:-}" = --which ]; then
  echo "$engine"
  exit 0
fi
if [ "$engine" = podman ]; then
  install_podman
  configure_podman
fi
exec "$engine" "$@"
