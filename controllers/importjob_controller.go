package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	kerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	jobtokenv1alpha1 "github.com/jobtoken/jobtoken/api/v1alpha1"
	"github.com/jobtoken/jobtoken/internal/issuer"
	"github.com/jobtoken/jobtoken/internal/statemetrics"
	"github.com/jobtoken/jobtoken/internal/tokenchain"
)

// Event reasons of an ImportJob.
const (
	EventMinted           = "Minted"
	EventRotated          = "Rotated"
	EventRotationFailed   = "RotationFailed"
	EventReminted         = "Reminted"
	EventSessionExpiring  = "SessionExpiring"
	EventRevoked          = "Revoked"
	EventRevocationFailed = "RevocationFailed"
	EventCredentialsLost  = "CredentialsLost"
	EventStalled          = "Stalled"
	EventJobCreated       = "JobCreated"
	// EventRevocationSkipped: the issuer that minted the job's chain is gone or was
	// replaced, so the tokens were not revoked (and not sent to the replacement).
	EventRevocationSkipped = "RevocationSkipped"
)

// Defaults of the reconciler's tunables.
const (
	DefaultRevocationBudget = 3 * time.Minute
	DefaultMinRotationGap   = time.Second
	DefaultMaxRetryBackoff  = 5 * time.Minute
	DefaultClientMaxAge     = 10 * time.Minute
	// DefaultStatusInterval is how late routine status fields (rotation counters, token
	// times) may reach the API: a person reading `kubectl get importjobs` sees them at
	// most this late, and a job whose tokens live a minute costs a status write every
	// third rotation instead of every one. The metrics and alerts on token expiry and
	// rotation slack do not wait for the status (statemetrics.Written).
	DefaultStatusInterval = 2 * time.Minute
	// DefaultRotateNowMinInterval keeps a rotate-now loop from rotating a job more often.
	DefaultRotateNowMinInterval = 30 * time.Second
	defaultPropagationBudget    = 30 * time.Second
	defaultFraction             = 0.7
	defaultJitter               = 0.1
	fieldOwner                  = "jobtoken"
	indexIssuerRef              = "spec.issuerRef"
	firstRetryBackoff           = time.Second
	maxRevocationRetryBackoff   = 30 * time.Second
)

// ImportJobReconciler mints, rotates and revokes the tokens of ImportJobs.
type ImportJobReconciler struct {
	client.Client
	// APIReader reads Secrets the cache does not hold (grant input, client secrets).
	APIReader client.Reader
	Recorder  events.EventRecorder
	Clock     clock.Clock
	// VaultNamespace holds the vault Secrets (refresh tokens) and ClusterTokenIssuer Secrets.
	VaultNamespace string
	// IssuerClients builds issuer clients; nil uses NewIssuerClient.
	IssuerClients IssuerClientFactory
	// RevocationBudget bounds the retries of revocation at the end of a job.
	RevocationBudget time.Duration
	// MinRotationGap is the shortest time between two rotations of one job.
	MinRotationGap time.Duration
	// MaxRetryBackoff caps the backoff between failed token requests.
	MaxRetryBackoff time.Duration
	// MaxConcurrentReconciles is how many jobs are reconciled at once (default 4).
	MaxConcurrentReconciles int
	// IssuerLimits bound the token requests per issuer (zero fields take the defaults).
	IssuerLimits IssuerLimits
	// RotateNowMinInterval is the shortest time between the last rotation of a job and
	// one its rotate-now annotation asks for (default DefaultRotateNowMinInterval).
	RotateNowMinInterval time.Duration
	// StatusInterval bounds how late routine status fields (rotation counters, token
	// times) may reach the API; zero writes every change.
	StatusInterval time.Duration

	statusWrites statusThrottle

	clients *clientCache
	gates   *issuerGates
}

// scope is the state one reconcile works on.
type scope struct {
	job    *jobtokenv1alpha1.ImportJob
	now    time.Time
	issuer *issuerRef
	client issuer.Client
	chain  *storedChain
	// batchJob is the workers' Job, nil before it is created.
	batchJob *batchv1.Job
	// workerSecret is the worker Secret as read at the start of the pass, nil when it
	// does not exist yet; only ever one controlled by this ImportJob.
	workerSecret *corev1.Secret
	// rotated is set when this pass wrote a new token.
	rotated bool
	// statusNow is set when someone waits for this pass's status (a requested rotation),
	// so that routine fields are written at once too.
	statusNow bool
	// requeueAfter is the earliest wake-up any step asked for.
	requeueAfter time.Duration
}

