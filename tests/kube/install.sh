#!/usr/bin/env bash
# Builds a real kube-apiserver and kubectl (v1.20.2) for the tests and the demo, offline, from
# Debian's `kubernetes` source package with Debian's Go 1.19, and installs Debian's etcd. The
# binaries are cached outside the work tree; later runs return at once. Prints the directory
# holding `kube-apiserver` and `kubectl` on its last line.
#
# The source comes from the Debian mirrors this machine's apt already uses (their `deb` entries are
# reused as `deb-src` in a private apt configuration; the system's is not touched).
# Two gaps of that tree are closed as upstream's build would: the vendored reflect2 v1.0.1 (broken on
# Go >= 1.18) is replaced by Debian's 1.0.2, and pkg/generated/openapi is generated with the
# vendored openapi-gen over every package tagged `+k8s:openapi-gen=`.
set -euo pipefail
VERSION=1.20.2
cache="${SEQUENCER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sequencer}"
out="$cache/kube-apiserver-v$VERSION"
built() { [ -x "$out/kube-apiserver" ] && [ -x "$out/kubectl" ]; }
if built && command -v etcd >/dev/null; then
  echo "$out"
  exit 0
fi

need=()
[ -x /usr/lib/go-1.19/bin/go ] || need+=(golang-1.19-go)
command -v etcd >/dev/null || need+=(etcd-server)
[ -d /usr/share/gocode/src/github.com/modern-go/reflect2 ] || need+=(golang-github-modern-go-reflect2-dev)
command -v openssl >/dev/null || need+=(openssl)
command -v curl >/dev/null || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]} ..." >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2
fi
built && { echo "$out"; exit 0; }

work="$(mktemp -d -t sequencer-kube-build.XXXXXX)"
trap 'rm -rf "$work"' EXIT
apt_dir="$work/apt"
mkdir -p "$apt_dir/sources.list.d" "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
# deb822 sources: the same entries, for source packages.
for f in /etc/apt/sources.list.d/*.sources; do
  [ -e "$f" ] || continue
  sed 's/^Types:.*\bdeb\b.*$/Types: deb-src/' "$f" >"$apt_dir/sources.list.d/$(basename "$f")"
done
# one-line sources, if any.
if [ -f /etc/apt/sources.list ]; then
  grep -E '^deb ' /etc/apt/sources.list | sed 's/^deb /deb-src /' >"$apt_dir/sources.list.d/system.list" || true
fi
apt_opts=(-o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$apt_dir/sources.list.d"
          -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache")
echo "fetching Debian's kubernetes source package ..." >&2
apt-get "${apt_opts[@]}" update -qq >&2
(cd "$work" && apt-get "${apt_opts[@]}" source --download-only kubernetes >&2 2>/dev/null)
tarball="$(ls "$work"/kubernetes_*really${VERSION}.orig.tar.gz)"

gopath="$work/gopath"
src="$gopath/src/k8s.io/kubernetes"
mkdir -p "$gopath/src/k8s.io"
tar xzf "$tarball" -C "$work"
mv "$work/kubernetes-$VERSION" "$src"
rm -rf "$src/vendor/github.com/modern-go/reflect2"
cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 "$src/vendor/github.com/modern-go/reflect2"
rm -f "$src/vendor/github.com/modern-go/reflect2/go.mod"

export PATH="/usr/lib/go-1.19/bin:$PATH" GOPATH="$gopath" GO111MODULE=off GOPROXY=off CGO_ENABLED=0 \
       GOCACHE="$cache/go-build-cache" GOFLAGS=
cd "$src"
ld="-s -w"
for p in component-base/version client-go/pkg/version; do
  ld="$ld -X k8s.io/kubernetes/vendor/k8s.io/$p.gitVersion=v$VERSION -X k8s.io/kubernetes/vendor/k8s.io/$p.gitMajor=1 -X k8s.io/kubernetes/vendor/k8s.io/$p.gitMinor=20"
done
mkdir -p "$out"
if [ ! -x "$out/kubectl" ]; then
  echo "building kubectl v$VERSION (a few minutes) ..." >&2
  go build -ldflags "$ld" -o "$work/kubectl" ./cmd/kubectl
  mv "$work/kubectl" "$out/kubectl"
fi
[ -x "$out/kube-apiserver" ] && { echo "$out"; exit 0; }

echo "generating pkg/generated/openapi ..." >&2
go build -o "$work/openapi-gen" ./vendor/k8s.io/kube-openapi/cmd/openapi-gen
dirs=$(find -L pkg cmd plugin vendor/k8s.io -name '*.go' -not -path '*/testdata/*' 2>/dev/null \
         | xargs grep -l '^// *+k8s:openapi-gen=' 2>/dev/null | xargs -n1 dirname \
         | grep -v -E '^vendor/k8s.io/(code-generator|sample-apiserver)/' | LC_ALL=C sort -u \
         | sed 's|^|k8s.io/kubernetes/|' | paste -sd, -)
"$work/openapi-gen" --logtostderr -i "$dirs" -p k8s.io/kubernetes/pkg/generated/openapi -O zz_generated.openapi \
  -h vendor/k8s.io/code-generator/hack/boilerplate.go.txt -r "$work/openapi-violations.report" >&2

echo "building kube-apiserver v$VERSION (a few minutes) ..." >&2
go build -tags providerless -ldflags "$ld" -o "$work/kube-apiserver" ./cmd/kube-apiserver
mv "$work/kube-apiserver" "$out/kube-apiserver"
echo "$out"
