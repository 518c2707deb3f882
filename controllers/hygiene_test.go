//go:build integration

package controllers

import (
	"context"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// TestShippedNetworkPolicyAndPDB: config/default ships, for the manager's pods, a
// NetworkPolicy whose only ingress is the metrics port (egress stays open for the API
// server and issuers), and a PodDisruptionBudget that keeps one of its replicas up
// while letting a drain evict the other. The API server accepts both as rendered.
func TestShippedNetworkPolicyAndPDB(t *testing.T) {
	ctx := context.Background()
	objs, err := env.Render(ctx, "config/default")
	if err != nil {
		t.Fatal(err)
	}
	var (
		dep  *appsv1.Deployment
		nps  []*networkingv1.NetworkPolicy
		pdbs []*policyv1.PodDisruptionBudget
	)
	for _, o := range objs {
		var into runtime.Object
		switch o.GetKind() {
		case "Deployment":
			dep = &appsv1.Deployment{}
			into = dep
		case "NetworkPolicy":
			np := &networkingv1.NetworkPolicy{}
			nps, into = append(nps, np), np
		case "PodDisruptionBudget":
			pdb := &policyv1.PodDisruptionBudget{}
			pdbs, into = append(pdbs, pdb), pdb
		default:
			continue
		}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, into); err != nil {
			t.Fatal(err)
		}
		if o.GetKind() != "Deployment" {
			// The API server validates what kubectl apply would send.
			if err := env.Client.Create(ctx, o.DeepCopy(), client.DryRunAll); err != nil {
				t.Errorf("%s %s refused: %v", o.GetKind(), o.GetName(), err)
			}
		}
	}
	if dep == nil {
		t.Fatal("config/default renders no Deployment")
	}
	pods := labels.Set(dep.Spec.Template.Labels)
	if len(nps) != 1 {
		t.Fatalf("%d NetworkPolicies, want 1", len(nps))
	}
	np := nps[0]
	if np.Namespace != dep.Namespace || !selects(t, &np.Spec.PodSelector, pods) {
		t.Errorf("the NetworkPolicy does not select the manager's pods: %+v", np.Spec.PodSelector)
	}
	if len(np.Spec.PolicyTypes) != 1 || np.Spec.PolicyTypes[0] != networkingv1.PolicyTypeIngress {
		t.Errorf("policy types %v, want Ingress only (egress must reach the API server and issuers)", np.Spec.PolicyTypes)
	}
	metricsPort := int32(0)
	for _, c := range dep.Spec.Template.Spec.Containers {
		for _, p := range c.Ports {
			if p.Name == "https-metrics" {
				metricsPort = p.ContainerPort
			}
		}
	}
	for _, rule := range np.Spec.Ingress {
		if len(rule.Ports) != 1 || rule.Ports[0].Port == nil || rule.Ports[0].Port.IntVal != metricsPort {
			t.Errorf("an ingress rule opens more than the metrics port %d: %+v", metricsPort, rule.Ports)
		}
	}
	if len(np.Spec.Ingress) == 0 || metricsPort == 0 {
		t.Errorf("the metrics port (%d) is not reachable", metricsPort)
	}
	if len(pdbs) != 1 {
		t.Fatalf("%d PodDisruptionBudgets, want 1", len(pdbs))
	}
	pdb := pdbs[0]
	replicas := int32(1)
	if dep.Spec.Replicas != nil {
		replicas = *dep.Spec.Replicas
	}
	if pdb.Namespace != dep.Namespace || !selects(t, pdb.Spec.Selector, pods) || pdb.Spec.MinAvailable == nil ||
		pdb.Spec.MinAvailable.IntVal != 1 || replicas != 2 {
		t.Errorf("the PDB does not keep exactly one of the %d replicas: %+v", replicas, pdb.Spec)
	}
}

func selects(t *testing.T, sel *metav1.LabelSelector, set labels.Set) bool {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Fatal(err)
	}
	return !s.Empty() && s.Matches(set)
}
