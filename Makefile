# jobtoken Makefile. Every tool is built from the Go module proxy into bin/, pinned.
SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

ROOT := $(abspath .)
BIN := $(ROOT)/bin
export PATH := $(BIN):$(PATH)
export GOTOOLCHAIN := local

K8S_VERSION ?= 1.37.2
ENVTEST_ASSETS := $(BIN)/k8s/$(K8S_VERSION)-linux-amd64
export KUBEBUILDER_ASSETS := $(ENVTEST_ASSETS)

HYDRA_VERSION ?= v2.3.0
export HYDRA_BIN := $(BIN)/hydra/$(HYDRA_VERSION)/hydra

CONTROLLER_GEN_VERSION ?= v0.23.0
GOLANGCI_LINT_VERSION ?= v2.15.0
CRD_REF_DOCS_VERSION ?= v0.3.0
CRD_REF_DOCS := $(BIN)/crd-ref-docs-$(CRD_REF_DOCS_VERSION)
CONTROLLER_GEN := $(BIN)/controller-gen-$(CONTROLLER_GEN_VERSION)
GOLANGCI_LINT := $(BIN)/golangci-lint-$(GOLANGCI_LINT_VERSION)

IMG ?= jobtoken/manager:dev
TEST_TIMEOUT ?= 25m
GO_TEST_FLAGS ?=

.PHONY: all
all: build

##@ General

.PHONY: help
help: ## Show the targets.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  %-16s %s\n", $$1, $$2 } /^##@/ { printf "\n%s\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## Generate CRDs and RBAC under config/.
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd paths="./api/..." paths="./controllers/..." output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Generate DeepCopy methods.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./api/..."

.PHONY: fmt
fmt: ## go fmt.
	go fmt ./...

.PHONY: vet
vet: ## go vet (every test layer's files).
	go vet -tags $(TEST_TAGS) ./...

.PHONY: lint
lint: $(GOLANGCI_LINT) ## Run golangci-lint.
	$(GOLANGCI_LINT) run ./...

.PHONY: lint-fix
lint-fix: $(GOLANGCI_LINT) ## Run golangci-lint and apply its fixes.
	$(GOLANGCI_LINT) run --fix ./...

.PHONY: api-docs
api-docs: $(CRD_REF_DOCS) ## Generate the API reference (docs/api-reference.md) from the Go types.
	$(CRD_REF_DOCS) --source-path=api/v1alpha1 --config=hack/api-docs/config.yaml --renderer=markdown --output-path=docs/api-reference.md

.PHONY: verify
verify: manifests generate fmt api-docs ## Fail when generated files or formatting are out of date.
	@if [ -n "$$(git status --porcelain -- api config docs/api-reference.md go.mod go.sum '*.go')" ]; then \
		echo "verify: the tree changed; run 'make manifests generate fmt' and commit:"; \
		git status --porcelain -- api config docs/api-reference.md go.mod go.sum '*.go'; git diff --stat; exit 1; \
	fi

.PHONY: envtest
envtest: ## Build kube-apiserver, kubectl and etcd for envtest from the Go module proxy into bin/k8s.
	./hack/build-envtest.sh $(ENVTEST_ASSETS)

DEMO_FLAGS ?=
.PHONY: demo
demo: envtest ## Run the seed's long import with and without jobtoken (about 4 minutes; DEMO_FLAGS="--help" lists the flags).
	go run ./cmd/demo $(DEMO_FLAGS)

BENCH_FLAGS ?=
.PHONY: bench
bench: envtest ## Benchmark against the real kube-apiserver and write docs/benchmarks.md; fails on a missed or unmeasured target (about 25 minutes, of which the memory-return phase waits up to 13 for client-go to drop sent events; BENCH_FLAGS="--jobs=5000" for the large run, "--skip-memory-return" without that phase, "--fail-on-missed=false" to only report, "--help" lists the flags).
	go build -o $(BIN)/bench ./cmd/bench
	$(BIN)/bench $(BENCH_FLAGS)

CHAOS_FLAGS ?=
.PHONY: chaos
chaos: envtest ## Kill -9 soak, issuer outage and two replicas; writes docs/benchmarks.md (about 20 minutes; a short run is part of make test).
	go build -o $(BIN)/manager ./cmd/manager
	go build -o $(BIN)/chaos ./cmd/chaos
	$(BIN)/chaos --manager-bin $(BIN)/manager $(CHAOS_FLAGS)

