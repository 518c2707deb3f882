package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	jobtokenv1alpha1 "github.com/jobtoken/jobtoken/api/v1alpha1"
	"github.com/jobtoken/jobtoken/internal/issuer"
)

// DefaultIssuerCheckInterval is how often an issuer's discovery and signing keys are checked.
const DefaultIssuerCheckInterval = 30 * time.Second

// TokenIssuerReconciler checks TokenIssuers (or, with Cluster set, ClusterTokenIssuers):
// it validates the spec, resolves the client secret, runs discovery, reads the signing
// keys, and sets Ready with a reason users can act on.
type TokenIssuerReconciler struct {
	client.Client
	APIReader client.Reader
	Recorder  events.EventRecorder
	Clock     clock.PassiveClock
	// Cluster selects ClusterTokenIssuers, whose Secrets live in VaultNamespace.
	Cluster        bool
	VaultNamespace string
	IssuerClients  IssuerClientFactory
	// CheckInterval is how often a Ready issuer is checked again (signing-key changes
	// are seen within it).
	CheckInterval time.Duration
}

// endpointer is implemented by dialects that know their endpoints.
type endpointer interface{ Endpoints() issuer.Endpoints }

// SetupWithManager registers the reconciler.
func (r *TokenIssuerReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	if r.APIReader == nil {
		r.APIReader = mgr.GetAPIReader()
	}
	if r.IssuerClients == nil {
		r.IssuerClients = NewIssuerClient
	}
	if r.CheckInterval <= 0 {
		r.CheckInterval = DefaultIssuerCheckInterval
	}
	name := "tokenissuer"
	var obj client.Object = &jobtokenv1alpha1.TokenIssuer{}
	if r.Cluster {
		name, obj = "clustertokenissuer", &jobtokenv1alpha1.ClusterTokenIssuer{}
	}
	if r.Recorder == nil {
		r.Recorder = mgr.GetEventRecorder("jobtoken-" + name)
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(obj, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Named(name).
		Complete(r)
}

// Reconcile checks one issuer.
func (r *TokenIssuerReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var (
		obj             client.Object
		spec            *jobtokenv1alpha1.TokenIssuerSpec
		status          *jobtokenv1alpha1.TokenIssuerStatus
		secretNamespace string
	)
	if r.Cluster {
		o := &jobtokenv1alpha1.ClusterTokenIssuer{}
		obj, spec, status, secretNamespace = o, &o.Spec.TokenIssuerSpec, &o.Status, r.VaultNamespace
	} else {
		o := &jobtokenv1alpha1.TokenIssuer{}
		obj, spec, status, secretNamespace = o, &o.Spec, &o.Status, req.Namespace
	}
	if err := r.Get(ctx, req.NamespacedName, obj); err != nil {
		if apierrors.IsNotFound(err) {
			forgetIssuerMetrics(issuerMetricName(r.Cluster, req.Namespace, req.Name))
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	log := ctrl.LoggerFrom(ctx).WithValues("issuer", klog.KObj(obj))
	ctx = ctrl.LoggerInto(ctx, log)
	before := status.DeepCopy()
	now := r.Clock.Now()

	ready, reason, msg := r.check(ctx, spec, status, secretNamespace)
	status.LastCheckTime = &metav1.Time{Time: now}
	status.ObservedGeneration = obj.GetGeneration()
	cond := metav1.Condition{Type: jobtokenv1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: reason, Message: msg, ObservedGeneration: obj.GetGeneration()}
	if ready {
		cond.Status = metav1.ConditionTrue
	}
	wasReady := meta.IsStatusConditionTrue(before.Conditions, jobtokenv1alpha1.ConditionReady)
	meta.SetStatusCondition(&status.Conditions, cond)
	if spec.InsecureAllowPlainHTTP {
		const msg = "spec.insecureAllowPlainHTTP is set: the client secret, passwords and tokens may travel to the issuer unencrypted over plain http"
		if !meta.IsStatusConditionTrue(before.Conditions, jobtokenv1alpha1.ConditionInsecureTransport) {
			r.Recorder.Eventf(obj, nil, corev1.EventTypeWarning, jobtokenv1alpha1.ReasonPlainHTTPAllowed, "Check", "%s", msg)
		}
		meta.SetStatusCondition(&status.Conditions, metav1.Condition{Type: jobtokenv1alpha1.ConditionInsecureTransport, Status: metav1.ConditionTrue,
			Reason: jobtokenv1alpha1.ReasonPlainHTTPAllowed, Message: msg, ObservedGeneration: obj.GetGeneration()})
	} else {
		meta.RemoveStatusCondition(&status.Conditions, jobtokenv1alpha1.ConditionInsecureTransport)
	}
	if wasReady != ready || meta.FindStatusCondition(before.Conditions, jobtokenv1alpha1.ConditionReady) == nil {
		eventType := corev1.EventTypeNormal
		if !ready {
			eventType = corev1.EventTypeWarning
		}
		r.Recorder.Eventf(obj, nil, eventType, reason, "Check", "%s", msg)
	}
	if !apiequality.Semantic.DeepEqual(before, status) {
		if err := r.Status().Update(ctx, obj); err != nil {
			return ctrl.Result{}, err
		}
	}
	return ctrl.Result{RequeueAfter: r.CheckInterval}, nil
}

// check builds the issuer's client (which resolves the Secret and runs discovery) and
// reads its signing keys. It reports whether the issuer is usable, and why not.
func (r *TokenIssuerReconciler) check(ctx context.Context, spec *jobtokenv1alpha1.TokenIssuerSpec, status *jobtokenv1alpha1.TokenIssuerStatus, secretNamespace string) (bool, string, string) {
	cl, err := r.IssuerClients(ctx, *spec, secretNamespace, r.APIReader)
	if err != nil {
		return false, issuerErrorReason(err), err.Error()
	}
	if e, ok := cl.(endpointer); ok {
		ep := e.Endpoints()
		status.Endpoints = &jobtokenv1alpha1.IssuerEndpoints{Token: ep.Token, Revocation: ep.Revocation, Introspection: ep.Introspection, JWKS: ep.JWKS}
	}
	msg := "the issuer is reachable"
	if spec.OAuth2 != nil && spec.OAuth2.IssuerURL != "" {
		msg = "discovery succeeded"
	}
	if kc, ok := cl.(issuer.KeyChecker); ok {
		kids, err := kc.KeyIDs(ctx)
		if err != nil {
			return false, issuerErrorReason(err), "reading the issuer's signing keys failed: " + err.Error()
		}
		slices.Sort(kids)
		if len(kids) > 64 {
			kids = kids[:64]
		}
		status.KeyIDs = kids
		msg += fmt.Sprintf("; %d signing key(s) published", len(kids))
	}
	if status.Endpoints != nil && status.Endpoints.Revocation == "" && spec.FOLIO == nil {
		msg += "; no revocation endpoint: tokens cannot be revoked when jobs end"
	}
	return true, jobtokenv1alpha1.ReasonSucceeded, msg
}

// issuerMetricName is the issuer label of the metrics, as getIssuer names issuers.
func issuerMetricName(cluster bool, namespace, name string) string {
	if cluster {
		return "ClusterTokenIssuer/" + name
	}
	return "TokenIssuer/" + namespace + "/" + name
}

func issuerErrorReason(err error) string {
	var se *secretError
	if errors.As(err, &se) {
		return se.reason
	}
	switch issuer.ClassOf(err) {
	case issuer.ClassConfiguration:
		return jobtokenv1alpha1.ReasonIssuerConfiguration
	default:
		return jobtokenv1alpha1.ReasonIssuerUnavailable
	}
}

// issuerChangedPredicate passes issuer updates that matter to ImportJobs: readiness
// and the published signing keys, not every periodic check.
type issuerChangedPredicate struct{ predicate.Funcs }

func (issuerChangedPredicate) Update(e event.UpdateEvent) bool {
	oldStatus, okOld := issuerStatus(e.ObjectOld)
	newStatus, okNew := issuerStatus(e.ObjectNew)
	if !okOld || !okNew {
		return true
	}
	return meta.IsStatusConditionTrue(oldStatus.Conditions, jobtokenv1alpha1.ConditionReady) !=
		meta.IsStatusConditionTrue(newStatus.Conditions, jobtokenv1alpha1.ConditionReady) ||
		!slices.Equal(oldStatus.KeyIDs, newStatus.KeyIDs) ||
		e.ObjectOld.GetGeneration() != e.ObjectNew.GetGeneration()
}

func issuerStatus(o client.Object) (*jobtokenv1alpha1.TokenIssuerStatus, bool) {
	switch v := o.(type) {
	case *jobtokenv1alpha1.TokenIssuer:
		return &v.Status, true
	case *jobtokenv1alpha1.ClusterTokenIssuer:
		return &v.Status, true
	}
	return nil, false
}
