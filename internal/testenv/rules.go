package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// EffectiveRules lists what the ServiceAccount sa ("namespace/name") may do through the
// roles and bindings among objs (a kustomization's rendering), one sorted line per scope,
// API group and resource: "cluster core/pods: get,list" or "namespace ns core/secrets:
// update". A rule on a cluster-scoped resource bound in a namespace grants nothing and is
// left out; mapper tells the scopes (nil keeps every line).
func EffectiveRules(objs []*unstructured.Unstructured, sa string, mapper meta.RESTMapper) ([]string, error) {
	roles := map[string][]rbacv1.PolicyRule{} // "ClusterRole/name" or "Role/ns/name"
	var bindings []rbacv1.RoleBinding         // ClusterRoleBindings get an empty namespace
	for _, o := range objs {
		switch o.GetKind() {
		case "ClusterRole", "Role":
			r := &rbacv1.Role{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, r); err != nil {
				return nil, err
			}
			key := "ClusterRole/" + o.GetName()
			if o.GetKind() == "Role" {
				key = "Role/" + o.GetNamespace() + "/" + o.GetName()
			}
			roles[key] = r.Rules
		case "ClusterRoleBinding", "RoleBinding":
			b := rbacv1.RoleBinding{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &b); err != nil {
				return nil, err
			}
			bindings = append(bindings, b)
		}
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
			return nil, fmt.Errorf("%s binds %s, which is not rendered", b.Name, key)
		}
		for _, r := range rules {
			verbs := slices.Clone(r.Verbs)
			slices.Sort(verbs)
			for _, g := range r.APIGroups {
				for _, res := range r.Resources {
					if b.Namespace != "" && mapper != nil {
						clusterScoped, err := isClusterScoped(mapper, g, res)
						if err != nil {
							return nil, err
						}
						if clusterScoped {
							continue
						}
					}
					group := g
					if group == "" {
						group = "core"
					}
					line := fmt.Sprintf("%s %s/%s: %s", scope, group, res, strings.Join(verbs, ","))
					if len(r.ResourceNames) > 0 {
						line += " (names " + strings.Join(r.ResourceNames, ",") + ")"
					}
					got = append(got, line)
				}
			}
		}
	}
	slices.Sort(got)
	return slices.Compact(got), nil
}

func isClusterScoped(mapper meta.RESTMapper, group, resource string) (bool, error) {
	resource, _, _ = strings.Cut(resource, "/")
	gvk, err := mapper.KindFor(schema.GroupVersionResource{Group: group, Resource: resource})
	if err != nil {
		return false, fmt.Errorf("scope of %s/%s: %w", group, resource, err)
	}
	m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return false, err
	}
	return m.Scope.Name() == meta.RESTScopeNameRoot, nil
}

// CompareRules compares got with the reviewed list in path (relative to the repository
// root; blank lines and # comments ignored) and returns the difference, "" when equal.
func CompareRules(got []string, path string) (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	data, err := os.ReadFile(filepath.Join(root, path))
	if err != nil {
		return "", err
	}
	var want []string
	for _, l := range strings.Split(string(data), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			want = append(want, l)
		}
	}
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
	return strings.Join(diff, "\n"), nil
}
