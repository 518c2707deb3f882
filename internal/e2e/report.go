package e2e

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	jobtokenv1alpha1 "github.com/jobtoken/jobtoken/api/v1alpha1"
)

func itoa(n int) string { return strconv.Itoa(n) }

// check lists every way the run fell short; an empty list is a pass.
func (r *Report) check(o Options) []string {
	var p []string
	m, off, f := r.Main, r.Off, r.Failing
	if m.RecordsImported != m.RecordsExpected {
		p = append(p, fmt.Sprintf("%s: %d of %d records imported", m.Name, m.RecordsImported, m.RecordsExpected))
	}
	if m.Issuer401 != 0 {
		p = append(p, fmt.Sprintf("%s: %d HTTP 401s at the issuer", m.Name, m.Issuer401))
	}
	if m.JobCondition != "Complete" || m.Phase != jobtokenv1alpha1.PhaseSucceeded {
		p = append(p, fmt.Sprintf("%s: Job %q, ImportJob %q (want Complete, Succeeded)", m.Name, m.JobCondition, m.Phase))
	}
	if f.JobCondition != "Failed" || f.Phase != jobtokenv1alpha1.PhaseFailed {
		p = append(p, fmt.Sprintf("%s: Job %q, ImportJob %q (want Failed, Failed)", f.Name, f.JobCondition, f.Phase))
	}
	if off.JobCondition != "Complete" || off.Phase != jobtokenv1alpha1.PhaseSucceeded {
		p = append(p, fmt.Sprintf("%s: Job %q, ImportJob %q (want Complete, Succeeded)", off.Name, off.JobCondition, off.Phase))
	}
	for _, j := range []*JobResult{m, off, f} {
		if !j.Revoked || !j.WorkerSecretGone || !j.VaultSecretGone {
			p = append(p, fmt.Sprintf("%s: Revoked %v, worker Secret gone %v, vault Secret gone %v", j.Name, j.Revoked, j.WorkerSecretGone, j.VaultSecretGone))
		}
	}
	if m.TokensActiveAfterEnd != 0 || off.TokensActiveAfterEnd != 0 {
		p = append(p, fmt.Sprintf("tokens still active after the end: %d (main issuer), %d (slow issuer)", m.TokensActiveAfterEnd, off.TokensActiveAfterEnd))
	}
	if r.RefreshReuse != 0 {
		p = append(p, fmt.Sprintf("the issuers saw %d refresh-token replays", r.RefreshReuse))
	}
	if !r.Failover.Done {
		p = append(p, "the manager failover did not happen")
	}
	if r.PropagationOn.N == 0 {
		p = append(p, "no propagation sample with nudging on")
	} else if r.PropagationOn.Max+2*time.Duration(float64(time.Second)/o.Rate) > o.Budget {
		p = append(p, fmt.Sprintf("propagation with nudging on reached %s: the budget %s leaves no margin", r.PropagationOn.Max.Round(10*time.Millisecond), o.Budget))
	}
	if r.PropagationOff.N == 0 {
		p = append(p, "no propagation sample with nudging off")
	}
	return p
}

// Print writes the table.
func (r *Report) Print(w io.Writer, o Options) {
	o.Defaults()
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(what, value, source string) { _, _ = fmt.Fprintf(tw, "%s\t%s\t%s\n", what, value, source) }
	_, _ = fmt.Fprintln(tw, "\nWHAT\tVALUE\tWHERE IT COMES FROM")
	row("cluster start", r.ClusterStart.Round(100*time.Millisecond).String(), "runner: processes started to node Ready")
	row("manager available", r.ManagerReady.Round(100*time.Millisecond).String(), "kubectl apply -k config/default to 2 available replicas and a lease holder")
	row("API server from pods", r.APIService, "the managers' in-cluster config; kube-proxy (iptables) rules")
	for _, p := range r.ManagerPods {
		row("  manager pod", p, "pod spec and status (image ID from containerd)")
	}
	for _, j := range []*JobResult{r.Main, r.Off} {
		if j == nil {
			continue
		}
		row(j.Name+": records", fmt.Sprintf("%d of %d imported (%d workers)", j.RecordsImported, j.RecordsExpected, j.Workers), "issuer: 200s at its protected resource")
		row(j.Name+": HTTP 401", fmt.Sprint(j.Issuer401), "issuer: 401s at its protected resource")
		row(j.Name+": rotations", fmt.Sprintf("%d (%d Secret writes seen)", j.Rotations, j.Writes), "ImportJob status; watch on the worker Secret")
		for _, s := range j.WorkerSummaries {
			row("  worker", s, "container log (example-worker -json)")
		}
	}
	row("propagation, nudging on", r.PropagationOn.String(), fmt.Sprintf("Secret write (watch) to first use of that token or a newer one by each pod (issuer), resolution %s", time.Duration(float64(time.Second)/o.Rate).Round(time.Millisecond)))
	row("propagation, nudging off", r.PropagationOff.String(), "the same, resolution 500ms: the kubelet's periodic sync")
	if r.Main != nil {
		row("propagation budget (on)", o.Budget.String(), "ImportJob "+r.Main.Name+" spec.rotation.propagationBudget")
	}
	fo := "not done"
	if r.Failover.Done {
		fo = fmt.Sprintf("%s deleted, %s leads after %s", r.Failover.Deleted, r.Failover.NewLeader, r.Failover.Takeover.Round(100*time.Millisecond))
	}
	row("manager failover", fo, "kubectl delete pod --force --grace-period=0; the Lease's holder")
	row("refresh-token replays", fmt.Sprint(r.RefreshReuse), "issuers' reuse counters")
	for _, j := range []*JobResult{r.Main, r.Off, r.Failing} {
		if j == nil {
			continue
		}
		row(j.Name+": end", fmt.Sprintf("Job %s, ImportJob %s, Revoked %v (%s after the Job's end)", j.JobCondition, j.Phase, j.Revoked, j.EndToRevoked.Round(time.Second)), "Job condition (Job controller); ImportJob status; both times to the second")
		row(j.Name+": Secrets", fmt.Sprintf("worker Secret gone %v, vault Secret gone %v", j.WorkerSecretGone, j.VaultSecretGone), "API server")
	}
	if r.Main != nil && r.Off != nil {
		row("tokens active after the end", fmt.Sprintf("%d of %d (main issuer), %d of %d (slow issuer)", r.Main.TokensActiveAfterEnd, r.Main.TokensMinted, r.Off.TokensActiveAfterEnd, r.Off.TokensMinted), "issuer introspection of every token it minted")
	}
	row("elapsed", r.Elapsed.Round(time.Second).String(), "")
	_ = tw.Flush()
	if len(r.Problems) == 0 {
		_, _ = fmt.Fprintln(w, "\nPASS")
		return
	}
	_, _ = fmt.Fprintln(w, "\nFAIL:\n  "+strings.Join(r.Problems, "\n  "))
}
