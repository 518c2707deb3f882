package plugin

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	jobtokenv1alpha1 "github.com/jobtoken/jobtoken/api/v1alpha1"
)

// Chain states shown by status: what the operator can still do for the job's workers.
const (
	ChainHealthy          = "Healthy"          // a valid token is served and will be rotated
	ChainPending          = "Pending"          // no token yet
	ChainRefreshFailing   = "RefreshFailing"   // rotations fail and are retried
	ChainLost             = "Lost"             // the chain is dead and cannot be re-minted
	ChainStalled          = "Stalled"          // waits for a change to the spec or a Secret
	ChainRevoked          = "Revoked"          // the job ended and its tokens were revoked
	ChainRevocationFailed = "RevocationFailed" // the job ended; revocation did not succeed
	ChainUnhealthy        = "Unhealthy"        // anything else not Ready
)

// JobStatus is one line of `status`, and one item of its JSON and YAML output.
type JobStatus struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Phase     string `json:"phase"`
	// Issuer is kind/name of the issuer the job's tokens come from.
	Issuer         string       `json:"issuer"`
	TokenExpiresAt *metav1.Time `json:"tokenExpiresAt,omitempty"`
	// ExpiresInSeconds is the time left on the current access token when status ran
	// (negative once expired); absent without a token.
	ExpiresInSeconds *int64       `json:"expiresInSeconds,omitempty"`
	LastRotationTime *metav1.Time `json:"lastRotationTime,omitempty"`
	Rotations        int64        `json:"rotations"`
	Remints          int64        `json:"remints"`
	// Chain says whether the job's credentials are healthy (see the Chain constants).
	Chain string `json:"chain"`
	// Message explains a Chain other than Healthy (the condition's message).
	Message string `json:"message,omitempty"`
}

// StatusList is the JSON and YAML output of `status`.
type StatusList struct {
	Items []JobStatus `json:"items"`
}

