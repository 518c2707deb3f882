package controllers

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	jobtokenv1alpha1 "github.com/jobtoken/jobtoken/api/v1alpha1"
)

// editVault changes the annotations of the unit job's vault Secret.
func (u *unitEnv) editVault(edit func(map[string]string)) {
	u.t.Helper()
	s := &corev1.Secret{}
	key := client.ObjectKey{Namespace: "vault", Name: "importjob-uid-1"}
	if err := u.r.Get(context.Background(), key, s); err != nil {
		u.t.Fatal(err)
	}
	if s.Annotations == nil {
		s.Annotations = map[string]string{}
	}
	edit(s.Annotations)
	if err := u.r.Update(context.Background(), s); err != nil {
		u.t.Fatal(err)
	}
}

// A chain stored before issuers were recorded is bound to the current issuer on its
// first read, and goes on rotating there.
func TestUnrecordedChainIsBound(t *testing.T) {
	u := newUnitEnv(t, jobtokenv1alpha1.GrantPassword, interceptor.Funcs{})
	u.start()
	u.editVault(func(a map[string]string) {
		delete(a, annotationChainIssuer)
		delete(a, annotationChainIssuerUID)
	})
	u.clock.Step(31 * time.Second)
	if _, err := u.reconcile(); err != nil {
		t.Fatal(err)
	}
	s := u.chain().secret
	if got := s.Annotations[annotationChainIssuer]; got != "TokenIssuer/ns/idp" {
		t.Errorf("recorded issuer = %q, want TokenIssuer/ns/idp", got)
	}
	if got := s.Annotations[annotationChainIssuerUID]; got != "issuer-uid" {
		t.Errorf("recorded issuer UID = %q, want issuer-uid", got)
	}
	if u.job().Status.Rotations != 1 {
		t.Errorf("rotations = %d, want 1 after binding", u.job().Status.Rotations)
	}
}

// A chain recorded with another issuer, or with the same name and another UID, is
// never refreshed, re-minted or revoked: the job stalls and the chain stays as it is.
func TestChainOfAnotherIssuerIsNotSent(t *testing.T) {
	for name, edit := range map[string]func(map[string]string){
		"other name": func(a map[string]string) { a[annotationChainIssuer] = "TokenIssuer/ns/other" },
		"other kind": func(a map[string]string) { a[annotationChainIssuer] = "ClusterTokenIssuer/ns/idp" },
		"other UID":  func(a map[string]string) { a[annotationChainIssuerUID] = "deleted-issuer-uid" },
	} {
		t.Run(name, func(t *testing.T) {
			u := newUnitEnv(t, jobtokenv1alpha1.GrantPassword, interceptor.Funcs{})
			u.start()
			u.editVault(edit)
			before := u.chain()
			calls := len(u.issuer.Calls())
			u.clock.Step(31 * time.Second)
			if _, err := u.reconcile(); err == nil {
				t.Fatal("reconcile succeeded, want a terminal error")
			}
			c := meta.FindStatusCondition(u.job().Status.Conditions, jobtokenv1alpha1.ConditionStalled)
			if c == nil || c.Reason != jobtokenv1alpha1.ReasonIssuerChanged || !strings.Contains(c.Message, "TokenIssuer/ns/idp (uid issuer-uid)") {
				t.Fatalf("want Stalled/IssuerChanged naming the current issuer, got %+v", c)
			}
			if strings.Contains(c.Message, before.RefreshToken) || strings.Contains(c.Message, before.AccessToken) {
				t.Error("the condition holds token bytes")
			}
			after := u.chain()
			if after.RefreshToken != before.RefreshToken || after.Generation != before.Generation || after.InFlight != "" {
				t.Error("the chain changed")
			}

			job := u.job()
			if err := u.r.Delete(context.Background(), job); err != nil {
				t.Fatal(err)
			}
			if _, err := u.reconcile(); err != nil {
				t.Fatal(err)
			}
			if got := u.issuer.Calls()[calls:]; len(got) != 0 {
				t.Errorf("issuer calls after the chain was bound elsewhere: %v", got)
			}
		})
	}
}