func (s *scope) wakeIn(d time.Duration) {
	if d <= 0 {
		d = time.Millisecond
	}
	if s.requeueAfter == 0 || d < s.requeueAfter {
		s.requeueAfter = d
	}
}

type step func(ctx context.Context, s *scope) error

// Reconcile has one shape: get, deferred status patch, delete path or finalizer, then
// an ordered list of small steps.
func (r *ImportJobReconciler) Reconcile(ctx context.Context, req ctrl.Request) (retres ctrl.Result, reterr error) {
	job := &jobtokenv1alpha1.ImportJob{}
	if err := r.Get(ctx, req.NamespacedName, job); err != nil {
		if apierrors.IsNotFound(err) {
			r.statusWrites.forget(req.NamespacedName)
			statemetrics.Written.Forget(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	log := ctrl.LoggerFrom(ctx).WithValues("importjob", klog.KObj(job))
	ctx = ctrl.LoggerInto(ctx, log)

	base := job.DeepCopy()
	s := &scope{job: job, now: r.Clock.Now()}
	defer func() {
		r.summarize(s, reterr)
		if apiequalityStatus(base, job) {
			return
		}
		if wait := r.statusWrites.wait(r.StatusInterval, req.NamespacedName, base, job, s.now); wait > 0 && !s.statusNow {
			// Only routine fields changed (counters, token times): they reach the status
			// within the interval, the metrics at once.
			if retres.RequeueAfter == 0 || wait < retres.RequeueAfter {
				retres.RequeueAfter = wait
			}
			return
		}
		if data, err := client.MergeFrom(base).Data(job); err == nil && string(data) == "{}" {
			// Only sub-second precision differs (times are stored in whole seconds):
			// the patch would carry nothing, so it is not sent (a write per rotation saved).
			return
		}
		// The patch is conditional on the ImportJob being the version this pass read or
		// wrote last: a manager that lost its leadership while a pass was under way
		// (frozen, then resumed) must not overwrite with its stale view the conditions its
		// successor wrote (a Revoked=True was lost so). The conflict makes the pass start
		// again from the current object.
		base.SetResourceVersion(job.ResourceVersion)
		patch := client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})
		if err := r.Status().Patch(ctx, job, patch); err != nil && !apierrors.IsNotFound(err) {
			reterr = kerrors.NewAggregate([]error{reterr, fmt.Errorf("patch status: %w", err)})
		} else {
			r.statusWrites.written(req.NamespacedName, s.now)
		}
	}()

	if !job.DeletionTimestamp.IsZero() {
		return r.reconcileDelete(ctx, s)
	}
	if isTerminal(job) {
		return ctrl.Result{}, nil
	}
	if controllerutil.AddFinalizer(job, jobtokenv1alpha1.Finalizer) {
		// The finalizer is in place before any token exists, so none can outlive the job.
		if err := r.Update(ctx, job); err != nil {
			return ctrl.Result{}, err
		}
		base = job.DeepCopy()
	}
	return r.reconcileNormal(ctx, s)
}

func (r *ImportJobReconciler) reconcileNormal(ctx context.Context, s *scope) (ctrl.Result, error) {
	steps := []step{
		r.stepValidate,
		r.stepObserveJob,
		r.stepMaxLifetime,
		r.stepResolveIssuer,
		r.stepClaimWorkerSecret,
		r.stepEnsureTokens,
		r.stepRotate,
		r.stepWorkerSecret,
		r.stepBatchJob,
		r.stepNudgePods,
		r.stepSchedule,
	}
	// A pass ends one way: at the first step that returns an error, which handleError
	// turns into the result (errPassDone for a step after which nothing is left to do).
	for _, st := range steps {
		if err := st(ctx, s); err != nil {
			return r.handleError(ctx, s, err)
		}
	}
	return ctrl.Result{RequeueAfter: s.requeueAfter}, nil
}

// stepValidate refuses what admission could not: templates that mount the token
// themselves, and grant/issuer combinations that cannot work.
func (r *ImportJobReconciler) stepValidate(_ context.Context, s *scope) error {
	if err := validateTemplate(s.job); err != nil {
		return terminal(jobtokenv1alpha1.ReasonInvalidSpec, err.Error())
	}
	// A warning, not a refusal: a container that never reads the token (a sidecar) may
	// run as any user.
	conds := &s.job.Status.Conditions
	if msg := unreadableTokenFile(s.job); msg != "" {
		if !meta.IsStatusConditionTrue(*conds, jobtokenv1alpha1.ConditionTokenFileUnreadable) {
			r.event(s.job, corev1.EventTypeWarning, jobtokenv1alpha1.ReasonNoFSGroup, "Validate", "%s", msg)
		}
		meta.SetStatusCondition(conds, metav1.Condition{Type: jobtokenv1alpha1.ConditionTokenFileUnreadable, Status: metav1.ConditionTrue,
			Reason: jobtokenv1alpha1.ReasonNoFSGroup, Message: msg, ObservedGeneration: s.job.Generation})
	} else {
		meta.RemoveStatusCondition(conds, jobtokenv1alpha1.ConditionTokenFileUnreadable)
	}
	return nil
}

// stepObserveJob reads the workers' Job and ends the ImportJob when the Job finished.
func (r *ImportJobReconciler) stepObserveJob(ctx context.Context, s *scope) error {
	j := &batchv1.Job{}
	found, err := r.getControlled(ctx, s.job, client.ObjectKey{Namespace: s.job.Namespace, Name: s.job.Name}, j, "Job")
	if err != nil || !found {
		return err
	}
	s.batchJob = j
	if finished, ok := jobFinished(j); finished {
		phase, reason, msg := jobtokenv1alpha1.PhaseFailed, jobtokenv1alpha1.ReasonJobFailed, "the Job failed"
		if ok {
			phase, reason, msg = jobtokenv1alpha1.PhaseSucceeded, jobtokenv1alpha1.ReasonJobSucceeded, "the Job completed"
		}
		return r.finish(ctx, s, phase, reason, msg)
	}
	return nil
}

// getControlled reads an object the operator creates for the job under a name the
// tenant chose. found is false when no such object exists; an object of that name that
// this ImportJob does not control is a NameConflict, never adopted or overwritten. The
// cache holds only labelled objects, so a miss there is confirmed at the API: an
// unlabelled object of that name may exist. An object the job controls is found in the
// cache, which keeps the steady state free of API reads.
func (r *ImportJobReconciler) getControlled(ctx context.Context, job *jobtokenv1alpha1.ImportJob, key client.ObjectKey, obj client.Object, kind string) (bool, error) {
	err := r.Get(ctx, key, obj)
	if apierrors.IsNotFound(err) {
		err = r.APIReader.Get(ctx, key, obj)
	}
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read %s %s/%s: %w", kind, key.Namespace, key.Name, err)
	}
	if !metav1.IsControlledBy(obj, job) {
		return false, terminal(jobtokenv1alpha1.ReasonNameConflict, fmt.Sprintf(
			"%s %s exists in namespace %s and is not controlled by this ImportJob: the operator never adopts or overwrites it; "+
				"delete it or give the ImportJob another name", kind, key.Name, key.Namespace))
	}
	return true, nil
}

