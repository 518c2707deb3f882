//go:build integration

package watchns

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	jobtokenv1alpha1 "github.com/jobtoken/jobtoken/api/v1alpha1"
	"github.com/jobtoken/jobtoken/internal/testenv"
	"github.com/jobtoken/jobtoken/internal/testenv/optest"
)

var env *testenv.Env

func TestMain(m *testing.M) {
	ctrl.SetLogger(zap.New(zap.WriteTo(io.Discard)))
	testenv.RunTests(m, func(e *testenv.Env) error { env = e; return nil })
}

const (
	overlay       = "config/watch-namespaces"
	expectedRules = overlay + "/expected-rules.txt"
)

// watched are the namespaces the overlay lists (its Deployment patch and RoleBindings).
var watched = []string{"team-a", "team-b"}

// TestWatchNamespacesOverlay installs config/watch-namespaces as rendered (workloads
// aside) and runs the manager as its ServiceAccount, with exactly its rules and
// --watch-namespaces as the overlay sets it. The rules it grants equal the reviewed list
// (no namespaced resource cluster-wide); an ImportJob in a listed namespace is served,
// one in another namespace (with its own TokenIssuer) is left untouched, and the manager
// is refused nothing.
func TestWatchNamespacesOverlay(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for _, ns := range watched {
		if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatal(err)
		}
	}
	objs, err := env.Render(ctx, overlay)
	if err != nil {
		t.Fatal(err)
	}
	args := ""
	for _, o := range objs {
		if o.GetKind() == "Deployment" {
			d := &appsv1.Deployment{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, d); err != nil {
				t.Fatal(err)
			}
			args = strings.Join(d.Spec.Template.Spec.Containers[0].Args, " ")
		}
	}
	if !strings.Contains(args, "--watch-namespaces="+strings.Join(watched, ",")) {
		t.Fatalf("the overlay's manager runs with %q, want --watch-namespaces=%s", args, strings.Join(watched, ","))
	}

	shipped, err := env.Install(ctx, overlay, []authorizationv1.ResourceAttributes{
		{Group: "jobtoken.dev", Resource: "importjobs", Verb: "watch", Namespace: watched[0]},
		{Group: "coordination.k8s.io", Resource: "leases", Verb: "create", Namespace: "jobtoken-system"},
	})
	if err != nil {
		t.Fatal(err)
	}
	rules, err := testenv.EffectiveRules(objs, shipped.Namespace+"/"+shipped.ServiceAccount, env.Client.RESTMapper())
	if err != nil {
		t.Fatal(err)
	}
	if diff, err := testenv.CompareRules(rules, expectedRules); err != nil {
		t.Fatal(err)
	} else if diff != "" {
		t.Fatalf("the namespaced manager's rules differ from %s (update it when the change is intended, so that it is reviewed):\n%s", expectedRules, diff)
	}

	op := optest.Start(t, ctx, env, shipped, optest.Options{Namespace: watched[0], WatchNamespaces: watched})
	other := op.SetUpNamespace(ctx, "")
	for _, probe := range []authorizationv1.ResourceAttributes{
		{Group: "jobtoken.dev", Resource: "importjobs", Verb: "list", Namespace: other},
		{Resource: "secrets", Verb: "get", Namespace: other},
		{Resource: "secrets", Verb: "list"},
	} {
		if allowed(t, ctx, shipped, probe) {
			t.Errorf("the namespaced manager may %s %s in %q", probe.Verb, probe.Resource, probe.Namespace)
		}
	}

	ignored := op.ImportJob("ignored")
	ignored.Namespace = other
	if err := env.Client.Create(ctx, ignored); err != nil {
		t.Fatal(err)
	}
	served := op.RunningJob(ctx, "served")
	if served.Status.TokenExpiresAt == nil {
		t.Fatalf("the ImportJob in %s runs without a token: %+v", watched[0], served.Status)
	}
	// The served job was created after the ignored one, and a few more seconds pass:
	// a manager watching the other namespace would have acted on it by now.
	time.Sleep(3 * time.Second)
	got := &jobtokenv1alpha1.ImportJob{}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(ignored), got); err != nil {
		t.Fatal(err)
	}
	if len(got.Finalizers) > 0 || got.Status.Phase != "" || len(got.Status.Conditions) > 0 {
		t.Errorf("the ImportJob in the unwatched namespace was touched: finalizers %v, status %+v", got.Finalizers, got.Status)
	}
	for _, list := range []client.ObjectList{&corev1.SecretList{}, &batchv1.JobList{}} {
		if err := env.Client.List(ctx, list, client.InNamespace(other),
			client.MatchingLabels{jobtokenv1alpha1.LabelManagedBy: jobtokenv1alpha1.ManagedByValue}); err != nil {
			t.Fatal(err)
		}
		if n := meta.LenList(list); n > 0 {
			t.Errorf("the operator created %d %T object(s) in the unwatched namespace", n, list)
		}
	}
	ti := &jobtokenv1alpha1.TokenIssuer{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: other, Name: optest.IssuerName}, ti); err != nil {
		t.Fatal(err)
	}
	if len(ti.Status.Conditions) > 0 {
		t.Errorf("the TokenIssuer in the unwatched namespace was reconciled: %+v", ti.Status.Conditions)
	}
	for _, bad := range []string{"forbidden", "unknown namespace"} {
		if strings.Contains(op.Logs.String(), bad) {
			t.Errorf("the manager's log holds %q: it reached beyond what it watches or may do", bad)
		}
	}
}

// allowed asks the API server whether the manager's ServiceAccount may do attrs.
func allowed(t *testing.T, ctx context.Context, s *testenv.Shipped, attrs authorizationv1.ResourceAttributes) bool {
	t.Helper()
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User: s.ManagerUser(), Groups: []string{"system:authenticated", "system:serviceaccounts", "system:serviceaccounts:" + s.Namespace},
		ResourceAttributes: &attrs,
	}}
	if err := env.Client.Create(ctx, sar); err != nil {
		t.Fatal(err)
	}
	return sar.Status.Allowed
}
