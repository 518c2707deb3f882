//go:build integration

package install

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	jobtokenv1alpha1 "github.com/jobtoken/jobtoken/api/v1alpha1"
	"github.com/jobtoken/jobtoken/internal/chartgen"
	"github.com/jobtoken/jobtoken/internal/testenv"
	"github.com/jobtoken/jobtoken/internal/testenv/optest"
)

// installedKinds are what an install puts in place besides the workload (the tests run
// the managers themselves).
var installedKinds = []string{
	"CustomResourceDefinition", "Namespace", "ServiceAccount", "Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding",
	"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding",
}

// TestUpgradeKeepsRunningJobs installs the previous release (its CRDs, RBAC and policies
// from config/default, and its manager binary, built by `make previous-release` from the
// commit the Makefile names), runs an ImportJob with it through a rotation, stops it,
// applies this release's install.yaml and runs this manager: the job carries on with the
// chain the old manager stored (a requested rotation refreshes it, with no re-mint and no
// refresh token replayed), and ends with its tokens revoked.
func TestUpgradeKeepsRunningJobs(t *testing.T) {
	prev := os.Getenv("PREVIOUS_RELEASE_DIR")
	if prev == "" {
		t.Fatal("PREVIOUS_RELEASE_DIR is not set: run the tests through `make test` (or `make previous-release` and set it)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	const ns = chartgen.SourceNamespace
	shipped := &testenv.Shipped{Namespace: ns, ServiceAccount: "jobtoken-controller-manager"}

	old, err := chartgen.Render(prev, "config/default")
	if err != nil {
		t.Fatal(err)
	}
	// Namespaces and CRDs first: kubectl refuses objects in a namespace it has not seen.
	var first, rest []byte
	for _, o := range old {
		if !slices.Contains(installedKinds, o.GetKind()) {
			continue
		}
		data, err := yaml.Marshal(o.Object)
		must(t, err)
		if o.GetKind() == "Namespace" || o.GetKind() == "CustomResourceDefinition" {
			first = append(append(first, "---\n"...), data...)
		} else {
			rest = append(append(rest, "---\n"...), data...)
		}
	}
	apply(t, ctx, first)
	apply(t, ctx, rest)

	op := optest.Start(t, ctx, env, shipped, optest.Options{WithoutManager: true})
	stopOld := runPreviousManager(t, ctx, filepath.Join(prev, "manager"), shipped)
	job := op.RunningJob(ctx, "carried-over")
	op.RotateNow(ctx, job.Name)
	testenv.Eventually(t, 30*time.Second, "a rotation by the previous manager", func() bool { return op.Job(ctx, job.Name).Status.Rotations >= 1 })
	stopOld()
	before := op.Job(ctx, job.Name)

	// The upgrade, as an administrator does it.
	dist := t.TempDir()
	cmd := exec.CommandContext(ctx, filepath.Join(repoRoot(t), "hack", "release.sh"), "manifests")
	cmd.Env = append(os.Environ(), "VERSION=v0.0.0-upgrade", "DIST="+dist, "KUBECTL="+env.KubectlPath)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("hack/release.sh manifests: %v\n%s", err, out)
	}
	manifest, err := os.ReadFile(filepath.Join(dist, "install.yaml"))
	must(t, err)
	apply(t, ctx, manifest)
	allowPlainHTTP(t, ctx, op)
	op.RunManager(ctx, shipped, nil)
	t.Cleanup(func() {
		if t.Failed() {
			j := &jobtokenv1alpha1.ImportJob{}
			if err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(job), j); err == nil {
				t.Logf("the ImportJob at the end: %+v", j.Status)
			}
			t.Logf("this manager's log:\n%s", op.Logs.String())
		}
	})

	// Bounded generously: under the race detector on a loaded machine the new manager's
	// caches and its issuer check take a while before the requested rotation.
	asked := time.Now()
	op.RotateNow(ctx, job.Name)
	testenv.Eventually(t, 90*time.Second, "a rotation by this manager", func() bool {
		return op.Job(ctx, job.Name).Status.Rotations > before.Status.Rotations
	})
	t.Logf("this manager rotated the carried-over chain %s after the request", time.Since(asked).Round(time.Millisecond))
	after := op.Job(ctx, job.Name)
	if after.Status.Remints != before.Status.Remints {
		t.Errorf("this manager re-minted (%d -> %d) instead of refreshing the chain the previous one stored", before.Status.Remints, after.Status.Remints)
	}
	if after.Status.Phase != jobtokenv1alpha1.PhaseRunning || after.Status.TokenRevision <= before.Status.TokenRevision {
		t.Errorf("after the upgrade: phase %s, revision %d -> %d", after.Status.Phase, before.Status.TokenRevision, after.Status.TokenRevision)
	}
	if c := op.Issuer.Counters(); c.RefreshReuse != 0 {
		t.Errorf("the issuer saw %d refresh-token replays across the upgrade", c.RefreshReuse)
	}
	op.CompleteJob(ctx, job.Name)
	testenv.Eventually(t, 30*time.Second, "the job's tokens revoked by this manager", func() bool {
		j := op.Job(ctx, job.Name)
		return j.Status.Phase == jobtokenv1alpha1.PhaseSucceeded && meta.IsStatusConditionTrue(j.Status.Conditions, jobtokenv1alpha1.ConditionRevoked)
	})
}

// runPreviousManager runs the previous release's manager binary as the ServiceAccount,
// through a kubeconfig that impersonates it; the returned func stops it.
func runPreviousManager(t *testing.T, ctx context.Context, bin string, shipped *testenv.Shipped) func() {
	t.Helper()
	admin, err := env.AddUser(envtest.User{Name: "upgrade-admin", Groups: []string{"system:masters"}}, nil)
	must(t, err)
	kc, err := admin.KubeConfig()
	must(t, err)
	cfg, err := clientcmd.Load(kc)
	must(t, err)
	for _, ai := range cfg.AuthInfos {
		ai.Impersonate = shipped.ManagerUser()
		ai.ImpersonateGroups = []string{"system:serviceaccounts", "system:serviceaccounts:" + shipped.Namespace}
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	must(t, clientcmd.WriteToFile(*cfg, path))
	logPath := filepath.Join(t.TempDir(), "previous-manager.log")
	proc, err := testenv.StartProc("the previous manager", bin, []string{"--kubeconfig", path, "--vault-namespace", shipped.Namespace,
		"--leader-elect=false", "--health-probe-bind-address=0", "--metrics-bind-address=0"}, logPath)
	must(t, err)
	stop := func() {
		if err := proc.Stop(30 * time.Second); err != nil {
			t.Error(err)
		}
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			logs, _ := os.ReadFile(logPath)
			t.Logf("previous manager's log:\n%s", logs)
		}
	})
	return stop
}

// allowPlainHTTP sets spec.insecureAllowPlainHTTP on the issuer the test created before
// the upgrade: the previous release's CRD did not have the field (its API server dropped
// it), and this release refuses plain http without it. An issuer on https needs nothing.
func allowPlainHTTP(t *testing.T, ctx context.Context, op *optest.Operator) {
	t.Helper()
	is := &unstructured.Unstructured{}
	is.SetAPIVersion("jobtoken.dev/v1alpha1")
	is.SetKind("TokenIssuer")
	must(t, env.Client.Get(ctx, client.ObjectKey{Namespace: op.Namespace, Name: optest.IssuerName}, is))
	patch := client.MergeFrom(is.DeepCopy())
	must(t, unstructured.SetNestedField(is.Object, true, "spec", "insecureAllowPlainHTTP"))
	must(t, env.Client.Patch(ctx, is, patch))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
