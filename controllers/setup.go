package controllers

import (
	"time"

	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
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
	if err := (&ImportJobReconciler{
		Client: mgr.GetClient(), Clock: cfg.Clock, VaultNamespace: cfg.VaultNamespace, IssuerClients: cfg.IssuerClients,
		RevocationBudget: cfg.RevocationBudget, MaxRetryBackoff: cfg.MaxRetryBackoff, MaxConcurrentReconciles: cfg.MaxConcurrentReconciles,
		IssuerLimits: cfg.IssuerLimits, RotateNowMinInterval: cfg.RotateNowMinInterval, MinRotationGap: cfg.MinRotationGap,
		StatusInterval: statusInterval, gates: gates,
	}).SetupWithManager(mgr); err != nil {
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
	return (&OrphanSweeper{
		Clock: cfg.Clock, VaultNamespace: cfg.VaultNamespace, IssuerClients: cfg.IssuerClients,
		Interval: cfg.OrphanSweepInterval, Grace: cfg.OrphanGrace, gates: gates,
	}).SetupWithManager(mgr)
}
