package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	jobtokenv1alpha1 "github.com/jobtoken/jobtoken/api/v1alpha1"
	"github.com/jobtoken/jobtoken/internal/issuer"
)

// Defaults of the orphan sweep.
const (
	DefaultOrphanSweepInterval = 5 * time.Minute
	// orphanGrace spares stored chains younger than this: their ImportJob may be
	// newer than what any reader has seen yet.
	orphanGrace = time.Minute
)

// OrphanSweeper revokes and deletes stored chains whose ImportJob no longer exists (for
// example when the operator was down while a job was deleted with its finalizer removed
// by hand). It runs at start-up and then every Interval, on the leader only.
type OrphanSweeper struct {
	Client         client.Client
	APIReader      client.Reader
	Clock          clock.Clock
	VaultNamespace string
	IssuerClients  IssuerClientFactory
	Interval       time.Duration
	// Grace spares stored chains younger than this (default one minute).
	Grace time.Duration

	clients *clientCache
	// gates are the ImportJob reconciler's per-issuer limits: an orphan's revocation
	// counts against them like any other token request (nil: unlimited).
	gates *issuerGates
}

// SetupWithManager adds the sweeper as a leader-elected runnable.
func (o *OrphanSweeper) SetupWithManager(mgr ctrl.Manager) error {
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.APIReader == nil {
		o.APIReader = mgr.GetAPIReader()
	}
	if o.Client == nil {
		o.Client = mgr.GetClient()
	}
	if o.IssuerClients == nil {
		o.IssuerClients = NewIssuerClient
	}
	if o.Interval <= 0 {
		o.Interval = DefaultOrphanSweepInterval
	}
	if o.Grace <= 0 {
		o.Grace = orphanGrace
	}
	o.clients = newClientCache(o.IssuerClients, o.APIReader, DefaultClientMaxAge)
	return mgr.Add(o)
}

// NeedLeaderElection keeps the sweep on the one replica that refreshes chains.
func (o *OrphanSweeper) NeedLeaderElection() bool { return true }

// Start sweeps now and then every Interval until ctx ends.
func (o *OrphanSweeper) Start(ctx context.Context) error {
	log := ctrl.LoggerFrom(ctx).WithName("orphan-sweep")
	for {
		n, err := o.Sweep(ctx)
		if err != nil {
			log.Error(err, "Orphan sweep failed")
		} else if n > 0 {
			log.Info("Revoked and deleted orphaned stored chains", "count", n)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-o.Clock.After(o.Interval):
		}
	}
}

// Sweep handles every orphaned stored chain once and returns how many it removed.
func (o *OrphanSweeper) Sweep(ctx context.Context) (int, error) {
	list := &corev1.SecretList{}
	if err := o.Client.List(ctx, list, client.InNamespace(o.VaultNamespace), client.MatchingLabels{
		jobtokenv1alpha1.LabelManagedBy: jobtokenv1alpha1.ManagedByValue,
		jobtokenv1alpha1.LabelRole:      jobtokenv1alpha1.RoleVault,
	}); err != nil {
		return 0, err
	}
	removed := 0
	var firstErr error
	for i := range list.Items {
		s := &list.Items[i]
		if o.Clock.Since(s.CreationTimestamp.Time) < o.Grace {
			continue
		}
		orphan, err := o.isOrphan(ctx, s)
		if err != nil || !orphan {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		if err := o.revokeAndDelete(ctx, s); err != nil {
			// A busy issuer is not a failure: the chain waits for the next sweep.
			var busy *issuerBusy
			if errors.As(err, &busy) {
				continue
			}
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		removed++
	}
	return removed, firstErr
}

func (o *OrphanSweeper) isOrphan(ctx context.Context, s *corev1.Secret) (bool, error) {
	job := &jobtokenv1alpha1.ImportJob{}
	key := client.ObjectKey{Namespace: s.Labels[jobtokenv1alpha1.LabelImportJobNamespace], Name: s.Labels[jobtokenv1alpha1.LabelImportJobName]}
	err := o.APIReader.Get(ctx, key, job)
	if apierrors.IsNotFound(err) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	return string(job.UID) != s.Labels[jobtokenv1alpha1.LabelImportJobUID], nil
}

func (o *OrphanSweeper) revokeAndDelete(ctx context.Context, s *corev1.Secret) error {
	log := ctrl.LoggerFrom(ctx).WithValues("secret", s.Name)
	v := decodeChain(s)
	if v.AccessToken != "" || v.RefreshToken != "" {
		if err := o.revoke(ctx, s, v); err != nil {
			var gone *issuerGoneError
			switch {
			case errors.As(err, &gone):
				log.Info("The issuer of an orphaned chain is gone or was replaced; its tokens are sent to no other issuer and end at their own expiry", "issuer", gone.Error())
			case apierrors.IsNotFound(err):
				log.Info("The issuer of an orphaned chain is not recorded; its tokens end at their own expiry")
			default:
				return fmt.Errorf("revoke orphaned chain of %s: %w", s.Name, err)
			}
		}
	}
	return chainStore{client: o.Client, namespace: o.VaultNamespace}.delete(ctx, v)
}

func (o *OrphanSweeper) revoke(ctx context.Context, s *corev1.Secret, v *storedChain) error {
	bound, ok := recordedBinding(s)
	if !ok {
		return apierrors.NewNotFound(jobtokenv1alpha1.GroupVersion.WithResource("tokenissuers").GroupResource(), "")
	}
	// Only the issuer that minted the chain, the same object (UID), is asked to revoke it.
	ref, err := getBoundIssuer(ctx, o.Client, bound, o.VaultNamespace)
	if err != nil {
		return err
	}
	cl, err := o.clients.get(ctx, ref, o.Clock.Now())
	if err != nil {
		return err
	}
	release, busy := o.gates.acquire(ref.UID, ref.Name, o.Clock.Now())
	if busy != nil {
		return busy
	}
	defer release()
	if err := cl.Revoke(ctx, issuer.Revocation{AccessToken: v.AccessToken, RefreshToken: v.RefreshToken, Replaced: v.Replaced}); err != nil {
		return err
	}
	revocations.WithLabelValues("success").Inc()
	return nil
}
