//go:build integration

package install

import (
	"testing"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/jobtoken/jobtoken/internal/chartgen"
)

// TestChartWatchNamespacesRendersOverlay: `helm template` with watchNamespaces set to
// the namespaces config/watch-namespaces lists renders exactly what that overlay renders
// (image aside): the --watch-namespaces flag, the per-namespace RoleBindings, the
// cluster-scoped ClusterRole and no cluster-wide binding of the manager's rules. The
// overlay's rules themselves are run by internal/install/watchns.
func TestChartWatchNamespacesRendersOverlay(t *testing.T) {
	objs, err := chartgen.Decode(helm(t, "template", "jobtoken", "charts/jobtoken", "--namespace", chartgen.SourceNamespace,
		"--set", "createNamespace=true,watchNamespaces={team-a,team-b}"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := chartgen.Render(repoRoot(t), chartgen.WatchNamespacesOverlay)
	if err != nil {
		t.Fatal(err)
	}
	sameObjects(t, objs, want, chartgen.WatchNamespacesOverlay)
	for _, o := range objs {
		if o.GetKind() == "ClusterRoleBinding" && o.GetName() == "jobtoken-manager-rolebinding" {
			t.Errorf("with watchNamespaces the chart still binds the manager's rules cluster-wide")
		}
	}
}

// sameObjects fails unless got and want hold the same objects, normalized.
func sameObjects(t *testing.T, got, want []*unstructured.Unstructured, what string) {
	t.Helper()
	byKey := map[string]*unstructured.Unstructured{}
	for _, o := range got {
		byKey[key(o)] = o
	}
	for _, w := range want {
		g, ok := byKey[key(w)]
		if !ok {
			t.Errorf("the chart does not render %s", key(w))
			continue
		}
		delete(byKey, key(w))
		if !apiequality.Semantic.DeepEqual(normalized(g), normalized(w)) {
			gy, _ := yaml.Marshal(normalized(g))
			wy, _ := yaml.Marshal(normalized(w))
			t.Errorf("the chart renders %s unlike %s (run make chart, or mend the chart's template of it):\n%s", key(w), what, firstDiff(string(gy), string(wy)))
		}
	}
	for k := range byKey {
		t.Errorf("the chart renders %s, which %s does not", k, what)
	}
}
