package controllers

import (
	"context"
	"errors"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	jobtokenv1alpha1 "github.com/jobtoken/jobtoken/api/v1alpha1"
)

// SetupWithManager registers the reconciler, defaulting its clock and tunables.
func (r *ImportJobReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	if r.APIReader == nil {
		r.APIReader = mgr.GetAPIReader()
	}
	if r.Recorder == nil {
		r.Recorder = mgr.GetEventRecorder("jobtoken-importjob")
	}
	if r.IssuerClients == nil {
		r.IssuerClients = NewIssuerClient
	}
	if r.RevocationBudget <= 0 {
		r.RevocationBudget = DefaultRevocationBudget
	}
	if r.MinRotationGap <= 0 {
		r.MinRotationGap = DefaultMinRotationGap
	}
	if r.MaxRetryBackoff <= 0 {
		r.MaxRetryBackoff = DefaultMaxRetryBackoff
	}
	if r.MaxConcurrentReconciles <= 0 {
		r.MaxConcurrentReconciles = 4
	}
	if r.VaultNamespace == "" {
		return errors.New("ImportJobReconciler: VaultNamespace is required")
	}
	if r.RotateNowMinInterval <= 0 {
		r.RotateNowMinInterval = DefaultRotateNowMinInterval
	}
	r.clients = newClientCache(r.IssuerClients, r.APIReader, DefaultClientMaxAge)
	if r.gates == nil {
		r.gates = newIssuerGates(r.IssuerLimits)
	}

	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &jobtokenv1alpha1.ImportJob{}, indexIssuerRef,
		func(o client.Object) []string {
			job := o.(*jobtokenv1alpha1.ImportJob)
			return []string{issuerIndexKey(job.Spec.IssuerRef.Kind, job.Namespace, job.Spec.IssuerRef.Name)}
		}); err != nil {
		return err
	}

	return ctrl.NewControllerManagedBy(mgr).
		For(&jobtokenv1alpha1.ImportJob{}, builder.WithPredicates(predicate.Or(
			predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}, deletionPredicate{}))).
		Owns(&batchv1.Job{}, builder.WithPredicates(notCreatePredicate{})).
		Owns(&corev1.Secret{}, builder.WithPredicates(notCreatePredicate{}, workerSecretChangedByOthers{})).
		Watches(&jobtokenv1alpha1.TokenIssuer{}, handler.EnqueueRequestsFromMapFunc(r.jobsOfIssuer(jobtokenv1alpha1.IssuerKindTokenIssuer)),
			builder.WithPredicates(issuerChangedPredicate{})).
		Watches(&jobtokenv1alpha1.ClusterTokenIssuer{}, handler.EnqueueRequestsFromMapFunc(r.jobsOfIssuer(jobtokenv1alpha1.IssuerKindClusterTokenIssuer)),
			builder.WithPredicates(issuerChangedPredicate{})).
		WithOptions(controller.Options{MaxConcurrentReconciles: r.MaxConcurrentReconciles}).
		Named("importjob").
		Complete(r)
}

func issuerIndexKey(kind jobtokenv1alpha1.IssuerKind, namespace, name string) string {
	if kind == jobtokenv1alpha1.IssuerKindClusterTokenIssuer {
		return string(kind) + "/" + name
	}
	return string(jobtokenv1alpha1.IssuerKindTokenIssuer) + "/" + namespace + "/" + name
}

// jobsOfIssuer maps an issuer change (Ready, new signing keys) to the jobs that use it.
func (r *ImportJobReconciler) jobsOfIssuer(kind jobtokenv1alpha1.IssuerKind) handler.MapFunc {
	return func(ctx context.Context, o client.Object) []reconcile.Request {
		list := &jobtokenv1alpha1.ImportJobList{}
		if err := r.List(ctx, list, client.MatchingFields{indexIssuerRef: issuerIndexKey(kind, o.GetNamespace(), o.GetName())}); err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "Listing the ImportJobs of an issuer failed", "issuer", o.GetName())
			return nil
		}
		reqs := make([]reconcile.Request, 0, len(list.Items))
		for _, j := range list.Items {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&j)})
		}
		return reqs
	}
}

// deletionPredicate passes the update that sets the deletion timestamp.
type deletionPredicate struct{ predicate.Funcs }

func (deletionPredicate) Update(e event.UpdateEvent) bool {
	return e.ObjectOld.GetDeletionTimestamp().IsZero() && !e.ObjectNew.GetDeletionTimestamp().IsZero()
}

// notCreatePredicate drops the create events of owned objects: the operator creates them
// itself, in a reconcile that goes on with them, and a second reconcile woken by the event
// would read the ImportJob from the cache before its status patch arrived and patch the
// same status again (an extra write per first credential). A restart lists every
// ImportJob anyway.
type notCreatePredicate struct{ predicate.Funcs }

func (notCreatePredicate) Create(event.CreateEvent) bool { return false }

// workerSecretChangedByOthers drops the updates of the worker Secret that carry a new token
// revision: the operator wrote them in the reconcile that rotated (same stale-cache
// reason). Deletions, and edits that keep the revision (someone else changed the Secret),
// still wake the ImportJob, which then rewrites the Secret.
type workerSecretChangedByOthers struct{ predicate.Funcs }

func (workerSecretChangedByOthers) Update(e event.UpdateEvent) bool {
	return e.ObjectOld.GetAnnotations()[jobtokenv1alpha1.AnnotationTokenRevision] ==
		e.ObjectNew.GetAnnotations()[jobtokenv1alpha1.AnnotationTokenRevision]
}