// stepClaimWorkerSecret makes sure the worker Secret's name is free or already ours
// before any token is minted for it.
func (r *ImportJobReconciler) stepClaimWorkerSecret(ctx context.Context, s *scope) error {
	secret := &corev1.Secret{}
	found, err := r.getControlled(ctx, s.job, client.ObjectKey{Namespace: s.job.Namespace, Name: workerSecretName(s.job)}, secret, "Secret")
	if err != nil {
		return err
	}
	s.workerSecret = nil
	if found {
		s.workerSecret = secret
	}
	return nil
}

// stepMaxLifetime revokes the job's tokens once maxLifetime has passed; the Job is left alone.
func (r *ImportJobReconciler) stepMaxLifetime(ctx context.Context, s *scope) error {
	ml := s.job.Spec.Rotation.MaxLifetime
	if ml == nil || s.job.Status.StartTime == nil {
		return nil
	}
	end := s.job.Status.StartTime.Add(ml.Duration)
	if s.now.Before(end) {
		s.wakeIn(end.Sub(s.now))
		return nil
	}
	return r.finish(ctx, s, jobtokenv1alpha1.PhaseExpired, jobtokenv1alpha1.ReasonMaxLifetimeReached,
		fmt.Sprintf("maxLifetime %s reached; the Job keeps running without credentials", ml.Duration))
}

