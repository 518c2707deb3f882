#!/usr/bin/env bash
# Builds the envtest control plane (kube-apiserver, kubectl, etcd) from the Go module
# proxy, because setup-envtest downloads prebuilt binaries from hosts this project cannot
# reach. Idempotent: present binaries are kept, and a copy keyed by version lives in the
# user's cache directory so that a fresh clone reuses it instead of rebuilding.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-3.6.16}"
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/bin/k8s/${K8S_VERSION}-linux-amd64}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/jobtoken/envtest/k8s-${K8S_VERSION}-etcd-${ETCD_VERSION}-linux-amd64"

mkdir -p "$out"

have_all() {
  [ -x "$1/kube-apiserver" ] && [ -x "$1/kubectl" ] && [ -x "$1/etcd" ]
}

if have_all "$out"; then
  exit 0
fi
if have_all "$cache"; then
  echo "envtest: reusing binaries from $cache"
  cp -p "$cache/kube-apiserver" "$cache/kubectl" "$cache/etcd" "$out/"
  exit 0
fi

export CGO_ENABLED=0 GOFLAGS=-mod=mod
ver_pkg=k8s.io/component-base/version
ldflags="-s -w -X ${ver_pkg}.gitVersion=v${K8S_VERSION} -X ${ver_pkg}.gitMajor=${K8S_VERSION%%.*}"
minor="${K8S_VERSION#*.}"; minor="${minor%%.*}"
ldflags="$ldflags -X ${ver_pkg}.gitMinor=${minor} -X ${ver_pkg}.gitTreeState=clean"
ldflags="$ldflags -X ${ver_pkg}/base.gitVersion=v${K8S_VERSION} -X ${ver_pkg}/base.gitMajor=${K8S_VERSION%%.*} -X ${ver_pkg}/base.gitMinor=${minor}"

echo "envtest: building kube-apiserver and kubectl v${K8S_VERSION} from the Go module proxy (several minutes on a cold cache)"
(cd "$root/hack/envtest/k8s" && go build -trimpath -ldflags "$ldflags" -o "$out/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver)
(cd "$root/hack/envtest/k8s" && go build -trimpath -ldflags "$ldflags" -o "$out/kubectl" k8s.io/kubernetes/cmd/kubectl)
echo "envtest: building etcd v${ETCD_VERSION}"
(cd "$root/hack/envtest/etcd" && go build -trimpath -ldflags "-s -w" -o "$out/etcd" go.etcd.io/etcd/server/v3)

mkdir -p "$cache"
cp -p "$out/kube-apiserver" "$out/kubectl" "$out/etcd" "$cache/"
"$out/kube-apiserver" --version
