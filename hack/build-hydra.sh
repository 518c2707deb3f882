#!/usr/bin/env bash
# Builds Ory Hydra from the Go module proxy for the issuer interop tests
# (internal/issuer/hydra_test.go), because prebuilt releases come from hosts this project
# cannot reach. The pinned version and Hydra's replace directives live in the tools module
# hack/hydra. Idempotent: a present binary is kept, and a copy keyed by version lives in
# the user's cache directory so that a fresh clone reuses it instead of rebuilding.
set -euo pipefail

HYDRA_VERSION="${HYDRA_VERSION:-v2.3.0}"
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/bin/hydra/${HYDRA_VERSION}}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/jobtoken/hydra/${HYDRA_VERSION}"

if [ -x "$out/hydra" ]; then
  exit 0
fi
mkdir -p "$out"
if [ -x "$cache/hydra" ]; then
  echo "hydra: reusing binary from $cache"
  cp -p "$cache/hydra" "$out/hydra"
  exit 0
fi

want="$(cd "$root/hack/hydra" && go list -m -f '{{.Version}}' github.com/ory/hydra/v2)"
if [ "$want" != "$HYDRA_VERSION" ]; then
  echo "hydra: hack/hydra/go.mod pins $want, not $HYDRA_VERSION" >&2
  exit 1
fi

# Hydra needs cgo for its SQLite driver (the tests run it with DSN=memory); the tags are
# the ones Hydra's own Makefile uses.
export CGO_ENABLED=1 GOFLAGS=-mod=mod
cfg=github.com/ory/hydra/v2/driver/config
ldflags="-s -w -X ${cfg}.Version=${HYDRA_VERSION} -X ${cfg}.Commit=go-module-proxy -X ${cfg}.Date=undefined"
echo "hydra: building Ory Hydra ${HYDRA_VERSION} from the Go module proxy (10+ minutes on a cold cache)"
start=$(date +%s)
tmp="$out/hydra.tmp.$$"
trap 'rm -f "$tmp"' EXIT
(cd "$root/hack/hydra" && go build -trimpath -tags sqlite,sqlite_omit_load_extension -ldflags "$ldflags" -o "$tmp" github.com/ory/hydra/v2)
mv "$tmp" "$out/hydra"
echo "hydra: built in $(( $(date +%s) - start ))s"

mkdir -p "$cache"
cp -p "$out/hydra" "$cache/hydra.tmp.$$" && mv "$cache/hydra.tmp.$$" "$cache/hydra"
"$out/hydra" version
