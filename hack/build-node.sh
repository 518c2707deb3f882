#!/usr/bin/env bash
# Builds what a real single-node cluster needs beyond the envtest control plane, from the
# Go module proxy: kubelet, kube-controller-manager, kube-scheduler and kube-proxy (the same
# Kubernetes version as kube-apiserver), containerd v2 with its runc shim and ctr, and runc.
# No registry or release download can be reached from where this project is built, so
# nothing comes from anywhere else; the few host tools the node uses (CNI plugins, iptables,
# the seccomp library runc links against) come from Debian packages, installed when missing.
# Idempotent: present binaries are kept, and a copy keyed by version lives in the user's
# cache directory so that a fresh clone reuses it instead of rebuilding.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-1.37.2}"
CONTAINERD_VERSION="${CONTAINERD_VERSION:-2.4.2}"
RUNC_VERSION="${RUNC_VERSION:-1.3.3}"
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/bin/node/k8s-${K8S_VERSION}-containerd-${CONTAINERD_VERSION}-runc-${RUNC_VERSION}}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/jobtoken/node/k8s-${K8S_VERSION}-containerd-${CONTAINERD_VERSION}-runc-${RUNC_VERSION}-linux-amd64"
bins=(kubelet kube-controller-manager kube-scheduler kube-proxy containerd containerd-shim-runc-v2 ctr runc)

# Debian packages: CNI plugins (bridge, host-local, loopback, portmap), iptables and
# conntrack for kube-proxy, libseccomp-dev and pkg-config to build runc with seccomp.
debs=(containernetworking-plugins iptables conntrack libseccomp-dev pkg-config)
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "node: installing Debian packages: ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "node: root is needed to install them (apt-get install ${missing[*]})" >&2
    exit 1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null ||
    { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null; }
fi

mkdir -p "$out"
have_all() {
  for b in "${bins[@]}"; do [ -x "$1/$b" ] || return 1; done
}
if have_all "$out"; then
  exit 0
fi
if have_all "$cache"; then
  echo "node: reusing binaries from $cache"
  for b in "${bins[@]}"; do cp -p "$cache/$b" "$out/"; done
  exit 0
fi

ver_pkg=k8s.io/component-base/version
minor="${K8S_VERSION#*.}"; minor="${minor%%.*}"
ldflags="-s -w -X ${ver_pkg}.gitVersion=v${K8S_VERSION} -X ${ver_pkg}.gitMajor=${K8S_VERSION%%.*}"
ldflags="$ldflags -X ${ver_pkg}.gitMinor=${minor} -X ${ver_pkg}.gitTreeState=clean"
ldflags="$ldflags -X ${ver_pkg}/base.gitVersion=v${K8S_VERSION} -X ${ver_pkg}/base.gitMajor=${K8S_VERSION%%.*} -X ${ver_pkg}/base.gitMinor=${minor}"

# Heavy builds share the machine with timing-sensitive tests: lowest priority.
nice_go() { nice -n 19 go "$@"; }

echo "node: building kubelet, kube-controller-manager, kube-scheduler, kube-proxy v${K8S_VERSION} (several minutes on a cold cache)"
(cd "$root/hack/node/k8s" && CGO_ENABLED=0 GOFLAGS=-mod=mod nice_go build -trimpath -ldflags "$ldflags" -o "$out/" \
  k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kube-proxy)

echo "node: building containerd v${CONTAINERD_VERSION}, its runc shim and ctr"
cver=github.com/containerd/containerd/v2/version
(cd "$root/hack/node/containerd" && CGO_ENABLED=0 GOFLAGS=-mod=mod nice_go build -trimpath -tags no_btrfs \
  -ldflags "-s -w -X ${cver}.Version=v${CONTAINERD_VERSION} -X ${cver}.Package=github.com/containerd/containerd/v2" -o "$out/" \
  github.com/containerd/containerd/v2/cmd/containerd github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 \
  github.com/containerd/containerd/v2/cmd/ctr)

echo "node: building runc v${RUNC_VERSION} (cgo, seccomp)"
(cd "$root/hack/node/runc" && CGO_ENABLED=1 GOFLAGS=-mod=mod nice_go build -trimpath -tags seccomp \
  -ldflags "-s -w -X main.version=${RUNC_VERSION}" -o "$out/runc" github.com/opencontainers/runc)

mkdir -p "$cache"
for b in "${bins[@]}"; do cp -p "$out/$b" "$cache/"; done
"$out/kubelet" --version
"$out/containerd" --version