// stepResolveIssuer finds the issuer and its client; an issuer that is missing or not
// Ready is waited for, not failed.
func (r *ImportJobReconciler) stepResolveIssuer(ctx context.Context, s *scope) error {
	ref, err := getIssuer(ctx, r.Client, s.job, r.VaultNamespace)
	if apierrors.IsNotFound(err) {
		return waiting(jobtokenv1alpha1.ReasonIssuerNotFound,
			fmt.Sprintf("%s %q not found", s.job.Spec.IssuerRef.Kind, s.job.Spec.IssuerRef.Name), 0)
	}
	if err != nil {
		return err
	}
	if ok, msg := ref.ready(); !ok {
		return waiting(jobtokenv1alpha1.ReasonIssuerNotReady, fmt.Sprintf("%s is not ready: %s", ref.Name, msg), 0)
	}
	if err := r.checkClusterIssuerAllows(ctx, s.job, ref); err != nil {
		return err
	}
	if s.job.Spec.Credentials.Grant != jobtokenv1alpha1.GrantPassword && ref.Spec.FOLIO != nil {
		return terminal(jobtokenv1alpha1.ReasonInvalidSpec,
			fmt.Sprintf("spec.credentials.grant: %s issuers support the Password grant only, not %s", ref.Name, s.job.Spec.Credentials.Grant))
	}
	cl, err := r.clients.get(ctx, ref, s.now)
	if err != nil {
		return err
	}
	s.issuer, s.client = ref, cl
	return nil
}

// checkClusterIssuerAllows refuses a job that a ClusterTokenIssuer does not allow, before
// any of its input reaches the issuer. It runs on every pass, so a job is stopped at its
// next rotation once its namespace, grant or scopes stop being allowed; the chain it
// holds is still revoked at the end.
func (r *ImportJobReconciler) checkClusterIssuerAllows(ctx context.Context, job *jobtokenv1alpha1.ImportJob, ref *issuerRef) error {
	if ref.Allowed == nil {
		return nil
	}
	var nsLabels map[string]string
	if ref.Allowed.NamespaceSelector != nil && !slices.Contains(ref.Allowed.Namespaces, job.Namespace) {
		ns := &corev1.Namespace{}
		if err := r.Get(ctx, client.ObjectKey{Name: job.Namespace}, ns); err != nil {
			return fmt.Errorf("read namespace %s for %s's namespaceSelector: %w", job.Namespace, ref.Name, err)
		}
		nsLabels = ns.Labels
	}
	if msg := clusterIssuerRefusal(ref.Name, ref.Allowed, ref.Spec, job.Namespace, nsLabels, job.Spec.Credentials); msg != "" {
		return terminal(jobtokenv1alpha1.ReasonIssuerNotAllowed, msg)
	}
	return nil
}

// checkBinding refuses to use a chain with any issuer but the one that minted it: the
// refresh token (and, at the end, its revocation) would go to whoever runs the other one.
// A chain stored before issuers were recorded is bound to the current issuer now.
func (r *ImportJobReconciler) checkBinding(ctx context.Context, s *scope, v *storedChain) error {
	current := currentBinding(s.job, s.issuer)
	recorded, ok := recordedBinding(v.secret)
	if ok && !recorded.sameObject(current) {
		return terminal(jobtokenv1alpha1.ReasonIssuerChanged, fmt.Sprintf(
			"the refresh chain was minted by %s but spec.issuerRef now resolves to %s: the chain is never sent to another issuer; "+
				"create a new ImportJob for the new issuer", recorded, current))
	}
	if ok && recorded.moved(current) {
		return terminal(jobtokenv1alpha1.ReasonIssuerChanged, fmt.Sprintf(
			"the refresh chain was minted at %s but %s now points at %s: the chain is never sent to another server; "+
				"create a new ImportJob for the new server", recorded.Endpoint, s.issuer.Name, current.Endpoint))
	}
	if ok && recorded.UID != "" && recorded.Endpoint != "" {
		return nil
	}
	if !ok {
		recorded = current
	}
	recorded.UID, recorded.Endpoint = current.UID, current.Endpoint
	return r.chains().bind(ctx, v, recorded, s.job.Namespace)
}

// stepEnsureTokens makes sure the stored chain holds a usable pair: mints the first one,
// and recovers from a request whose outcome was never recorded.
func (r *ImportJobReconciler) stepEnsureTokens(ctx context.Context, s *scope) error {
	store := r.chains()
	stored, err := store.get(ctx, s.job)
	if err != nil {
		return err
	}
	oneShot := !issuer.GrantType(s.job.Spec.Credentials.Grant).CanRemint()
	if stored == nil {
		initial := &storedChain{Record: tokenchain.Initial(oneShot, s.now)}
		if s.chain, err = store.create(ctx, s.job, currentBinding(s.job, s.issuer), initial); err != nil {
			return err
		}
		return r.recordOutcome(ctx, s, r.chainOf(s).First(ctx))
	}
	if err := r.checkBinding(ctx, s, stored); err != nil {
		return err
	}
	s.chain = stored
	// Counters of a chain stored before the record kept them start from the status.
	stored.Rotations = max(stored.Rotations, s.job.Status.Rotations)
	stored.Remints = max(stored.Remints, s.job.Status.Remints)
	if stored.AccessToken != "" {
		r.projectChain(s)
	}
	lostReported := meta.IsStatusConditionTrue(s.job.Status.Conditions, jobtokenv1alpha1.ConditionCredentialsLost)
	return r.recordOutcome(ctx, s, r.chainOf(s).Ensure(ctx, lostReported))
}