.PHONY: hydra
hydra: ## Build Ory Hydra from the Go module proxy into bin/hydra (for the interop tests).
	./hack/build-hydra.sh $(dir $(HYDRA_BIN))

# Three test layers. Test files that need a control plane (envtest's kube-apiserver and
# etcd), Ory Hydra, Helm or the operator as a separate process carry the build tag
# `integration`; the chaos run carries `chaos`. Untagged test files are the unit layer:
# controller-runtime's fake client, the fake issuer, a fake clock and servers inside the
# test process on 127.0.0.1. A build tag rather than a control plane started on first
# use, because then no unit test can start one by accident (the integration helpers do
# not compile into it) and plain `go test ./...` is the fast inner loop.
TEST_TAGS := integration,chaos
# The packages with integration tests (their unit tests run again there: seconds).
INTEGRATION_PKGS = $(sort $(dir $(shell grep -rl --include='*_test.go' '^//go:build integration' api cmd controllers internal pkg)))
CHAOS_PKG := ./internal/chaos

# `make test` runs the unit layer first (it fails in a minute), then the integration and
# chaos layers side by side: both spend most of their time waiting for tokens to age, so
# together they take about as long as the chaos run alone. The chaos run's deadlines
# leave each rotation seconds, not milliseconds (internal/chaos/chaos_test.go), so the
# other layer's load does not decide them; what the layers need is built before either
# starts, so no build runs beside the chaos run. Each layer's output is printed whole
# when it ends; bin/test-*.log keep it.
.PHONY: test
test: test-unit manifests generate envtest hydra promrules helm previous-release ## Every test: the unit, integration and chaos layers (race detector on).
	$(MAKE) --no-print-directory -j2 --output-sync=target test-integration test-chaos

.PHONY: test-unit
test-unit: ## Unit tests: no control plane, no Hydra, fake clock (seconds; also plain `go test ./...`).
	@mkdir -p $(BIN)
	go test -race -timeout 5m $(GO_TEST_FLAGS) ./... 2>&1 | tee $(BIN)/test-unit.log

.PHONY: test-integration
test-integration: manifests generate envtest hydra promrules helm previous-release ## Integration tests against the real kube-apiserver, the development issuer and Ory Hydra.
	@mkdir -p $(BIN)
	go test -race -tags integration -timeout $(TEST_TIMEOUT) $(GO_TEST_FLAGS) $(addprefix ./,$(INTEGRATION_PKGS)) 2>&1 | tee $(BIN)/test-integration.log

.PHONY: test-chaos
test-chaos: manifests generate envtest ## The short chaos run: kill -9 soak, issuer outage, leader failover with real manager processes.
	@mkdir -p $(BIN)
	go test -race -tags chaos -timeout $(TEST_TIMEOUT) $(GO_TEST_FLAGS) $(CHAOS_PKG) 2>&1 | tee $(BIN)/test-chaos.log

FUZZ_TIME ?= 30s
.PHONY: fuzz
fuzz: ## Run each fuzz target for FUZZ_TIME.
	go test ./internal/issuer -run '^$$' -fuzz '^FuzzParseOAuth2TokenResponse$$' -fuzztime $(FUZZ_TIME)
	go test ./internal/issuer -run '^$$' -fuzz '^FuzzParseFOLIOResponse$$' -fuzztime $(FUZZ_TIME)

##@ Build

.PHONY: build
build: generate ## Build the manager.
	go build -o $(BIN)/manager ./cmd/manager

.PHONY: run
run: manifests generate ## Run the manager against the cluster in ~/.kube/config.
	go run ./cmd/manager --leader-elect=false

.PHONY: docker-build
docker-build: ## Build the manager image (needs a container engine).
	docker build -t $(IMG) .

##@ Deployment

KUBECTL ?= $(ENVTEST_ASSETS)/kubectl

.PHONY: install
install: manifests envtest ## Install the CRDs and the admission policies (config/install) into the cluster in ~/.kube/config.
	$(KUBECTL) apply --server-side -k config/install

.PHONY: uninstall
uninstall: manifests envtest ## Remove the CRDs and the admission policies.
	$(KUBECTL) delete --ignore-not-found -k config/install

.PHONY: deploy
deploy: manifests envtest ## Deploy the operator, its admission policies and the roles for people (config/default).
	$(KUBECTL) apply --server-side -k config/default

.PHONY: undeploy
undeploy: envtest ## Remove the operator.
	$(KUBECTL) delete --ignore-not-found -k config/default

##@ Tools

