package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// admin is a kubeconfig of a cluster admin, for the envtest kubectl.
type admin struct {
	once sync.Once
	path string
	err  error
}

var admins sync.Map // *Env -> *admin

func (e *Env) adminKubeconfig() (string, error) {
	a, _ := admins.LoadOrStore(e, &admin{})
	ad := a.(*admin)
	ad.once.Do(func() {
		user, err := e.AddUser(envtest.User{Name: "testenv-admin", Groups: []string{"system:masters"}}, nil)
		if err != nil {
			ad.err = err
			return
		}
		kc, err := user.KubeConfig()
		if err != nil {
			ad.err = err
			return
		}
		dir, err := os.MkdirTemp("", "testenv-kubeconfig-")
		if err != nil {
			ad.err = err
			return
		}
		ad.path = filepath.Join(dir, "kubeconfig")
		ad.err = os.WriteFile(ad.path, kc, 0o600)
	})
	return ad.path, ad.err
}

// Kubectl runs the envtest kubectl as a cluster admin in the repository root, so that
// paths such as config/default mean what they mean to a user of the repository.
func (e *Env) Kubectl(ctx context.Context, stdin []byte, args ...string) (string, error) {
	kc, err := e.adminKubeconfig()
	if err != nil {
		return "", err
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.KubectlPath, append([]string{"--kubeconfig", kc}, args...)...)
	cmd.Dir = root
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// Render returns the objects a kustomization renders (dir relative to the repository root).
func (e *Env) Render(ctx context.Context, dir string) ([]*unstructured.Unstructured, error) {
	out, err := e.Kubectl(ctx, nil, "kustomize", dir)
	if err != nil {
		return nil, err
	}
	var objs []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(out), 4096)
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("decode %s: %w", dir, err)
		}
		if len(u.Object) > 0 {
			objs = append(objs, u)
		}
	}
	return objs, nil
}

// Impersonate returns a client config that acts as user with groups; the API server
// authorizes it with the cluster's RBAC like any other user.
func (e *Env) Impersonate(user string, groups ...string) *rest.Config {
	cfg := rest.CopyConfig(e.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: append([]string{"system:authenticated"}, groups...)}
	return cfg
}

// Shipped is what InstallShipped put in place.
type Shipped struct {
	// Namespace is the operator's namespace (where its stored chains live).
	Namespace string
	// ServiceAccount is the manager's ServiceAccount in Namespace.
	ServiceAccount string
	// Roles are the ClusterRoles config/default ships, by name.
	Roles map[string]*rbacv1.ClusterRole
}

// ManagerConfig is a client config that acts as the manager's ServiceAccount, so a
// manager built on it holds exactly the rights config/rbac grants.
func (s *Shipped) ManagerConfig(e *Env) *rest.Config {
	return e.Impersonate(s.ManagerUser(), "system:serviceaccounts", "system:serviceaccounts:"+s.Namespace)
}

// ManagerUser is the user name of the manager's ServiceAccount.
func (s *Shipped) ManagerUser() string {
	return "system:serviceaccount:" + s.Namespace + ":" + s.ServiceAccount
}

// installedKinds are the kinds of config/default that InstallShipped applies: everything
// but the workloads (the tests run the manager in their own process) and the CRDs
// (envtest installed them from the same files).
var installedKinds = []string{
	"Namespace", "ServiceAccount", "Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding",
	"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding",
}

// InstallShipped applies what `kubectl apply -k config/default` installs, as rendered,
// except workloads and CRDs, and waits until the manager's RBAC and the admission
// policies are in force.
func (e *Env) InstallShipped(ctx context.Context) (*Shipped, error) {
	return e.Install(ctx, "config/default", nil)
}