func (o *options) statusCommand() *cobra.Command {
	var (
		allNamespaces bool
		output        string
	)
	cmd := &cobra.Command{
		Use:   "status [NAME]",
		Short: "Show ImportJobs: phase, time to expiry of the current token, last rotation, re-mints, issuer and chain health",
		Example: `  kubectl jobtoken status
  kubectl jobtoken status marc-import -n imports
  kubectl jobtoken status -A -o json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch output {
			case "", "wide", "json", "yaml":
			default:
				return fmt.Errorf("--output must be json, yaml or wide, not %q", output)
			}
			if allNamespaces && len(args) == 1 {
				return fmt.Errorf("a NAME cannot be combined with --all-namespaces")
			}
			c, err := o.connect()
			if err != nil {
				return err
			}
			var jobs []jobtokenv1alpha1.ImportJob
			if len(args) == 1 {
				job, err := c.job(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				jobs = append(jobs, *job)
			} else {
				list := &jobtokenv1alpha1.ImportJobList{}
				var opts []client.ListOption
				if !allNamespaces {
					opts = append(opts, client.InNamespace(c.ns))
				}
				if err := c.List(cmd.Context(), list, opts...); err != nil {
					return err
				}
				jobs = list.Items
			}
			now := o.clock.Now()
			rows := make([]JobStatus, 0, len(jobs))
			for i := range jobs {
				rows = append(rows, Summarize(&jobs[i], now))
			}
			slices.SortFunc(rows, func(a, b JobStatus) int {
				return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
			})
			return printStatus(o.streams.Out, rows, output, allNamespaces, now)
		},
	}
	cmd.Flags().BoolVarP(&allNamespaces, "all-namespaces", "A", false, "List the ImportJobs of every namespace.")
	cmd.Flags().StringVarP(&output, "output", "o", "", "Output format: json, yaml or wide (the chain's message too); a table by default.")
	return cmd
}

// Summarize turns an ImportJob into its status line as of now.
func Summarize(job *jobtokenv1alpha1.ImportJob, now time.Time) JobStatus {
	st := job.Status
	kind := string(job.Spec.IssuerRef.Kind)
	if kind == "" {
		kind = string(jobtokenv1alpha1.IssuerKindTokenIssuer)
	}
	s := JobStatus{
		Namespace:        job.Namespace,
		Name:             job.Name,
		Phase:            string(st.Phase),
		Issuer:           kind + "/" + job.Spec.IssuerRef.Name,
		TokenExpiresAt:   st.TokenExpiresAt,
		LastRotationTime: st.LastRotationTime,
		Rotations:        st.Rotations,
		Remints:          st.Remints,
	}
	if s.Phase == "" {
		s.Phase = string(jobtokenv1alpha1.PhasePending)
	}
	ended := st.Phase == jobtokenv1alpha1.PhaseSucceeded || st.Phase == jobtokenv1alpha1.PhaseFailed || st.Phase == jobtokenv1alpha1.PhaseExpired
	if st.TokenExpiresAt != nil && !ended {
		left := int64(st.TokenExpiresAt.Sub(now).Round(time.Second) / time.Second)
		s.ExpiresInSeconds = &left
	}
	s.Chain, s.Message = chainHealth(job, ended)
	return s
}

func chainHealth(job *jobtokenv1alpha1.ImportJob, ended bool) (string, string) {
	conds := job.Status.Conditions
	if ended {
		if c := meta.FindStatusCondition(conds, jobtokenv1alpha1.ConditionRevocationFailed); c != nil && c.Status == metav1.ConditionTrue {
			return ChainRevocationFailed, c.Message
		}
		if c := meta.FindStatusCondition(conds, jobtokenv1alpha1.ConditionRevoked); c != nil {
			if c.Status == metav1.ConditionTrue {
				return ChainRevoked, ""
			}
			return ChainUnhealthy, c.Message
		}
		return ChainPending, "revocation in progress"
	}
	for _, abnormal := range []struct{ cond, chain string }{
		{jobtokenv1alpha1.ConditionCredentialsLost, ChainLost},
		{jobtokenv1alpha1.ConditionStalled, ChainStalled},
		{jobtokenv1alpha1.ConditionTokenRefreshFailed, ChainRefreshFailing},
	} {
		if c := meta.FindStatusCondition(conds, abnormal.cond); c != nil && c.Status == metav1.ConditionTrue {
			return abnormal.chain, c.Message
		}
	}
	if job.Status.TokenExpiresAt == nil {
		msg := ""
		if c := meta.FindStatusCondition(conds, jobtokenv1alpha1.ConditionReady); c != nil {
			msg = c.Message
		}
		return ChainPending, msg
	}
	if meta.IsStatusConditionTrue(conds, jobtokenv1alpha1.ConditionReady) &&
		meta.IsStatusConditionTrue(conds, jobtokenv1alpha1.ConditionCredentialsReady) {
		return ChainHealthy, ""
	}
	for _, t := range []string{jobtokenv1alpha1.ConditionCredentialsReady, jobtokenv1alpha1.ConditionReady} {
		if c := meta.FindStatusCondition(conds, t); c != nil && c.Status != metav1.ConditionTrue {
			return ChainUnhealthy, c.Message
		}
	}
	return ChainUnhealthy, "not Ready"
}

func printStatus(w io.Writer, rows []JobStatus, output string, allNamespaces bool, now time.Time) error {
	switch output {
	case "json":
		data, err := json.MarshalIndent(StatusList{Items: rows}, "", "    ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", data)
		return err
	case "yaml":
		data, err := yaml.Marshal(StatusList{Items: rows})
		if err != nil {
			return err
		}
		_, err = w.Write(data)
		return err
	}
	if len(rows) == 0 {
		_, err := fmt.Fprintln(w, "No ImportJobs found.")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	header := "NAME\tPHASE\tEXPIRES IN\tLAST ROTATION\tROTATIONS\tREMINTS\tISSUER\tCHAIN"
	if allNamespaces {
		header = "NAMESPACE\t" + header
	}
	if output == "wide" {
		header += "\tMESSAGE"
	}
	// The tabwriter buffers; its Flush below reports a failed write.
	_, _ = fmt.Fprintln(tw, header)
	for _, r := range rows {
		line := fmt.Sprintf("%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s", r.Name, r.Phase, expiresIn(r), ago(r.LastRotationTime, now), r.Rotations, r.Remints, r.Issuer, r.Chain)
		if allNamespaces {
			line = r.Namespace + "\t" + line
		}
		if output == "wide" {
			line += "\t" + r.Message
		}
		_, _ = fmt.Fprintln(tw, line)
	}
	return tw.Flush()
}

func expiresIn(r JobStatus) string {
	switch {
	case r.ExpiresInSeconds == nil:
		return "-"
	case *r.ExpiresInSeconds <= 0:
		return "expired"
	default:
		return duration.HumanDuration(time.Duration(*r.ExpiresInSeconds) * time.Second)
	}
}

func ago(t *metav1.Time, now time.Time) string {
	if t == nil {
		return "never"
	}
	return duration.HumanDuration(now.Sub(t.Time)) + " ago"
}