$(CONTROLLER_GEN):
	@mkdir -p $(BIN)
	GOBIN=$(BIN)/.tmp-controller-gen go install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_GEN_VERSION)
	mv $(BIN)/.tmp-controller-gen/controller-gen $@ && rmdir $(BIN)/.tmp-controller-gen

$(GOLANGCI_LINT):
	@mkdir -p $(BIN)
	GOBIN=$(BIN)/.tmp-golangci-lint go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	mv $(BIN)/.tmp-golangci-lint/golangci-lint $@ && rmdir $(BIN)/.tmp-golangci-lint

$(CRD_REF_DOCS):
	@mkdir -p $(BIN)
	GOBIN=$(BIN)/.tmp-crd-ref-docs go install github.com/elastic/crd-ref-docs@$(CRD_REF_DOCS_VERSION)
	mv $(BIN)/.tmp-crd-ref-docs/crd-ref-docs $@ && rmdir $(BIN)/.tmp-crd-ref-docs

##@ Real node

CONTAINERD_VERSION ?= 2.4.2
RUNC_VERSION ?= 1.3.3
NODE_BIN := $(BIN)/node/k8s-$(K8S_VERSION)-containerd-$(CONTAINERD_VERSION)-runc-$(RUNC_VERSION)
IMAGES := $(BIN)/images
WORKER_IMG ?= jobtoken/example-worker:dev
IMAGE_TOOL := $(BIN)/image-tool

.PHONY: node-bins
node-bins: ## Build kubelet, kube-controller-manager, kube-scheduler, kube-proxy, containerd and runc from the Go module proxy into bin/node (installs the Debian packages the node needs when missing).
	K8S_VERSION=$(K8S_VERSION) CONTAINERD_VERSION=$(CONTAINERD_VERSION) RUNC_VERSION=$(RUNC_VERSION) ./hack/build-node.sh $(NODE_BIN)

$(IMAGE_TOOL): hack/image/main.go hack/image/go.mod hack/image/go.sum
	@mkdir -p $(BIN)
	cd hack/image && go build -trimpath -o $@ .

.PHONY: image
image: $(IMAGE_TOOL) ## Build the manager, example-worker and pause images as OCI archives in bin/images, without a container engine.
	@mkdir -p $(BIN)/linux $(IMAGES)
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 go build -trimpath -ldflags="-s -w" -o $(BIN)/linux/manager ./cmd/manager
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 go build -trimpath -ldflags="-s -w" -o $(BIN)/linux/example-worker ./cmd/example-worker
	cd hack/image && CGO_ENABLED=0 GOOS=linux GOARCH=amd64 go build -trimpath -ldflags="-s -w" -o $(BIN)/linux/pause ./pause
	$(IMAGE_TOOL) -tag $(IMG) -out $(IMAGES)/manager.tar -file $(BIN)/linux/manager:/manager -entrypoint /manager
	$(IMAGE_TOOL) -tag $(WORKER_IMG) -out $(IMAGES)/example-worker.tar -file $(BIN)/linux/example-worker:/example-worker -entrypoint /example-worker
	$(IMAGE_TOOL) -tag jobtoken/pause:dev -out $(IMAGES)/pause.tar -file $(BIN)/linux/pause:/pause -entrypoint /pause

NODE_FLAGS ?=
.PHONY: node
node: envtest node-bins image ## Run a real single-node cluster (root, Linux) until interrupted; prints its kubeconfig (NODE_FLAGS="--help" lists the flags).
	go build -o $(BIN)/realnode ./cmd/realnode
	$(BIN)/realnode --node-bin $(NODE_BIN) --k8s-bin $(ENVTEST_ASSETS) --images $(IMAGES) $(NODE_FLAGS)

E2E_FLAGS ?=
.PHONY: e2e
e2e: envtest node-bins image ## End-to-end on a real single-node cluster (root, Linux; about 5 minutes once built, 25 or more the first time): the manager image deployed with config/default, real worker pods, failover, revocation (E2E_FLAGS="--help" lists the flags).
	go build -o $(BIN)/e2e ./cmd/e2e
	$(BIN)/e2e --node-bin $(NODE_BIN) --k8s-bin $(ENVTEST_ASSETS) --images $(IMAGES) --kubectl $(KUBECTL) $(E2E_FLAGS)

