package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	jobtokenv1alpha1 "github.com/jobtoken/jobtoken/api/v1alpha1"
	"github.com/jobtoken/jobtoken/internal/issuer"
)

// stepError carries how a step failed: waiting (requeue later, no error), or terminal
// (Stalled, no retry until something changes). Any other error is transient.
type stepError struct {
	reason   string
	msg      string
	terminal bool
	// after is the wait for a waiting error; zero uses the default re-check interval.
	after time.Duration
}

func (e *stepError) Error() string { return e.msg }

func terminal(reason, msg string) error { return &stepError{reason: reason, msg: msg, terminal: true} }

func waiting(reason, msg string, after time.Duration) error {
	return &stepError{reason: reason, msg: msg, after: after}
}

// errPassDone ends a pass that has nothing left to do (the job ended, or its chain is
// lost); the pass is requeued at the earliest wake-up its steps asked for.
var errPassDone = errors.New("nothing left to do in this pass")

// waitRecheck is how often a waiting ImportJob looks again (issuers also wake it on change).
const waitRecheck = 30 * time.Second

// handleError sorts a step's error into done, waiting, terminal and transient, and records it.
func (r *ImportJobReconciler) handleError(ctx context.Context, s *scope, err error) (ctrl.Result, error) {
	if errors.Is(err, errPassDone) {
		return ctrl.Result{RequeueAfter: s.requeueAfter}, nil
	}
	st := &s.job.Status
	if st.Phase == "" {
		st.Phase = jobtokenv1alpha1.PhasePending
	}
	var se *stepError
	var sec *secretError
	switch {
	case errors.As(err, &se) && se.terminal:
		r.setStalled(s, se.reason, se.msg)
		return ctrl.Result{}, reconcile.TerminalError(err)
	case errors.As(err, &se):
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{
			Type: jobtokenv1alpha1.ConditionReconciling, Status: metav1.ConditionTrue, Reason: se.reason, Message: se.msg,
		})
		after := se.after
		if after <= 0 {
			after = waitRecheck
		}
		return ctrl.Result{RequeueAfter: after}, nil
	case errors.As(err, &sec):
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{
			Type: jobtokenv1alpha1.ConditionReconciling, Status: metav1.ConditionTrue, Reason: sec.reason, Message: sec.msg,
		})
		return ctrl.Result{RequeueAfter: waitRecheck}, nil
	case apierrors.IsConflict(err):
		// Another writer moved the object first; start again from its state.
		return ctrl.Result{RequeueAfter: 50 * time.Millisecond}, nil
	}

	var ie *issuer.Error
	if !errors.As(err, &ie) {
		return ctrl.Result{}, err
	}
	if ie.Class == issuer.ClassConfiguration {
		r.setStalled(s, jobtokenv1alpha1.ReasonIssuerConfiguration, err.Error())
		return ctrl.Result{}, reconcile.TerminalError(err)
	}
	// Transient (or a dead chain of a first mint): retry with capped backoff, kept in status.
	st.FailedRotationAttempts++
	st.LastFailureTime = &metav1.Time{Time: s.now}
	backoff := max(r.nextRetry(s, s.now, issuer.RetryAfterOf(err)).Sub(s.now), 0).Round(time.Millisecond)
	msg := fmt.Sprintf("attempt %d failed: %v; retrying in %s", st.FailedRotationAttempts, err, backoff)
	if s.chain != nil && s.chain.AccessToken != "" && s.now.Before(s.chain.ExpiresAt) {
		msg += fmt.Sprintf("; the current token stays valid until %s", s.chain.ExpiresAt.UTC().Format(time.RFC3339))
	}
	reason := jobtokenv1alpha1.ReasonIssuerUnavailable
	if ie.Class == issuer.ClassDeadChain {
		reason = jobtokenv1alpha1.ReasonDeadChain
	}
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{
		Type: jobtokenv1alpha1.ConditionTokenRefreshFailed, Status: metav1.ConditionTrue, Reason: reason, Message: msg,
	})
	r.event(s.job, corev1.EventTypeWarning, EventRotationFailed, "Refresh", "%s", msg)
	ctrl.LoggerFrom(ctx).Info("Token request failed", "class", string(ie.Class), "attempt", st.FailedRotationAttempts, "retryIn", backoff.String(), "error", err.Error())
	return ctrl.Result{RequeueAfter: backoff}, nil
}

