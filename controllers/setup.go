package controllers

import (
	"context"
	"time"

	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	jobtokenv1alpha1 "github.com/jobtoken/jobtoken/api/v1alpha1"
)

// Config tunes every controller of the operator; zero values take the defaults.
type Config struct {
	VaultNamespace          string
	Clock                   clock.Clock
	IssuerClients           IssuerClientFactory
	IssuerCheckInterval     time.Duration
	RevocationBudget        time.Duration
	MaxRetryBackoff         time.Duration
	OrphanSweepInterval     time.Duration
	OrphanGrace             time.Duration
	MaxConcurrentReconciles int
	// StatusInterval bounds how late routine ImportJob status fields (rotation counters,
	// token times) reach the API; zero takes DefaultStatusInterval, a negative value
	// writes every change.
	StatusInterval time.Duration
	// Issuers bounds the requests to issuers and what is accepted from them; it is used
	// when IssuerClients is nil; nil means DefaultIssuerOptions.
	Issuers *IssuerOptions
	// IssuerLimits bound the token requests per issuer (zero fields: defaults).
	IssuerLimits IssuerLimits
	// RotateNowMinInterval is the shortest time between a job's last rotation and one
	// its rotate-now annotation asks for (zero: DefaultRotateNowMinInterval).
	RotateNowMinInterval time.Duration
	// MinRotationGap is the shortest time between two rotations of one job, however
	// short its tokens live (zero: DefaultMinRotationGap).
	MinRotationGap time.Duration
}

// SetupAll registers the ImportJob, TokenIssuer and ClusterTokenIssuer controllers and
// the orphan sweep with the manager.
func SetupAll(mgr ctrl.Manager, cfg Config) error {
	if cfg.IssuerClients == nil && cfg.Issuers != nil {
		cfg.IssuerClients = NewIssuerClientFactory(*cfg.Issuers)
	}
	statusInterval := cfg.StatusInterval
	switch {
	case statusInterval == 0:
		statusInterval = DefaultStatusInterval
	case statusInterval < 0:
		statusInterval = 0
	}
	// One gate per issuer for every request the operator sends it: mints, refreshes and
	// revocations of live jobs and of orphaned chains.
	gates := newIssuerGates(cfg.IssuerLimits)
	jobs := &ImportJobReconciler{
		Client: mgr.GetClient(), Clock: cfg.Clock, VaultNamespace: cfg.VaultNamespace, IssuerClients: cfg.IssuerClients,
		RevocationBudget: cfg.RevocationBudget, MaxRetryBackoff: cfg.MaxRetryBackoff, MaxConcurrentReconciles: cfg.MaxConcurrentReconciles,
		IssuerLimits: cfg.IssuerLimits, RotateNowMinInterval: cfg.RotateNowMinInterval, MinRotationGap: cfg.MinRotationGap,
		StatusInterval: statusInterval, gates: gates,
	}
	if err := jobs.SetupWithManager(mgr); err != nil {
		return err
	}
	for _, cluster := range []bool{false, true} {
		if err := (&TokenIssuerReconciler{
			Client: mgr.GetClient(), Clock: cfg.Clock, Cluster: cluster, VaultNamespace: cfg.VaultNamespace,
			IssuerClients: cfg.IssuerClients, CheckInterval: cfg.IssuerCheckInterval,
		}).SetupWithManager(mgr); err != nil {
			return err
		}
	}
	sweeper := &OrphanSweeper{
		Clock: cfg.Clock, VaultNamespace: cfg.VaultNamespace, IssuerClients: cfg.IssuerClients,
		Interval: cfg.OrphanSweepInterval, Grace: cfg.OrphanGrace, gates: gates,
	}
	if err := sweeper.SetupWithManager(mgr); err != nil {
		return err
	}
	return forgetDeletedIssuers(mgr, issuerForgetter{caches: []*clientCache{jobs.clients, sweeper.clients}, gates: gates})
}

// issuerForgetter drops what the operator keeps per issuer: its clients (with the
// client secret or private key they hold) and its gate.
type issuerForgetter struct {
	caches []*clientCache
	gates  *issuerGates
}

func (f issuerForgetter) forget(obj any) {
	if tomb, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	o, ok := obj.(client.Object)
	if !ok {
		return
	}
	for _, c := range f.caches {
		c.forget(o.GetUID())
	}
	f.gates.forget(o.GetUID())
}

// forgetDeletedIssuers drops a deleted issuer's clients and gate as soon as the cache
// sees the deletion: the clients are otherwise pruned only when another issuer's is
// asked for, so a manager left with no job would keep them, and their secrets, for good.
func forgetDeletedIssuers(mgr ctrl.Manager, f issuerForgetter) error {
	for _, obj := range []client.Object{&jobtokenv1alpha1.TokenIssuer{}, &jobtokenv1alpha1.ClusterTokenIssuer{}} {
		inf, err := mgr.GetCache().GetInformer(context.Background(), obj)
		if err != nil {
			return err
		}
		if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{DeleteFunc: f.forget}); err != nil {
			return err
		}
	}
	return nil
}