// Install is InstallShipped for another kustomization (dir relative to the repository
// root, such as an overlay of config/default). probes are rights the manager must hold
// once its RBAC is in force; nil means watching ImportJobs in every namespace and
// creating its Lease. Namespaces the kustomization puts objects in must exist.
func (e *Env) Install(ctx context.Context, dir string, probes []authorizationv1.ResourceAttributes) (*Shipped, error) {
	objs, err := e.Render(ctx, dir)
	if err != nil {
		return nil, err
	}
	s := &Shipped{Roles: map[string]*rbacv1.ClusterRole{}}
	for _, obj := range objs {
		kind := obj.GetKind()
		if !slices.Contains(installedKinds, kind) {
			continue
		}
		switch kind {
		case "ServiceAccount":
			s.Namespace, s.ServiceAccount = obj.GetNamespace(), obj.GetName()
		case "ClusterRole":
			cr := &rbacv1.ClusterRole{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, cr); err != nil {
				return nil, err
			}
			s.Roles[cr.Name] = cr
		}
		if err := e.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(obj), client.FieldOwner("testenv"), client.ForceOwnership); err != nil {
			return nil, fmt.Errorf("apply %s %s: %w", kind, obj.GetName(), err)
		}
	}
	if s.ServiceAccount == "" {
		return nil, fmt.Errorf("%s renders no ServiceAccount for the manager", dir)
	}
	if err := e.waitManagerRBAC(ctx, s, probes); err != nil {
		return nil, err
	}
	if err := e.waitPoliciesEnforced(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// waitManagerRBAC waits until the API server's RBAC cache grants the manager its rules:
// a refusal seen by a test is then never a stale-cache artefact.
func (e *Env) waitManagerRBAC(ctx context.Context, s *Shipped, probes []authorizationv1.ResourceAttributes) error {
	if probes == nil {
		probes = []authorizationv1.ResourceAttributes{
			{Group: "jobtoken.dev", Resource: "importjobs", Verb: "watch"},
			{Group: "coordination.k8s.io", Resource: "leases", Verb: "create", Namespace: s.Namespace},
		}
	}
	for _, attrs := range probes {
		if err := e.WaitAllowed(ctx, s.ManagerUser(), []string{"system:serviceaccounts", "system:serviceaccounts:" + s.Namespace}, attrs); err != nil {
			return err
		}
	}
	return nil
}

// WaitAllowed waits, up to 30 s, until user (with groups) is allowed attrs.
func (e *Env) WaitAllowed(ctx context.Context, user string, groups []string, attrs authorizationv1.ResourceAttributes) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		a := attrs
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User: user, Groups: append([]string{"system:authenticated"}, groups...), ResourceAttributes: &a,
		}}
		if err := e.Client.Create(ctx, sar); err != nil {
			return err
		}
		if sar.Status.Allowed {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s is still not allowed %+v 30s after the RBAC was applied", user, attrs)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitPoliciesEnforced waits until the API server's policy cache enforces the
// ImportJob policy: a user who may create ImportJobs but not Jobs is refused by it.
func (e *Env) waitPoliciesEnforced(ctx context.Context) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "policy-probe-"}}
	if err := e.Client.Create(ctx, ns); err != nil {
		return err
	}
	defer func() { _ = e.Client.Delete(context.Background(), ns) }()
	const user = "testenv-policy-probe"
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: user},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{"jobtoken.dev"}, Resources: []string{"importjobs"}, Verbs: []string{"create"}}},
	}
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: user},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: user},
	}
	for _, o := range []client.Object{role, rb} {
		if err := e.Client.Create(ctx, o); err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
	}
	probe, err := client.New(e.Impersonate(user), client.Options{Scheme: e.Scheme})
	if err != nil {
		return err
	}
	job := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "jobtoken.dev/v1alpha1", "kind": "ImportJob",
		"metadata": map[string]any{"name": "probe", "namespace": ns.Name},
		"spec": map[string]any{
			"issuerRef":   map[string]any{"name": "probe"},
			"credentials": map[string]any{"grant": "ClientCredentials"},
			"template": map[string]any{"spec": map[string]any{"template": map[string]any{"spec": map[string]any{
				"restartPolicy": "Never", "containers": []any{map[string]any{"name": "w", "image": "busybox"}},
			}}}},
		},
	}}
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := probe.Create(ctx, job.DeepCopy(), client.DryRunAll)
		if err != nil && strings.Contains(err.Error(), "lacks permission") {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the admission policies are not enforced 60s after install (last answer: %v)", err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// Grants are the rights a tenant holds in its namespace: ClusterRoles bound there with a
// RoleBinding, and the rules of a Role of its own.
type Grants struct {
	ClusterRoles []string
	Rules        []rbacv1.PolicyRule
}

// Tenant returns a client that acts as user, holding only grants in ns, once the API
// server's RBAC cache grants every rule: a refusal a test sees is then never a
// stale-cache artefact. The ClusterRoles must exist.
func (e *Env) Tenant(ctx context.Context, ns, user string, g Grants) (client.Client, error) {
	subject := []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}}
	rules := slices.Clone(g.Rules)
	for _, cr := range g.ClusterRoles {
		role := &rbacv1.ClusterRole{}
		if err := e.Client.Get(ctx, client.ObjectKey{Name: cr}, role); err != nil {
			return nil, fmt.Errorf("ClusterRole %s: %w", cr, err)
		}
		rules = append(rules, role.Rules...)
		rb := &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: user + "-"},
			Subjects:   subject,
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: cr},
		}
		if err := e.Client.Create(ctx, rb); err != nil {
			return nil, fmt.Errorf("bind %s: %w", cr, err)
		}
	}
	if len(g.Rules) > 0 {
		role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: user}, Rules: g.Rules}
		rb := &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: user},
			Subjects:   subject,
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: user},
		}
		for _, o := range []client.Object{role, rb} {
			if err := e.Client.Create(ctx, o); err != nil {
				return nil, fmt.Errorf("create %T %s: %w", o, user, err)
			}
		}
	}
	for _, r := range rules {
		attrs := authorizationv1.ResourceAttributes{Namespace: ns, Group: r.APIGroups[0], Verb: r.Verbs[0], Resource: r.Resources[0]}
		if resource, sub, ok := strings.Cut(r.Resources[0], "/"); ok {
			attrs.Resource, attrs.Subresource = resource, sub
		}
		if len(r.ResourceNames) > 0 {
			attrs.Name = r.ResourceNames[0]
		}
		if err := e.WaitAllowed(ctx, user, nil, attrs); err != nil {
			return nil, err
		}
	}
	return client.New(e.Impersonate(user), client.Options{Scheme: e.Scheme})
}