// takeIssuerSlot takes a slot of the issuer's gate before anything is written for a
// token request; the caller gives it back as soon as the issuer has answered. A closed
// gate makes the job wait.
func (r *ImportJobReconciler) takeIssuerSlot(s *scope) (func(), error) {
	if r.gates == nil {
		return func() {}, nil
	}
	release, busy := r.gates.acquire(s.issuer.UID, s.issuer.Name, s.now)
	if busy != nil {
		return nil, waiting(jobtokenv1alpha1.ReasonIssuerBusy, busy.msg, busy.after)
	}
	return release, nil
}

// chainOf is the job's stored chain with what its operations need.
func (r *ImportJobReconciler) chainOf(s *scope) *tokenchain.Chain {
	return &tokenchain.Chain{
		Record:    &s.chain.Record,
		Store:     saver{store: r.chains(), chain: s.chain},
		Issuer:    s.client,
		CanRemint: issuer.GrantType(s.job.Spec.Credentials.Grant).CanRemint(),
		Grant:     func(ctx context.Context) (issuer.Grant, error) { return r.grantInput(ctx, s) },
		// The issuer's gate is taken before anything is written for a request, so a job
		// at the issuer's limit waits without a marker to recover from.
		BeforeRequest: func() (func(), error) { return r.takeIssuerSlot(s) },
		Now:           s.now,
	}
}

// recordOutcome turns what a chain operation did into status, events and metrics: the
// one place where the job's record of its tokens changes.
func (r *ImportJobReconciler) recordOutcome(ctx context.Context, s *scope, o tokenchain.Outcome) error {
	rec := &s.chain.Record
	switch o.Kind {
	case tokenchain.Unchanged:
		return nil
	case tokenchain.Failed:
		return o.Err
	case tokenchain.Lost:
		if !meta.IsStatusConditionTrue(s.job.Status.Conditions, jobtokenv1alpha1.ConditionCredentialsLost) {
			r.event(s.job, corev1.EventTypeWarning, EventCredentialsLost, "Refresh",
				"The refresh chain cannot continue (%s: %s) and grant %s cannot mint a new pair; workers keep the current token until %s",
				o.Reason, o.Why, s.job.Spec.Credentials.Grant, rec.ExpiresAt.UTC().Format(time.RFC3339))
			meta.SetStatusCondition(&s.job.Status.Conditions, metav1.Condition{
				Type: jobtokenv1alpha1.ConditionCredentialsLost, Status: metav1.ConditionTrue, Reason: o.Reason,
				Message: fmt.Sprintf("%s; grant %s cannot mint a new pair: submit a new ImportJob or use a ClientCredentials or Password grant", o.Why, s.job.Spec.Credentials.Grant),
			})
		}
		if !rec.ExpiresAt.IsZero() && s.now.Before(rec.ExpiresAt) {
			s.wakeIn(rec.ExpiresAt.Sub(s.now))
		}
		return errPassDone
	}
	s.rotated = true
	st := &s.job.Status
	st.FailedRotationAttempts = 0
	r.projectChain(s)
	meta.RemoveStatusCondition(&st.Conditions, jobtokenv1alpha1.ConditionTokenRefreshFailed)
	meta.RemoveStatusCondition(&st.Conditions, jobtokenv1alpha1.ConditionCredentialsLost)
	tokenExpiry.WithLabelValues(s.job.Namespace, s.job.Name).Set(float64(rec.ExpiresAt.Unix()))
	expires := o.Tokens.ExpiresAt.UTC().Format(time.RFC3339)
	switch o.Kind {
	case tokenchain.Minted:
		st.StartTime = &metav1.Time{Time: s.now}
		r.event(s.job, corev1.EventTypeNormal, EventMinted, "Mint", "Minted the job's token pair with grant %s; access token expires at %s",
			s.job.Spec.Credentials.Grant, expires)
		r.removeRedeemedInput(ctx, s)
	case tokenchain.Rotated:
		rotations.WithLabelValues(s.issuer.Name).Inc()
		if o.Why != whyScheduled {
			// A routine rotation is seen in the metrics and the status; an event per
			// rotation would be a write per rotation.
			s.statusNow = true
			r.event(s.job, corev1.EventTypeNormal, EventRotated, "Refresh", "Rotated the access token (%s); new token expires at %s", o.Why, expires)
		}
	case tokenchain.Reminted:
		remints.WithLabelValues(s.issuer.Name, o.Reason).Inc()
		r.event(s.job, corev1.EventTypeNormal, EventReminted, "Mint", "Minted a fresh pair with grant %s (%s): %s", s.job.Spec.Credentials.Grant, o.Reason, o.Why)
	}
	return nil
}

