#!/usr/bin/env bash
# Writes a release into DIST: install.yaml (CRDs, RBAC, admission policies, Deployment)
# with the manager image and version label, the manager and example-worker images as OCI
# archives with the version-stamped binaries, the kubectl plugin's archive and krew
# manifest, and the Helm chart package.
#
#   hack/release.sh all        everything (make release)
#   hack/release.sh manifests  only install.yaml (the install tests use it)
#
# Environment: VERSION (required), IMAGE_REPO (default jobtoken/manager), WORKER_REPO
# (default jobtoken/example-worker), DIST (default dist), KUBECTL, HELM, IMAGE_TOOL.
set -euo pipefail

what=${1:-all}
root=$(cd "$(dirname "$0")/.." && pwd)
: "${VERSION:?VERSION is required}"
IMAGE_REPO=${IMAGE_REPO:-jobtoken/manager}
WORKER_REPO=${WORKER_REPO:-jobtoken/example-worker}
DIST=${DIST:-$root/dist}
KUBECTL=${KUBECTL:-kubectl}
if [[ ! "$VERSION" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]]; then
	echo "release: VERSION $VERSION is not a valid image tag" >&2
	exit 1
fi
mkdir -p "$DIST"
DIST=$(cd "$DIST" && pwd)
ldflags="-s -w -X github.com/jobtoken/jobtoken/internal/version.Version=$VERSION"

manifests() {
	# A kustomization over config/default that sets the image and labels every object
	# with the version; it lives in the repository so that kustomize may load config/.
	local overlay
	overlay=$(mktemp -d "$root/.release-XXXXXX")
	trap 'rm -rf "$overlay"' RETURN
	cat >"$overlay/kustomization.yaml" <<YAML
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- ../config/default
images:
- name: jobtoken/manager
  newName: $IMAGE_REPO
  newTag: "$VERSION"
labels:
- pairs:
    app.kubernetes.io/version: "$VERSION"
    app.kubernetes.io/part-of: jobtoken
YAML
	{
		echo "# jobtoken $VERSION: kubectl apply --server-side -f install.yaml"
		"$KUBECTL" kustomize "$overlay"
	} >"$DIST/install.yaml"
	if ! grep -q "image: $IMAGE_REPO:$VERSION\$" "$DIST/install.yaml"; then
		echo "release: install.yaml does not name the image $IMAGE_REPO:$VERSION (did config/manager rename it?)" >&2
		exit 1
	fi
	echo "wrote $DIST/install.yaml"
}

# chart_version is VERSION when it is semver (v stripped), else 0.0.0-VERSION.
chart_version() {
	local v=${VERSION#v}
	if [[ "$v" =~ ^[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.-]+)?$ ]]; then
		echo "$v"
	else
		echo "0.0.0-${VERSION//[^0-9A-Za-z-]/-}"
	fi
}

images() {
	: "${IMAGE_TOOL:?IMAGE_TOOL is required}"
	local bin="$DIST/.bin"
	mkdir -p "$bin" "$DIST/images"
	(cd "$root" && CGO_ENABLED=0 GOOS=linux GOARCH=amd64 go build -trimpath -ldflags="$ldflags" -o "$bin/manager" ./cmd/manager)
	(cd "$root" && CGO_ENABLED=0 GOOS=linux GOARCH=amd64 go build -trimpath -ldflags="$ldflags" -o "$bin/example-worker" ./cmd/example-worker)
	"$IMAGE_TOOL" -tag "$IMAGE_REPO:$VERSION" -out "$DIST/images/manager.tar" -file "$bin/manager:/manager" -entrypoint /manager
	"$IMAGE_TOOL" -tag "$WORKER_REPO:$VERSION" -out "$DIST/images/example-worker.tar" -file "$bin/example-worker:/example-worker" -entrypoint /example-worker
	rm -rf "$bin"
}

plugin() {
	local stage archive sha
	stage=$(mktemp -d)
	trap 'rm -rf "$stage"' RETURN
	(cd "$root" && CGO_ENABLED=0 GOOS=linux GOARCH=amd64 go build -trimpath -ldflags="$ldflags" -o "$stage/kubectl-jobtoken" ./cmd/kubectl-jobtoken)
	cp "$root/docs/kubectl-plugin.md" "$stage/README.md"
	archive="kubectl-jobtoken_${VERSION}_linux_amd64.tar.gz"
	tar -C "$stage" --owner=0 --group=0 --mtime='2000-01-01 00:00:00' -czf "$DIST/$archive" kubectl-jobtoken README.md
	sha=$(sha256sum "$DIST/$archive" | cut -d' ' -f1)
	mkdir -p "$DIST/krew"
	sed -e "s|@VERSION@|$VERSION|g" -e "s|@ARCHIVE@|$archive|g" -e "s|@SHA256@|$sha|g" \
		"$root/hack/krew/jobtoken.yaml" >"$DIST/krew/jobtoken.yaml"
	echo "wrote $DIST/$archive and $DIST/krew/jobtoken.yaml"
}

chart() {
	: "${HELM:?HELM is required}"
	"$HELM" lint "$root/charts/jobtoken"
	"$HELM" package "$root/charts/jobtoken" --version "$(chart_version)" --app-version "$VERSION" -d "$DIST"
}

case "$what" in
manifests) manifests ;;
all)
	manifests
	images
	plugin
	chart
	;;
*)
	echo "usage: $0 all|manifests" >&2
	exit 2
	;;
esac
