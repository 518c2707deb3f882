//go:build integration

package controllers

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/jobtoken/jobtoken/internal/testenv"
)

// expectedRulesFile is the reviewed list of what the manager's ServiceAccount may do.
const expectedRulesFile = "config/rbac/expected-rules.txt"

// TestShippedRBACIsTheExpectedList: every rule config/default grants the manager's
// ServiceAccount, one line per API group, resource and namespace, equals the committed
// list, so that a widening (a marker, a hand-written role, a new binding) shows in review.
// That these rules are enough is shown by every other test here, which runs the manager
// on exactly them.
func TestShippedRBACIsTheExpectedList(t *testing.T) {
	objs, err := env.Render(context.Background(), "config/default")
	if err != nil {
		t.Fatal(err)
	}
	var (
		sa       string
		roles    = map[string][]rbacv1.PolicyRule{} // "ClusterRole/name" or "Role/ns/name"
		bindings []rbacv1.RoleBinding               // ClusterRoleBindings get an empty namespace
	)
	for _, o := range objs {
		switch o.GetKind() {
		case "ServiceAccount":
			sa = o.GetNamespace() + "/" + o.GetName()
		case "ClusterRole", "Role":
			r := &rbacv1.Role{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, r); err != nil {
				t.Fatal(err)
			}
			key := "ClusterRole/" + o.GetName()
			if o.GetKind() == "Role" {
				key = "Role/" + o.GetNamespace() + "/" + o.GetName()
			}
			roles[key] = r.Rules
		case "ClusterRoleBinding", "RoleBinding":
			b := rbacv1.RoleBinding{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &b); err != nil {
				t.Fatal(err)
			}
			bindings = append(bindings, b)
		}
	}
	if sa == "" {
		t.Fatal("config/default renders no ServiceAccount")
	}
	var got []string
	for _, b := range bindings {
		bound := slices.ContainsFunc(b.Subjects, func(s rbacv1.Subject) bool {
			return s.Kind == "ServiceAccount" && s.Namespace+"/"+s.Name == sa
		})
		if !bound {
			continue
		}
		key, scope := "ClusterRole/"+b.RoleRef.Name, "cluster"
		if b.Namespace != "" {
			scope = "namespace " + b.Namespace
		}
		if b.RoleRef.Kind == "Role" {
			key = "Role/" + b.Namespace + "/" + b.RoleRef.Name
		}
		rules, ok := roles[key]
		if !ok {
			t.Fatalf("%s binds %s, which config/default does not render", b.Name, key)
		}
		for _, r := range rules {
			verbs := slices.Clone(r.Verbs)
			slices.Sort(verbs)
			for _, g := range r.APIGroups {
				for _, res := range r.Resources {
					if g == "" {
						g = "core"
					}
					line := fmt.Sprintf("%s %s/%s: %s", scope, g, res, strings.Join(verbs, ","))
					if len(r.ResourceNames) > 0 {
						line += " (names " + strings.Join(r.ResourceNames, ",") + ")"
					}
					got = append(got, line)
				}
			}
		}
	}
	slices.Sort(got)
	got = slices.Compact(got)
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, expectedRulesFile))
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, l := range strings.Split(string(data), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			want = append(want, l)
		}
	}
	if !slices.Equal(got, want) {
		var diff []string
		for _, l := range got {
			if !slices.Contains(want, l) {
				diff = append(diff, "+ "+l)
			}
		}
		for _, l := range want {
			if !slices.Contains(got, l) {
				diff = append(diff, "- "+l)
			}
		}
		t.Fatalf("the manager's rules differ from %s (update it when the change is intended, so that it is reviewed):\n%s",
			expectedRulesFile, strings.Join(diff, "\n"))
	}
}
