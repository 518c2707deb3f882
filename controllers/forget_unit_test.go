package controllers

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"

	jobtokenv1alpha1 "github.com/jobtoken/jobtoken/api/v1alpha1"
	"github.com/jobtoken/jobtoken/internal/issuer"
	issuerfake "github.com/jobtoken/jobtoken/internal/issuer/fake"
)

// TestDeletedIssuerIsForgotten: the deletion of an issuer (seen as the object, or as
// the tombstone of a missed deletion) drops its client from every cache and its idle
// gate at once, not at the next use of another issuer; a gate with a request in flight
// stays until that request ends; other issuers keep theirs.
func TestDeletedIssuerIsForgotten(t *testing.T) {
	factory := func(context.Context, jobtokenv1alpha1.TokenIssuerSpec, string, SecretReader) (issuer.Client, error) {
		return issuerfake.New(), nil
	}
	caches := []*clientCache{newClientCache(factory, nil, time.Hour), newClientCache(factory, nil, time.Hour)}
	gates := newIssuerGates(IssuerLimits{})
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	for _, uid := range []types.UID{"a", "b", "c", "d"} {
		for _, c := range caches {
			if _, err := c.get(context.Background(), &issuerRef{Name: string(uid), UID: uid, Generation: 1}, now); err != nil {
				t.Fatal(err)
			}
		}
		release, busy := gates.acquire(uid, string(uid), now)
		if busy != nil {
			t.Fatal(busy.msg)
		}
		if uid != "c" {
			release()
		}
	}
	f := issuerForgetter{caches: caches, gates: gates}
	f.forget(&jobtokenv1alpha1.TokenIssuer{ObjectMeta: metav1.ObjectMeta{UID: "a"}})
	f.forget(toolscache.DeletedFinalStateUnknown{Key: "b", Obj: &jobtokenv1alpha1.ClusterTokenIssuer{ObjectMeta: metav1.ObjectMeta{UID: "b"}}})
	f.forget(&jobtokenv1alpha1.TokenIssuer{ObjectMeta: metav1.ObjectMeta{UID: "c"}})
	for i, c := range caches {
		c.mu.Lock()
		_, hasA := c.entries["a"]
		_, hasB := c.entries["b"]
		_, hasD := c.entries["d"]
		n := len(c.entries)
		c.mu.Unlock()
		if hasA || hasB || !hasD || n != 1 {
			t.Errorf("cache %d after the deletions: a %v, b %v, d %v, %d entries (want only d's)", i, hasA, hasB, hasD, n)
		}
	}
	gates.mu.Lock()
	_, gateA := gates.gates["a"]
	_, gateC := gates.gates["c"]
	_, gateD := gates.gates["d"]
	gates.mu.Unlock()
	if gateA || !gateC || !gateD {
		t.Errorf("gates after the deletions: a kept %v, c (request in flight) kept %v, d (not deleted) kept %v", gateA, gateC, gateD)
	}
}
