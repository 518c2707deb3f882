package plugin

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"
	"sigs.k8s.io/controller-runtime/pkg/client"

	jobtokenv1alpha1 "github.com/jobtoken/jobtoken/api/v1alpha1"
)

// fieldOwner names the plugin's writes in managedFields and the audit log.
const fieldOwner = "kubectl-jobtoken"

func (o *options) rotateCommand() *cobra.Command {
	timeout := time.Minute
	cmd := &cobra.Command{
		Use:   "rotate NAME",
		Short: "Ask the operator to rotate the job's access token now, and wait for the new one",
		Long: `rotate sets the jobtoken.dev/rotate-now annotation on the ImportJob, waits until the operator
has written a new access token for the workers, and prints its expiry (never the token).`,
		Example: `  kubectl jobtoken rotate marc-import -n imports`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.connect()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			job, err := c.job(ctx, args[0])
			if err != nil {
				return err
			}
			if job.Status.Phase != jobtokenv1alpha1.PhaseRunning {
				return fmt.Errorf("importjob/%s is %s, not Running: only a running job's token can be rotated", job.Name, Summarize(job, o.clock.Now()).Phase)
			}
			before := job.Status.TokenRevision
			patch := client.MergeFrom(job.DeepCopy())
			metav1.SetMetaDataAnnotation(&job.ObjectMeta, jobtokenv1alpha1.AnnotationRotateNow, o.clock.Now().UTC().Format(time.RFC3339))
			if err := c.Patch(ctx, job, patch, client.FieldOwner(fieldOwner)); err != nil {
				return fmt.Errorf("set the %s annotation: %w", jobtokenv1alpha1.AnnotationRotateNow, err)
			}
			// Progress goes to stderr; a failed write there must not fail the rotation.
			_, _ = fmt.Fprintf(o.streams.ErrOut, "importjob/%s: rotation requested, waiting for the new token\n", job.Name)
			err = o.waitFor(ctx, timeout, "importjob/"+job.Name+" to be rotated", func(ctx context.Context) (bool, error) {
				j, err := c.job(ctx, job.Name)
				if err != nil {
					return false, err
				}
				job = j
				if j.Status.Phase != jobtokenv1alpha1.PhaseRunning {
					return false, fmt.Errorf("importjob/%s became %s while waiting for its rotation", j.Name, j.Status.Phase)
				}
				_, pending := j.Annotations[jobtokenv1alpha1.AnnotationRotateNow]
				return j.Status.TokenRevision > before && !pending, nil
			})
			if err != nil {
				return err
			}
			exp := job.Status.TokenExpiresAt
			if exp == nil {
				return fmt.Errorf("importjob/%s was rotated but records no token expiry", job.Name)
			}
			_, err = fmt.Fprintf(o.streams.Out, "importjob/%s rotated: token revision %d expires at %s (in %s)\n", job.Name,
				job.Status.TokenRevision, exp.UTC().Format(time.RFC3339), duration.HumanDuration(exp.Sub(o.clock.Now())))
			return err
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", timeout, "How long to wait for the new token.")
	return cmd
}

func (o *options) revokeCommand() *cobra.Command {
	timeout := time.Minute
	cmd := &cobra.Command{
		Use:   "revoke NAME",
		Short: "End the job's credentials now: revoke its tokens at the issuer; the Job keeps running",
		Long: `revoke ends an ImportJob's credentials at once, the way maxLifetime does: it sets
spec.rotation.maxLifetime to the job's age, so the operator revokes every token of the job
at the issuer, deletes its Secrets and moves it to phase Expired. The batch Job is left
alone; its workers get no further tokens. It waits until the revocation is recorded.`,
		Example: `  kubectl jobtoken revoke marc-import -n imports`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.connect()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			job, err := c.job(ctx, args[0])
			if err != nil {
				return err
			}
			switch job.Status.Phase {
			case jobtokenv1alpha1.PhaseSucceeded, jobtokenv1alpha1.PhaseFailed, jobtokenv1alpha1.PhaseExpired:
				return fmt.Errorf("importjob/%s has already ended (%s): its credentials were ended then", job.Name, job.Status.Phase)
			}
			if job.Status.StartTime == nil {
				return fmt.Errorf("importjob/%s has not started (status.startTime is empty): delete it instead", job.Name)
			}
			// maxLifetime is measured from status.startTime; the job's age, rounded up to
			// whole seconds, has already passed, so the operator ends it on its next pass.
			age := o.clock.Now().Sub(job.Status.StartTime.Time).Truncate(time.Second) + time.Second
			patch := client.MergeFrom(job.DeepCopy())
			job.Spec.Rotation.MaxLifetime = &metav1.Duration{Duration: age}
			if err := c.Patch(ctx, job, patch, client.FieldOwner(fieldOwner)); err != nil {
				return fmt.Errorf("set spec.rotation.maxLifetime: %w", err)
			}
			_, _ = fmt.Fprintf(o.streams.ErrOut, "importjob/%s: spec.rotation.maxLifetime set to %s, waiting for the revocation\n", job.Name, age)
			err = o.waitFor(ctx, timeout, "importjob/"+job.Name+" to be revoked", func(ctx context.Context) (bool, error) {
				j, err := c.job(ctx, job.Name)
				if err != nil {
					return false, err
				}
				job = j
				return meta.FindStatusCondition(j.Status.Conditions, jobtokenv1alpha1.ConditionRevoked) != nil ||
					meta.IsStatusConditionTrue(j.Status.Conditions, jobtokenv1alpha1.ConditionRevocationFailed), nil
			})
			if err != nil {
				return err
			}
			if c := meta.FindStatusCondition(job.Status.Conditions, jobtokenv1alpha1.ConditionRevoked); c != nil && c.Status == metav1.ConditionTrue {
				_, err := fmt.Fprintf(o.streams.Out, "importjob/%s revoked: phase %s; the Job %s is left running without credentials\n", job.Name, job.Status.Phase, job.Status.JobName)
				return err
			}
			msg := ""
			for _, t := range []string{jobtokenv1alpha1.ConditionRevocationFailed, jobtokenv1alpha1.ConditionRevoked} {
				if c := meta.FindStatusCondition(job.Status.Conditions, t); c != nil && c.Message != "" {
					msg = c.Message
					break
				}
			}
			return fmt.Errorf("importjob/%s: the revocation did not succeed: %s", job.Name, msg)
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", timeout, "How long to wait for the revocation to be recorded.")
	return cmd
}
