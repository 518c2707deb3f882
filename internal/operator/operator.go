// Package operator puts the operator on a manager: its controllers, its state metrics
// and its health checks. The manager binary and the benchmark's manager process both
// call Setup, so what the benchmark measures is what ships. (The controllers' own tests
// call controllers.SetupAll: a package they import cannot import this one.)
package operator

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"

	"github.com/jobtoken/jobtoken/controllers"
	"github.com/jobtoken/jobtoken/internal/statemetrics"
)

// Setup adds the controllers configured by cfg, registers the state metrics with reg
// and adds the /healthz and /readyz checks.
func Setup(mgr ctrl.Manager, cfg controllers.Config, reg prometheus.Registerer) error {
	if err := controllers.SetupAll(mgr, cfg); err != nil {
		return fmt.Errorf("set up the controllers: %w", err)
	}
	if err := statemetrics.Register(mgr, reg); err != nil {
		return fmt.Errorf("set up the state metrics: %w", err)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return fmt.Errorf("set up the health check: %w", err)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return fmt.Errorf("set up the ready check: %w", err)
	}
	return nil
}