E2E_INSTALL_FLAGS ?=
.PHONY: e2e-install
e2e-install: envtest node-bins image helm ## On a real single-node cluster (root, Linux), install the operator from `helm template` of charts/jobtoken, then from the release manifest (hack/release.sh, as make release), with the manager image of make image; each time the manager pods must be Ready and serve an ImportJob, then the install is deleted (about 5 minutes once built).
	go build -o $(BIN)/e2e ./cmd/e2e
	$(BIN)/e2e --install helm,release --helm $(HELM) --manager-image $(IMG) --node-bin $(NODE_BIN) --k8s-bin $(ENVTEST_ASSETS) --images $(IMAGES) --kubectl $(KUBECTL) --work-dir $(BIN)/e2e-install-run $(E2E_INSTALL_FLAGS)

##@ Operate

# hack/promrules is a module of its own (Prometheus's rule-file and PromQL packages pull in
# much that the operator does not need); its go.mod pins the Prometheus release.
PROMETHEUS_VERSION := $(shell awk '$$1 == "github.com/prometheus/prometheus" {print $$2}' hack/promrules/go.mod)
PROMRULES := $(BIN)/promrules-$(PROMETHEUS_VERSION)
export PROMRULES_BIN := $(PROMRULES)

$(PROMRULES): hack/promrules/main.go hack/promrules/go.mod hack/promrules/go.sum
	@mkdir -p $(BIN)
	cd hack/promrules && go build -trimpath -o $@ .

.PHONY: promrules
promrules: $(PROMRULES) ## Build the checker of config/prometheus/rules.yaml and the Grafana dashboard (Prometheus's parsers and PromQL engine).
	$(PROMRULES) -rules config/prometheus/rules.yaml -dashboard config/grafana/jobtoken-dashboard.json > /dev/null

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
VERSION_LDFLAGS := -X github.com/jobtoken/jobtoken/internal/version.Version=$(VERSION)

.PHONY: plugin
plugin: ## Build the kubectl plugin into bin/kubectl-jobtoken (kubectl jobtoken, docs/kubectl-plugin.md).
	go build -ldflags="$(VERSION_LDFLAGS)" -o $(BIN)/kubectl-jobtoken ./cmd/kubectl-jobtoken

HELM_VERSION ?= v3.22.0
HELM := $(BIN)/helm-$(HELM_VERSION)
export HELM_BIN := $(HELM)

$(HELM):
	@mkdir -p $(BIN)
	GOBIN=$(BIN)/.tmp-helm go install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)
	mv $(BIN)/.tmp-helm/helm $@ && rmdir $(BIN)/.tmp-helm

.PHONY: helm
helm: $(HELM) ## Build Helm from the Go module proxy into bin/ (several minutes the first time).

# The release the upgrade test starts from (internal/install): until a release is tagged,
# the commit before the chart, release manifest and plugin were added.
PREVIOUS_RELEASE ?= 8d5d8f0d2c6a9ea7bc247c992aabc57f269f847f
PREVIOUS := $(BIN)/previous-$(PREVIOUS_RELEASE)
export PREVIOUS_RELEASE_DIR := $(PREVIOUS)

$(PREVIOUS)/manager:
	@git cat-file -e $(PREVIOUS_RELEASE)^{commit} || { echo "previous-release: commit $(PREVIOUS_RELEASE) is not in this clone (fetch the full history)"; exit 1; }
	rm -rf $(PREVIOUS).tmp && mkdir -p $(PREVIOUS).tmp
	git archive $(PREVIOUS_RELEASE) | tar -x -C $(PREVIOUS).tmp
	cd $(PREVIOUS).tmp && go build -o manager ./cmd/manager
	rm -rf $(PREVIOUS) && mv $(PREVIOUS).tmp $(PREVIOUS)

.PHONY: previous-release
previous-release: $(PREVIOUS)/manager ## Build the previous release's manager and keep its config/ in bin/ for the upgrade test.

.PHONY: chart
chart: manifests ## Regenerate charts/jobtoken/templates/generated from config/ (CRDs, RBAC, admission policies, monitoring).
	go run ./hack/chartgen

##@ Release

IMAGE_REPO ?= jobtoken/manager
DIST ?= $(ROOT)/dist

.PHONY: release
release: manifests envtest helm $(IMAGE_TOOL) ## Write dist/: install.yaml, the image archives, the kubectl plugin archive and krew manifest, the Helm chart, all stamped with VERSION.
	VERSION=$(VERSION) IMAGE_REPO=$(IMAGE_REPO) WORKER_REPO=$(firstword $(subst :, ,$(WORKER_IMG))) DIST=$(DIST) \
		KUBECTL=$(KUBECTL) HELM=$(HELM) IMAGE_TOOL=$(IMAGE_TOOL) ./hack/release.sh all
