package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	jobtokenv1alpha1 "github.com/jobtoken/jobtoken/api/v1alpha1"
	"github.com/jobtoken/jobtoken/internal/issuer"
)

// reconcileDelete revokes the job's tokens and then releases the finalizer. It is
// idempotent: each pass starts from what is left.
func (r *ImportJobReconciler) reconcileDelete(ctx context.Context, s *scope) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(s.job, jobtokenv1alpha1.Finalizer) {
		return ctrl.Result{}, nil
	}
	if !isTerminal(s.job) {
		done, err := r.revokeAll(ctx, s, jobtokenv1alpha1.ReasonDeleted, "the ImportJob was deleted")
		if err != nil || !done {
			return ctrl.Result{RequeueAfter: s.requeueAfter}, err
		}
	}
	return ctrl.Result{}, r.releaseFinalizer(ctx, s)
}

// finish ends a job that is still present: records its phase, revokes its tokens, and
// releases the finalizer once nothing is left to revoke.
// Once the job has ended the pass is over: finish returns errPassDone when nothing
// failed.
func (r *ImportJobReconciler) finish(ctx context.Context, s *scope, phase jobtokenv1alpha1.ImportJobPhase, reason, msg string) error {
	s.job.Status.Phase = phase
	s.job.Status.NextRotationTime = nil
	done, err := r.revokeAll(ctx, s, reason, msg)
	if err != nil {
		return err
	}
	if done {
		if err := r.releaseFinalizer(ctx, s); err != nil {
			return err
		}
	}
	return errPassDone
}

func (r *ImportJobReconciler) releaseFinalizer(ctx context.Context, s *scope) error {
	if !controllerutil.ContainsFinalizer(s.job, jobtokenv1alpha1.Finalizer) {
		return nil
	}
	patch := client.MergeFrom(s.job.DeepCopy())
	controllerutil.RemoveFinalizer(s.job, jobtokenv1alpha1.Finalizer)
	status := s.job.Status.DeepCopy()
	if err := r.Patch(ctx, s.job, patch); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	s.job.Status = *status
	return nil
}

// revokeAll revokes every token the operator holds for the job, then deletes the
// worker and stored chains. Retries are bounded by RevocationBudget; past it the
// failure is recorded and the Secrets are deleted anyway, so nothing stays stuck.
// It returns done=false while a retry is scheduled (s.requeueAfter).
func (r *ImportJobReconciler) revokeAll(ctx context.Context, s *scope, reason, why string) (bool, error) {
	v, err := r.chains().get(ctx, s.job)
	if err != nil {
		return false, err
	}
	if v != nil && v.AccessToken != "" {
		// The last status write of the job carries its final counters and token times,
		// which routine writes may have left behind.
		s.chain = v
		r.projectChain(s)
	}
	st := &s.job.Status
	revokeErr := error(nil)
	if v != nil && (v.AccessToken != "" || v.RefreshToken != "" || len(v.Replaced) > 0) {
		if st.RevocationStartTime == nil {
			st.RevocationStartTime = &metav1.Time{Time: s.now}
		}
		revokeErr = r.revokeTokens(ctx, s, v)
		var gone *issuerGoneError
		if errors.As(revokeErr, &gone) {
			return true, r.skipRevocation(ctx, s, v, gone, reason, why)
		}
		if revokeErr != nil {
			elapsed := s.now.Sub(st.RevocationStartTime.Time)
			if elapsed < r.RevocationBudget {
				wait := elapsed / 4
				wait = min(max(wait, firstRetryBackoff), maxRevocationRetryBackoff, r.RevocationBudget-elapsed)
				msg := fmt.Sprintf("%s; revoking its tokens failed (%v), retrying in %s", why, revokeErr, wait.Round(time.Millisecond))
				// A revocation waits for its issuer's gate like any token request; the
				// budget still bounds the wait, so a busy issuer cannot hold the finalizer.
				var busy *issuerBusy
				if errors.As(revokeErr, &busy) {
					wait = min(busy.after, r.RevocationBudget-elapsed)
					msg = fmt.Sprintf("%s; revoking its tokens waits for the issuer: %s", why, busy.msg)
				}
				meta.SetStatusCondition(&st.Conditions, metav1.Condition{
					Type: jobtokenv1alpha1.ConditionReconciling, Status: metav1.ConditionTrue, Reason: reason, Message: msg,
				})
				s.wakeIn(wait)
				return false, nil
			}
		}
	}
	if err := r.deleteWorkerSecret(ctx, s); err != nil {
		return false, err
	}
	if err := r.chains().delete(ctx, v); err != nil {
		return false, err
	}
	meta.RemoveStatusCondition(&st.Conditions, jobtokenv1alpha1.ConditionReconciling)
	meta.RemoveStatusCondition(&st.Conditions, jobtokenv1alpha1.ConditionTokenRefreshFailed)
	meta.RemoveStatusCondition(&st.Conditions, jobtokenv1alpha1.ConditionSessionExpiring)
	st.NextRotationTime = nil
	forgetTokenMetrics(s.job)
	if revokeErr != nil {
		msg := fmt.Sprintf("%s; revocation did not succeed within %s (%v): the tokens end at their own expiry, %s at the latest",
			why, r.RevocationBudget, revokeErr, timeOrDash(st.TokenExpiresAt))
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{
			Type: jobtokenv1alpha1.ConditionRevocationFailed, Status: metav1.ConditionTrue, Reason: jobtokenv1alpha1.ReasonRevocationBudgetSpent, Message: msg,
		})
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{
			Type: jobtokenv1alpha1.ConditionRevoked, Status: metav1.ConditionFalse, Reason: jobtokenv1alpha1.ReasonRevocationBudgetSpent, Message: msg,
		})
		revocations.WithLabelValues("failed").Inc()
		r.event(s.job, corev1.EventTypeWarning, EventRevocationFailed, "Revoke", "%s", msg)
		return true, nil
	}
	msg := why + "; every token of the job was revoked and its Secrets deleted"
	if v == nil || v.AccessToken == "" && v.RefreshToken == "" {
		msg = why + "; no token had been issued"
	}
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{
		Type: jobtokenv1alpha1.ConditionRevoked, Status: metav1.ConditionTrue, Reason: reason, Message: msg,
	})
	revocations.WithLabelValues("success").Inc()
	r.event(s.job, corev1.EventTypeNormal, EventRevoked, "Revoke", "%s", msg)
	return true, nil
}

