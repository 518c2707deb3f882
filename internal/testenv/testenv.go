// Package testenv starts the real kube-apiserver and etcd that hack/build-envtest.sh
// builds into bin/k8s, with the project's CRDs installed, for integration tests.
package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/jobtoken/jobtoken/internal/scheme"
)

// K8sVersion is the version of the binaries hack/build-envtest.sh builds.
const K8sVersion = "1.37.2"

// RepoRoot returns the directory holding the project's go.mod, searching upwards from
// the working directory (tests run in their package directory).
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if data, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && len(data) > 0 &&
			containsModule(data) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("testenv: go.mod of github.com/jobtoken/jobtoken not found above the working directory")
		}
		dir = parent
	}
}

func containsModule(gomod []byte) bool {
	const want = "module github.com/jobtoken/jobtoken\n"
	return len(gomod) >= len(want) && string(gomod[:len(want)]) == want
}

// AssetsDir returns the directory of kube-apiserver, etcd and kubectl: KUBEBUILDER_ASSETS
// when set, else bin/k8s/<version>-linux-amd64 in the repository.
func AssetsDir() (string, error) {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		return dir, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(root, "bin", "k8s", K8sVersion+"-linux-amd64")
	if _, err := os.Stat(filepath.Join(dir, "kube-apiserver")); err != nil {
		return "", fmt.Errorf("testenv: no kube-apiserver in %s: run 'make envtest' (or 'make test')", dir)
	}
	return dir, nil
}

// Scheme returns a scheme with the built-in types and the jobtoken.dev types.
func Scheme() *runtime.Scheme { return scheme.New() }

// Env is a running control plane.
type Env struct {
	*envtest.Environment
	Config *rest.Config
	Client client.Client
	// KubectlPath is the kubectl built beside the apiserver.
	KubectlPath string
}

// Start starts kube-apiserver and etcd with the CRDs from config/crd/bases installed.
func Start() (*Env, error) {
	assets, err := AssetsDir()
	if err != nil {
		return nil, err
	}
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     []string{filepath.Join(root, "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		Scheme:                Scheme(),
		// On a shared two-core machine kube-apiserver can take far longer than envtest's
		// default 20 s to become ready; a slow start is not a failure of what is tested.
		ControlPlaneStartTimeout: 2 * time.Minute,
		ControlPlaneStopTimeout:  time.Minute,
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("testenv: start control plane from %s: %w", assets, err)
	}
	c, err := client.New(cfg, client.Options{Scheme: env.Scheme})
	if err != nil {
		_ = env.Stop()
		return nil, err
	}
	return &Env{Environment: env, Config: cfg, Client: c, KubectlPath: filepath.Join(assets, "kubectl")}, nil
}

// RunTests is a TestMain body: it starts the control plane, hands it to setup (which
// keeps it and prepares shared objects), runs the tests, stops the control plane and
// exits with the tests' code.
func RunTests(m interface{ Run() int }, setup func(*Env) error) {
	env, err := Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := 1
	if err := setup(env); err != nil {
		fmt.Fprintln(os.Stderr, "test setup:", err)
	} else {
		code = m.Run()
	}
	if err := env.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stop control plane:", err)
	}
	os.Exit(code)
}

// RunShippedTests is RunTests for packages whose tests run the manager as shipped: it
// installs config/default (InstallShipped) before handing both to setup.
func RunShippedTests(m interface{ Run() int }, setup func(*Env, *Shipped) error) {
	RunTests(m, func(e *Env) error {
		s, err := e.InstallShipped(context.Background())
		if err != nil {
			return err
		}
		return setup(e, s)
	})
}

// ReadRepoYAML decodes a YAML file of the repository (path relative to its root) into
// out, so tests use config/ and its samples exactly as shipped.
func ReadRepoYAML(path string, out any) error {
	root, err := RepoRoot()
	if err != nil {
		return err
	}
	data, err := os.ReadFile(filepath.Join(root, path))
	if err != nil {
		return err
	}
	if err := yaml.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decode %s: %w", path, err)
	}
	return nil
}