// projectChain shows the stored chain in the status. The counters come from the record,
// so a status write that is left out loses nothing: the next one carries them.
func (r *ImportJobReconciler) projectChain(s *scope) {
	rec := &s.chain.Record
	st := &s.job.Status
	st.TokenRevision = rec.Generation
	st.TokenIssuedAt = &metav1.Time{Time: rec.IssuedAt}
	st.TokenExpiresAt = &metav1.Time{Time: rec.ExpiresAt}
	st.TokenKeyID = rec.KeyID
	st.SessionExpiresAt = nil
	if !rec.ChainEndsAt.IsZero() {
		st.SessionExpiresAt = &metav1.Time{Time: rec.ChainEndsAt}
	}
	st.Rotations = rec.Rotations
	st.Remints = rec.Remints
	if !rec.RotatedAt.IsZero() {
		st.LastRotationTime = &metav1.Time{Time: rec.RotatedAt}
	}
}

// whyScheduled is the reason of a rotation the schedule asked for.
const whyScheduled = "scheduled"

// stepRotate refreshes or re-mints when the schedule, the rotate-now annotation or an
// unpublished signing key says so.
func (r *ImportJobReconciler) stepRotate(ctx context.Context, s *scope) error {
	if s.rotated {
		return nil
	}
	sched := r.schedule(s)
	rec := &s.chain.Record
	why := ""
	requested := false
	switch {
	case s.job.Annotations[jobtokenv1alpha1.AnnotationRotateNow] != "":
		if wait := r.rotateNowWait(s); wait > 0 {
			// Honoured later, so that a loop setting the annotation cannot rotate a job
			// more often than the minimum interval.
			s.wakeIn(wait)
			return nil
		}
		why, requested = "requested with the "+jobtokenv1alpha1.AnnotationRotateNow+" annotation", true
	case rec.KeyID != "" && len(s.issuer.Status.KeyIDs) > 0 && !slices.Contains(s.issuer.Status.KeyIDs, rec.KeyID):
		why = fmt.Sprintf("the issuer no longer publishes signing key %q", rec.KeyID)
	case !s.now.Before(sched.RotateAt):
		why = whyScheduled
	default:
		return nil
	}
	if backoff := r.retryWait(s); backoff > 0 && (why == whyScheduled || requested) {
		s.wakeIn(backoff)
		return nil
	}
	chain := r.chainOf(s)
	var o tokenchain.Outcome
	if sched.Action == ActionRemint {
		o = chain.Remint(ctx, jobtokenv1alpha1.ReasonSessionMaximum,
			fmt.Sprintf("the refresh chain ends at %s", rec.ChainEndsAt.UTC().Format(time.RFC3339)))
	} else {
		o = chain.Refresh(ctx, why)
	}
	if err := r.recordOutcome(ctx, s, o); err != nil {
		return err
	}
	return r.clearRotateNow(ctx, s)
}

func (r *ImportJobReconciler) clearRotateNow(ctx context.Context, s *scope) error {
	if _, ok := s.job.Annotations[jobtokenv1alpha1.AnnotationRotateNow]; !ok {
		return nil
	}
	patch := client.MergeFrom(s.job.DeepCopy())
	delete(s.job.Annotations, jobtokenv1alpha1.AnnotationRotateNow)
	status := s.job.Status.DeepCopy()
	if err := r.Patch(ctx, s.job, patch); err != nil {
		return err
	}
	s.job.Status = *status
	return nil
}

