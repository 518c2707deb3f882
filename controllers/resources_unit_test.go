package controllers

import (
	"context"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	jobtokenv1alpha1 "github.com/jobtoken/jobtoken/api/v1alpha1"
	"github.com/jobtoken/jobtoken/internal/issuer"
	issuerfake "github.com/jobtoken/jobtoken/internal/issuer/fake"
	"github.com/jobtoken/jobtoken/internal/scheme"
)

// TestClientCacheDropsUnusedIssuers: the client of an issuer that is no longer used
// (deleted, or its jobs gone) leaves the cache, with the client secret it holds, once
// it is as old as the cache's maximum age; used issuers stay cached.
func TestClientCacheDropsUnusedIssuers(t *testing.T) {
	builds := 0
	factory := func(context.Context, jobtokenv1alpha1.TokenIssuerSpec, string, SecretReader) (issuer.Client, error) {
		builds++
		return issuerfake.New(), nil
	}
	c := newClientCache(factory, nil, 10*time.Minute)
	t0 := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	ref := func(uid string) *issuerRef {
		return &issuerRef{Name: "TokenIssuer/ns/" + uid, UID: types.UID(uid), Generation: 1}
	}
	for i, uid := range []string{"a", "b", "c"} {
		if _, err := c.get(context.Background(), ref(uid), t0.Add(time.Duration(i)*time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.get(context.Background(), ref("a"), t0.Add(5*time.Minute)); err != nil || builds != 3 {
		t.Fatalf("a cached issuer was rebuilt (%d builds, %v)", builds, err)
	}
	// b and c are never asked for again (deleted). At t0+11m, a and b are as old as the
	// maximum age; a is rebuilt on use, b is dropped, c (built at t0+2m) stays.
	if _, err := c.get(context.Background(), ref("a"), t0.Add(11*time.Minute)); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	_, hasB := c.entries["b"]
	_, hasC := c.entries["c"]
	n := len(c.entries)
	c.mu.Unlock()
	if hasB || !hasC || n != 2 {
		t.Fatalf("after the maximum age: b cached %v, c cached %v, %d entries", hasB, hasC, n)
	}
	if _, err := c.get(context.Background(), ref("a"), t0.Add(13*time.Minute)); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	n = len(c.entries)
	c.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d entries, want only the issuer in use", n)
	}
}

// TestDeletedIssuerMetricsAreDropped: once an issuer is deleted, its request,
// duration, rotation and re-mint series are removed; other issuers' stay.
func TestDeletedIssuerMetricsAreDropped(t *testing.T) {
	gone, kept := issuerMetricName(false, "unit-ns", "gone"), issuerMetricName(true, "", "kept")
	for _, name := range []string{gone, kept} {
		cl := instrumentedClient{Client: issuerfake.New(), name: name}
		_, _ = cl.Mint(context.Background(), issuer.Grant{Type: issuer.GrantClientCredentials})
		rotations.WithLabelValues(name).Inc()
		remints.WithLabelValues(name, "SessionMaximum").Inc()
	}
	if seriesOf(t, gone) < 4 || seriesOf(t, kept) < 4 {
		t.Fatalf("the test issuers have too few series: %d, %d", seriesOf(t, gone), seriesOf(t, kept))
	}
	c := fake.NewClientBuilder().WithScheme(scheme.New()).Build()
	r := &TokenIssuerReconciler{Client: c, Recorder: events.NewFakeRecorder(10)}
	if _, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Namespace: "unit-ns", Name: "gone"}}); err != nil {
		t.Fatal(err)
	}
	if n := seriesOf(t, gone); n != 0 {
		t.Fatalf("%d series of the deleted issuer remain", n)
	}
	if seriesOf(t, kept) < 4 {
		t.Fatal("another issuer's series were removed")
	}
}

// seriesOf counts the series of the manager's registry labelled with the issuer.
func seriesOf(t *testing.T, name string) int {
	t.Helper()
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "issuer" && l.GetValue() == name {
					n++
				}
			}
		}
	}
	return n
}
