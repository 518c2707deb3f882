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
	// Issuers bounds the requests to issuers and what is accepted from them; it is used
	// when IssuerClients is nil; nil means DefaultIssuerOptions.
	Issuers *IssuerOptions
}

// SetupAll registers the ImportJob, TokenIssuer and ClusterTokenIssuer controllers and
// the orphan sweep with the manager.
func SetupAll(mgr ctrl.Manager, cfg Config) error {
	if cfg.IssuerClients == nil && cfg.Issuers != nil {
		cfg.IssuerClients = NewIssuerClientFactory(*cfg.Issuers)
	}
	if err := (&ImportJobReconciler{
		Client: mgr.GetClient(), Clock: cfg.Clock, VaultNamespace: cfg.VaultNamespace, IssuerClients: cfg.IssuerClients,
		RevocationBudget: cfg.RevocationBudget, MaxRetryBackoff: cfg.MaxRetryBackoff, MaxConcurrentReconciles: cfg.MaxConcurrentReconciles,
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
		Interval: cfg.OrphanSweepInterval, Grace: cfg.OrphanGrace,
	}).SetupWithManager(mgr)
}