// stepWorkerSecret writes the access token for the workers, only when it changed. A new
// Secret is created (which fails if the name was taken meanwhile); an existing one is
// written only when this ImportJob controls it (stepClaimWorkerSecret), and the patch
// carries its UID, so a Secret re-created under the name since is never written.
func (r *ImportJobReconciler) stepWorkerSecret(ctx context.Context, s *scope) error {
	name := workerSecretName(s.job)
	want := workerSecretData(s.chain.AccessToken, s.chain.TokenType, s.chain.ExpiresAt)
	revision := strconv.FormatInt(s.chain.Generation, 10)
	current := s.workerSecret
	if current != nil && current.Annotations[jobtokenv1alpha1.AnnotationTokenRevision] == revision && secretDataEqual(current.Data, want) {
		s.job.Status.SecretName = name
		return nil
	}
	ref := controllerRef(s.job)
	if current == nil {
		secret := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{
				Namespace: s.job.Namespace, Name: name,
				Labels:          ownedLabels(s.job, jobtokenv1alpha1.RoleWorkerToken),
				Annotations:     map[string]string{jobtokenv1alpha1.AnnotationTokenRevision: revision},
				OwnerReferences: []metav1.OwnerReference{ref},
			},
			Type: corev1.SecretTypeOpaque,
			Data: want,
		}
		if err := r.Create(ctx, secret, client.FieldOwner(fieldOwner)); err != nil {
			// AlreadyExists: created by someone since the claim; the next pass reads it.
			return fmt.Errorf("create worker Secret %s/%s: %w", s.job.Namespace, name, err)
		}
		s.workerSecret = secret
		statemetrics.Written.TokenWritten(client.ObjectKeyFromObject(s.job), s.chain.ExpiresAt, time.Time{}, r.Clock.Now())
		s.job.Status.SecretName = name
		return nil
	}
	// A merge patch of the token keys and the revision: the cheapest write the API server
	// takes for a Secret (no server-side apply merge). The UID in the patch makes a Secret
	// re-created under the name since refuse it.
	patch, err := json.Marshal(map[string]any{
		"metadata": map[string]any{
			"uid":         current.UID,
			"annotations": map[string]string{jobtokenv1alpha1.AnnotationTokenRevision: revision},
		},
		"data": want,
	})
	if err != nil {
		return err
	}
	if err := r.Patch(ctx, current.DeepCopy(), client.RawPatch(types.MergePatchType, patch), client.FieldOwner(fieldOwner)); err != nil {
		return fmt.Errorf("write worker Secret %s/%s: %w", s.job.Namespace, name, err)
	}
	replaced, _ := time.Parse(time.RFC3339, string(current.Data[jobtokenv1alpha1.KeyExpiresAt]))
	statemetrics.Written.TokenWritten(client.ObjectKeyFromObject(s.job), s.chain.ExpiresAt, replaced, r.Clock.Now())
	s.job.Status.SecretName = name
	return nil
}

// stepBatchJob creates the workers' Job once the worker Secret holds a token.
func (r *ImportJobReconciler) stepBatchJob(ctx context.Context, s *scope) error {
	if s.batchJob != nil {
		s.job.Status.JobName = s.batchJob.Name
		return nil
	}
	j := buildJob(s.job, s.chain.Generation)
	if err := r.Create(ctx, j); err != nil {
		if !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create Job %s/%s: %w", j.Namespace, j.Name, err)
		}
		// Created since stepObserveJob looked: ours (a pass before this one, not yet in
		// the cache) is taken as it is; anyone else's is a NameConflict.
		existing := &batchv1.Job{}
		found, err := r.getControlled(ctx, s.job, client.ObjectKeyFromObject(j), existing, "Job")
		if err != nil || !found {
			return err
		}
		s.batchJob = existing
		s.job.Status.JobName = existing.Name
		return nil
	}
	s.batchJob = j
	s.job.Status.JobName = j.Name
	r.event(s.job, corev1.EventTypeNormal, EventJobCreated, "Create", "Created Job %s with the token volume mounted at %s", j.Name, s.job.Spec.TokenMountPath)
	return nil
}

// stepNudgePods annotates the Job's pods with the new token revision after a rotation:
// a pod update makes the kubelet resync its volumes now, not at its next periodic sync.
func (r *ImportJobReconciler) stepNudgePods(ctx context.Context, s *scope) error {
	if !s.rotated || (s.job.Spec.Rotation.NudgePods != nil && !*s.job.Spec.Rotation.NudgePods) {
		return nil
	}
	pods := &corev1.PodList{}
	if err := r.List(ctx, pods, client.InNamespace(s.job.Namespace),
		client.MatchingLabels{jobtokenv1alpha1.LabelImportJobName: s.job.Name, jobtokenv1alpha1.LabelManagedBy: jobtokenv1alpha1.ManagedByValue}); err != nil {
		return err
	}
	revision := strconv.FormatInt(s.chain.Generation, 10)
	var errs []error
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.Annotations[jobtokenv1alpha1.AnnotationTokenRevision] == revision || !p.DeletionTimestamp.IsZero() ||
			p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		patch := client.MergeFrom(p.DeepCopy())
		if p.Annotations == nil {
			p.Annotations = map[string]string{}
		}
		p.Annotations[jobtokenv1alpha1.AnnotationTokenRevision] = revision
		if err := r.Patch(ctx, p, patch); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		// The token is written; a pod missed now still gets it at the kubelet's next sync.
		ctrl.LoggerFrom(ctx).Info("Nudging pods after a rotation failed", "error", kerrors.NewAggregate(errs).Error())
	}
	return nil
}

