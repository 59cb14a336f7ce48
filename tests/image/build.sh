#!/usr/bin/env bash
# Builds the container image from the repository's Dockerfile, unchanged, with the engine
# tests/image/engine.sh picks, and prints the image's name on its last line. The engine caches the
# layers (podman: under ~/.cache/sequencer/containers), so a rebuild after a change of the sources
# compiles only this project's crates.
#
# The base images the Dockerfile names are pulled. Where no registry can be reached (the project's
# test machines), they are made here from Debian's packages and stored under the same names, so the
# Dockerfile stays exactly what a user builds against the public images:
#   debian:<release>-slim   debootstrap --variant=minbase of that release, from the Debian mirror
#                           this machine's apt uses;
#   rust:<version>-<release> that image plus gcc, libc6-dev, make, pkg-config and ca-certificates
#                           (with the extra CA certificates this machine trusts, so that crates.io
#                           answers through the same HTTPS as on the host), and this machine's own
#                           Rust toolchain, which must be <version>.
# Progress goes to standard error. SEQUENCER_IMAGE names the image (default sequencer:test).
set -euo pipefail
cd "$(dirname "$0")/../.."
engine=tests/image/engine.sh
image="${SEQUENCER_IMAGE:-sequencer:test}"
cache="${SEQUENCER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sequencer}"

say() { echo "image: $*" >&2; }
have() { "$engine" image inspect "$1" >/dev/null 2>&1; }

# The first Debian mirror in this machine's apt sources (deb822 or one-line form).
debian_mirror() {
  {
    cat /etc/apt/sources.list.d/*.sources 2>/dev/null | sed -n -E 's/^URIs: *//p' | tr ' ' '\n'
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
      | sed -n -E 's/^deb +(\[[^]]*\] +)?([^ ]+).*/\2/p'
  } | grep -E '/debian/?$' | head -n 1 || true
}

make_debian_base() { # name release
  local name="$1" release="$2" mirror rootfs
  mirror="$(debian_mirror)"
  [ -n "$mirror" ] || { say "no Debian mirror in /etc/apt to make $name from"; exit 1; }
  if ! command -v debootstrap >/dev/null; then
    say "installing debootstrap ..."
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >&2
  fi
  rm -rf "$cache"/.debootstrap.* # left by an interrupted run
  rootfs="$(mktemp -d "$cache/.debootstrap.XXXXXX")"
  say "making $name: debootstrap --variant=minbase $release from $mirror (about a minute) ..."
  debootstrap --variant=minbase "$release" "$rootfs" "$mirror" >"$rootfs.log" 2>&1 \
    || { cat "$rootfs.log" >&2; rm -f "$rootfs.log"; exit 1; }
  rm -f "$rootfs.log"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | "$engine" import --change 'CMD ["bash"]' - "$name" >/dev/null
  rm -rf "$rootfs"
}

make_rust_base() { # name version release
  local name="$1" version="$2" release="$3" sysroot have_version container
  sysroot="$(rustc --print sysroot)"
  have_version="$(rustc --version | awk '{print $2}')"
  case "$have_version" in
    "$version" | "$version".*) ;;
    *) say "cannot make $name: this machine's Rust is $have_version, the Dockerfile wants $version"; exit 1 ;;
  esac
  local debian="debian:$release-slim"
  have "$debian" || make_debian_base "$debian" "$release"
  say "making $name: $debian + gcc, libc6-dev, make, pkg-config + this machine's Rust $have_version ..."
  container="sequencer-rust-base-$$"
  "$engine" rm -f "$container" >/dev/null 2>&1 || true
  "$engine" run --name "$container" --network host \
    -v "$sysroot:/mnt/toolchain:ro" -v /usr/local/share/ca-certificates:/mnt/local-ca:ro \
    "$debian" sh -ec '
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        gcc libc6-dev make pkg-config ca-certificates >/dev/null
      rm -rf /var/lib/apt/lists/*
      find /mnt/local-ca -name "*.crt" -exec cp {} /usr/local/share/ca-certificates/ \;
      update-ca-certificates >/dev/null 2>&1
      mkdir -p /usr/local/rust /usr/local/cargo
      for d in bin lib libexec etc; do [ -d /mnt/toolchain/$d ] && cp -a /mnt/toolchain/$d /usr/local/rust/; done
      /usr/local/rust/bin/cargo --version' >&2
  # The environment of the public rust images: cargo and rustc on PATH, CARGO_HOME for the registry.
  "$engine" commit \
    --change 'ENV CARGO_HOME=/usr/local/cargo' \
    --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    "$container" "$name" >/dev/null
  "$engine" rm -f "$container" >/dev/null
}

ensure_base() { # name
  local name="$1"
  have "$name" && return 0
  say "pulling $name ..."
  "$engine" pull "$name" >/dev/null 2>&1 && return 0
  say "$name cannot be pulled here; making it from Debian's packages"
  case "$name" in
    debian:*-slim) make_debian_base "$name" "$(sed -E 's/^debian:(.*)-slim$/\1/' <<<"$name")" ;;
    rust:*-*) make_rust_base "$name" "$(sed -E 's/^rust:([^-]+)-.*$/\1/' <<<"$name")" \
                "$(sed -E 's/^rust:[^-]+-(.*)$/\1/' <<<"$name")" ;;
    *) say "no recipe for making $name locally"; exit 1 ;;
  esac
}

mkdir -p "$cache"
say "engine: $("$engine" --which)"
if [ "$("$engine" --which)" = podman ]; then
  # Working containers an interrupted build left behind (they hold their layers); this script
  # is the only builder of this private store.
  leftovers=$("$engine" ps --all --external --format '{{.ID}} {{.Command}}' | awk '$2 == "buildah" {print $1}')
  [ -z "$leftovers" ] || "$engine" rm --force $leftovers >/dev/null
fi
# FROM lines, minus references to the Dockerfile's own stages.
stages=$(awk 'toupper($1) == "FROM" && toupper($3) == "AS" {print $4}' Dockerfile)
for base in $(awk 'toupper($1) == "FROM" {print $2}' Dockerfile); do
  grep -qx -F "$base" <<<"$stages" || ensure_base "$base"
done
say "building $image from the Dockerfile (the first build compiles every dependency: about 15 minutes) ..."
started=$(date +%s)
# The build stage is tagged too, so that its layers (the compiled dependencies above all) are an
# image's ancestors: the prune below then keeps them as the cache of the next build and removes
# only what earlier builds left behind (about 300 MB per change of the sources).
"$engine" build --target build --tag "$image-build-stage" . >&2
"$engine" build --tag "$image" . >&2
"$engine" image prune --force >/dev/null
say "built $image in $(( $(date +%s) - started )) s"
echo "$image"