func (r *ImportJobReconciler) setStalled(s *scope, reason, msg string) {
	if !meta.IsStatusConditionTrue(s.job.Status.Conditions, jobtokenv1alpha1.ConditionStalled) {
		r.event(s.job, corev1.EventTypeWarning, EventStalled, "Reconcile", "%s", msg)
	}
	meta.SetStatusCondition(&s.job.Status.Conditions, metav1.Condition{
		Type: jobtokenv1alpha1.ConditionStalled, Status: metav1.ConditionTrue, Reason: reason, Message: msg,
	})
}

// summarize computes Ready and CredentialsReady from the rest of the status.
func (r *ImportJobReconciler) summarize(s *scope, reterr error) {
	st := &s.job.Status
	conds := &st.Conditions
	gen := s.job.Generation
	set := func(t string, status metav1.ConditionStatus, reason, msg string) {
		meta.SetStatusCondition(conds, metav1.Condition{Type: t, Status: status, Reason: reason, Message: msg, ObservedGeneration: gen})
	}
	validToken := st.TokenExpiresAt != nil && s.now.Before(st.TokenExpiresAt.Time) && !isEnded(st.Phase)
	if validToken {
		set(jobtokenv1alpha1.ConditionCredentialsReady, metav1.ConditionTrue, jobtokenv1alpha1.ReasonSucceeded,
			fmt.Sprintf("the worker Secret holds an access token valid until %s", st.TokenExpiresAt.UTC().Format(time.RFC3339)))
	} else {
		reason, msg := jobtokenv1alpha1.ReasonProgressing, "no valid access token yet"
		if isEnded(st.Phase) {
			reason, msg = string(st.Phase), "the job ended; its tokens are revoked"
		}
		set(jobtokenv1alpha1.ConditionCredentialsReady, metav1.ConditionFalse, reason, msg)
	}
	if reterr == nil && s.requeueAfter >= 0 && !meta.IsStatusConditionTrue(*conds, jobtokenv1alpha1.ConditionStalled) &&
		(validToken || isEnded(st.Phase)) {
		if c := meta.FindStatusCondition(*conds, jobtokenv1alpha1.ConditionReconciling); c != nil && validToken {
			meta.RemoveStatusCondition(conds, jobtokenv1alpha1.ConditionReconciling)
		}
		if validToken {
			st.ObservedGeneration = gen
		}
	}

	for _, t := range []string{jobtokenv1alpha1.ConditionStalled, jobtokenv1alpha1.ConditionCredentialsLost,
		jobtokenv1alpha1.ConditionRevocationFailed, jobtokenv1alpha1.ConditionReconciling, jobtokenv1alpha1.ConditionTokenRefreshFailed} {
		if c := meta.FindStatusCondition(*conds, t); c != nil && c.Status == metav1.ConditionTrue {
			ready := metav1.ConditionFalse
			if t == jobtokenv1alpha1.ConditionTokenRefreshFailed && validToken {
				// Still serving a valid token while retrying.
				ready = metav1.ConditionTrue
			}
			set(jobtokenv1alpha1.ConditionReady, ready, c.Reason, c.Message)
			return
		}
	}
	switch {
	case st.Phase == jobtokenv1alpha1.PhaseFailed:
		set(jobtokenv1alpha1.ConditionReady, metav1.ConditionFalse, jobtokenv1alpha1.ReasonJobFailed, "the Job failed; its tokens are revoked")
	case isEnded(st.Phase):
		c := meta.FindStatusCondition(*conds, jobtokenv1alpha1.ConditionRevoked)
		msg := "the job ended"
		if c != nil {
			msg = c.Message
		}
		set(jobtokenv1alpha1.ConditionReady, metav1.ConditionTrue, string(st.Phase), msg)
	case validToken:
		set(jobtokenv1alpha1.ConditionReady, metav1.ConditionTrue, jobtokenv1alpha1.ReasonSucceeded,
			fmt.Sprintf("token valid until %s; next rotation %s", st.TokenExpiresAt.UTC().Format(time.RFC3339), timeOrDash(st.NextRotationTime)))
	default:
		set(jobtokenv1alpha1.ConditionReady, metav1.ConditionFalse, jobtokenv1alpha1.ReasonProgressing, "minting the first token")
	}
}

func timeOrDash(t *metav1.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func isEnded(p jobtokenv1alpha1.ImportJobPhase) bool {
	return p == jobtokenv1alpha1.PhaseSucceeded || p == jobtokenv1alpha1.PhaseFailed || p == jobtokenv1alpha1.PhaseExpired
}

func apiequalityStatus(a, b *jobtokenv1alpha1.ImportJob) bool {
	return apiequality.Semantic.DeepEqual(a.Status, b.Status)
}