// revokeTokens revokes the pair through the dialect of the issuer that minted it, which
// the stored chain records; the issuer the job names now is never asked. It fails with an
// *issuerGoneError when that issuer no longer exists as the same object.
// A token redeemed from the submitter is never revoked: only what the operator minted.
func (r *ImportJobReconciler) revokeTokens(ctx context.Context, s *scope, v *storedChain) error {
	if v.AccessToken == "" && v.RefreshToken == "" && len(v.Replaced) == 0 {
		return nil
	}
	bound, ok := recordedBinding(v.secret)
	if !ok {
		// A chain stored before issuers were recorded and never read since: the
		// issuer the job names, whatever its UID.
		bound = newIssuerBinding(s.job.Spec.IssuerRef.Kind, s.job.Namespace, s.job.Spec.IssuerRef.Name, "")
	}
	ref, err := getBoundIssuer(ctx, r.Client, bound, r.VaultNamespace)
	if err != nil {
		return err
	}
	cl, err := r.clients.get(ctx, ref, s.now)
	if err != nil {
		return err
	}
	release, busy := r.gates.acquire(ref.UID, ref.Name, s.now)
	if busy != nil {
		return busy
	}
	defer release()
	return cl.Revoke(ctx, issuer.Revocation{AccessToken: v.AccessToken, RefreshToken: v.RefreshToken, Replaced: v.Replaced})
}

// skipRevocation ends a job whose chain's issuer is gone or was replaced: its tokens
// are not sent anywhere else, they end at their own expiry at the issuer that minted
// them. The Secrets are deleted as after a revocation.
func (r *ImportJobReconciler) skipRevocation(ctx context.Context, s *scope, v *storedChain, gone *issuerGoneError, reason, why string) error {
	if err := r.deleteWorkerSecret(ctx, s); err != nil {
		return err
	}
	if err := r.chains().delete(ctx, v); err != nil {
		return err
	}
	st := &s.job.Status
	meta.RemoveStatusCondition(&st.Conditions, jobtokenv1alpha1.ConditionReconciling)
	meta.RemoveStatusCondition(&st.Conditions, jobtokenv1alpha1.ConditionTokenRefreshFailed)
	meta.RemoveStatusCondition(&st.Conditions, jobtokenv1alpha1.ConditionSessionExpiring)
	st.NextRotationTime = nil
	forgetTokenMetrics(s.job)
	msg := fmt.Sprintf("%s; %s, so the job's tokens were not revoked and are sent to no other issuer: they end at their own expiry, %s at the latest for the access token",
		why, gone.Error(), timeOrDash(st.TokenExpiresAt))
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{
		Type: jobtokenv1alpha1.ConditionRevoked, Status: metav1.ConditionFalse, Reason: jobtokenv1alpha1.ReasonIssuerChanged, Message: msg,
	})
	revocations.WithLabelValues("skipped").Inc()
	r.event(s.job, corev1.EventTypeWarning, EventRevocationSkipped, "Revoke", "%s", msg)
	ctrl.LoggerFrom(ctx).Info("Revocation skipped: the chain's issuer is gone", "reason", reason, "issuer", gone.recorded.String())
	return nil
}

func (r *ImportJobReconciler) deleteWorkerSecret(ctx context.Context, s *scope) error {
	secret := &corev1.Secret{}
	err := r.Get(ctx, client.ObjectKey{Namespace: s.job.Namespace, Name: workerSecretName(s.job)}, secret)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if !metav1.IsControlledBy(secret, s.job) {
		return nil
	}
	if err := r.Delete(ctx, secret); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete worker Secret %s/%s: %w", secret.Namespace, secret.Name, err)
	}
	return nil
}
