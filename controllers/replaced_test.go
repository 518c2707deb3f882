//go:build integration

package controllers

import (
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	"k8s.io/apimachinery/pkg/api/meta"

	jobtokenv1alpha1 "github.com/jobtoken/jobtoken/api/v1alpha1"
	"github.com/jobtoken/jobtoken/internal/devissuer"
	"github.com/jobtoken/jobtoken/internal/testenv"
)

// A chain replaced after a lost answer lives on at the issuer (the dropped answer
// rotated it); the job's end revokes it with the current one, so no family of the job
// outlives it.
func TestReplacedChainRevokedAtTheEnd(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.startManager(managerOptions{})
	job := h.runningJob("replaced", jobtokenv1alpha1.GrantPassword)

	h.issuer.SetFaults(devissuer.Faults{CommitThenDrop: 1})
	testenv.Eventually(h.t, 30*time.Second, "a re-mint after the dropped refresh", func() bool { return h.getJob(job.Name).Status.Remints >= 1 })
	before := h.issuer.Counters()
	if before.ActiveFamilies != 2 {
		t.Fatalf("%d families alive at the issuer before the end, want 2 (the replaced chain and the current one): the check would prove nothing", before.ActiveFamilies)
	}

	h.markJob(job.Name, batchv1.JobComplete)
	testenv.Eventually(h.t, 20*time.Second, "revocation after completion", func() bool {
		j := h.getJob(job.Name)
		return j.Status.Phase == jobtokenv1alpha1.PhaseSucceeded && meta.IsStatusConditionTrue(j.Status.Conditions, jobtokenv1alpha1.ConditionRevoked)
	})
	after := h.issuer.Counters()
	if got := after.FamiliesRevokedByReason[devissuer.ReasonRevoked] - before.FamiliesRevokedByReason[devissuer.ReasonRevoked]; got != 2 {
		t.Errorf("the issuer ended %d families at the end, want 2", got)
	}
	if after.ActiveFamilies != 0 {
		t.Errorf("%d families still active at the issuer after the end", after.ActiveFamilies)
	}
	h.assertNoReuse()
}
