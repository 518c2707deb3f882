//go:build integration

package controllers

import (
	"context"
	"testing"

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
	var sa string
	for _, o := range objs {
		if o.GetKind() == "ServiceAccount" {
			sa = o.GetNamespace() + "/" + o.GetName()
		}
	}
	if sa == "" {
		t.Fatal("config/default renders no ServiceAccount")
	}
	// No RESTMapper: every rule of every binding is listed, as bound.
	got, err := testenv.EffectiveRules(objs, sa, nil)
	if err != nil {
		t.Fatal(err)
	}
	if diff, err := testenv.CompareRules(got, expectedRulesFile); err != nil {
		t.Fatal(err)
	} else if diff != "" {
		t.Fatalf("the manager's rules differ from %s (update it when the change is intended, so that it is reviewed):\n%s",
			expectedRulesFile, diff)
	}
}