// stepSchedule records the next rotation and asks to be woken then.
func (r *ImportJobReconciler) stepSchedule(_ context.Context, s *scope) error {
	sched := r.schedule(s)
	st := &s.job.Status
	st.Phase = jobtokenv1alpha1.PhaseRunning
	st.NextRotationTime = &metav1.Time{Time: sched.RotateAt}
	meta.RemoveStatusCondition(&st.Conditions, jobtokenv1alpha1.ConditionStalled)
	if lifetime := s.chain.ExpiresAt.Sub(s.chain.IssuedAt); sched.BudgetUnmet {
		msg := fmt.Sprintf("the issuer's token lifetime (%s) is not longer than the propagation budget (%s): rotating as early as possible; workers may briefly read an expired token",
			lifetime.Round(time.Second), propagationBudget(s.job))
		if lifetime < r.MinRotationGap {
			msg = fmt.Sprintf("the issuer's token lifetime (%s) is below the minimum rotation interval (%s, --min-rotation-interval): each token is used until it expires and replaced %s after it was issued; workers read an expired token in between",
				lifetime.Round(time.Millisecond), r.MinRotationGap, r.MinRotationGap)
		}
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{
			Type: jobtokenv1alpha1.ConditionPropagationBudgetUnmet, Status: metav1.ConditionTrue, Reason: jobtokenv1alpha1.ReasonTokenLifetimeTooShort,
			Message: msg,
		})
	} else {
		meta.RemoveStatusCondition(&st.Conditions, jobtokenv1alpha1.ConditionPropagationBudgetUnmet)
	}
	canRemint := issuer.GrantType(s.job.Spec.Credentials.Grant).CanRemint()
	if sched.ChainEndsBeforeNext && !canRemint {
		if !meta.IsStatusConditionTrue(st.Conditions, jobtokenv1alpha1.ConditionSessionExpiring) {
			r.event(s.job, corev1.EventTypeWarning, EventSessionExpiring, "Schedule",
				"The issuer ends the refresh chain at %s and grant %s cannot mint a new pair: workers get no token after that",
				s.chain.ChainEndsAt.UTC().Format(time.RFC3339), s.job.Spec.Credentials.Grant)
		}
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{
			Type: jobtokenv1alpha1.ConditionSessionExpiring, Status: metav1.ConditionTrue, Reason: jobtokenv1alpha1.ReasonSessionMaximum,
			Message: fmt.Sprintf("the refresh chain ends at %s (session maximum or refresh-token expiry) and grant %s cannot mint a new pair",
				s.chain.ChainEndsAt.UTC().Format(time.RFC3339), s.job.Spec.Credentials.Grant),
		})
	} else {
		meta.RemoveStatusCondition(&st.Conditions, jobtokenv1alpha1.ConditionSessionExpiring)
	}
	if meta.IsStatusConditionTrue(st.Conditions, jobtokenv1alpha1.ConditionCredentialsLost) {
		return nil
	}
	if wait := r.retryWait(s); wait > 0 {
		s.wakeIn(wait)
	}
	s.wakeIn(sched.RotateAt.Sub(s.now))
	return nil
}

func (r *ImportJobReconciler) chains() chainStore {
	return chainStore{client: r.Client, namespace: r.VaultNamespace}
}

func (r *ImportJobReconciler) event(job *jobtokenv1alpha1.ImportJob, eventType, reason, action, note string, args ...any) {
	// The event regards the job without its resourceVersion, so the recorder folds repeated
	// events of one job (a Rotated per rotation) into one Event series instead of writing
	// and caching a new Event each time (a write per rotation and memory per job).
	regarding := &jobtokenv1alpha1.ImportJob{TypeMeta: job.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{Namespace: job.Namespace, Name: job.Name, UID: job.UID}}
	r.Recorder.Eventf(regarding, nil, eventType, reason, action, note, args...)
}

func isTerminal(job *jobtokenv1alpha1.ImportJob) bool {
	switch job.Status.Phase {
	case jobtokenv1alpha1.PhaseSucceeded, jobtokenv1alpha1.PhaseFailed, jobtokenv1alpha1.PhaseExpired:
		return meta.FindStatusCondition(job.Status.Conditions, jobtokenv1alpha1.ConditionRevoked) != nil ||
			meta.IsStatusConditionTrue(job.Status.Conditions, jobtokenv1alpha1.ConditionRevocationFailed)
	}
	return false
}

func secretDataEqual(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if string(b[k]) != string(v) {
			return false
		}
	}
	return true
}
