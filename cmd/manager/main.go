// Command manager runs the jobtoken operator: the ImportJob, TokenIssuer and
// ClusterTokenIssuer controllers.
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"os"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsfilters "sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/jobtoken/jobtoken/controllers"
	"github.com/jobtoken/jobtoken/internal/issuer"
	"github.com/jobtoken/jobtoken/internal/manager"
	"github.com/jobtoken/jobtoken/internal/operator"
	"github.com/jobtoken/jobtoken/internal/version"
)

func main() {
	opts := manager.Options{}
	var (
		metricsAddr   string
		probeAddr     string
		secureMetrics bool
		enableHTTP2   bool
	)
	flag.StringVar(&metricsAddr, "metrics-bind-address", "0", "Address of the metrics endpoint, e.g. :8443 (secure) or :8080 (with --metrics-secure=false); 0 turns it off.")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "Address of the /healthz and /readyz probes.")
	flag.BoolVar(&opts.LeaderElection, "leader-elect", true, "Hold a lease so that only one replica refreshes token chains. Turn off only for a single local replica.")
	flag.StringVar(&opts.LeaderElectionNamespace, "leader-election-namespace", "", "Namespace of the leader-election lease; defaults to --vault-namespace.")
	flag.BoolVar(&secureMetrics, "metrics-secure", true, "Serve metrics over HTTPS with Kubernetes authentication and authorization.")
	flag.BoolVar(&enableHTTP2, "enable-http2", false, "Serve metrics over HTTP/2 (off by default: HTTP/2 rapid-reset and stream-cancellation CVEs).")
	flag.StringVar(&opts.VaultNamespace, "vault-namespace", defaultVaultNamespace(), "Namespace of the operator's own Secrets holding refresh tokens, and of ClusterTokenIssuer Secrets. Workers must not be able to read it.")
	watchNamespaces := flag.String("watch-namespaces", "",
		"Comma-separated namespaces whose ImportJobs and TokenIssuers the operator serves (besides its own, --vault-namespace); empty serves every namespace. With a list, the manager needs rights only in these namespaces (config/watch-namespaces, the chart's watchNamespaces).")
	issuerOpts := issuerFlags(flag.CommandLine)
	fairUse := fairUseFlags(flag.CommandLine)
	statusInterval := flag.Duration("status-interval", controllers.DefaultStatusInterval,
		"How late routine ImportJob status fields (rotation counters, token times) may reach the API; phase, conditions and failures are written at once. 0 writes every change.")
	zapOpts := zap.Options{}
	zapOpts.BindFlags(flag.CommandLine)
	// Leader-election timing, so that two replicas can fail over within a short token
	// lifetime (the chaos runs use it). Zero keeps controller-runtime's defaults (15s, 10s, 2s).
	flag.DurationVar(&opts.LeaseDuration, "leader-election-lease-duration", 0, "How long a lease is valid without renewal (0: 15s).")
	flag.DurationVar(&opts.RenewDeadline, "leader-election-renew-deadline", 0, "How long the leader retries renewing before it gives up (0: 10s).")
	flag.DurationVar(&opts.RetryPeriod, "leader-election-retry-period", 0, "How often candidates try to acquire or renew the lease (0: 2s).")
	printVersion := flag.Bool("version", false, "Print the version and exit.")
	flag.Parse()
	if *printVersion {
		fmt.Println("jobtoken manager", version.Version)
		return
	}

	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	log := ctrl.Log.WithName("setup")

	var tlsOpts []func(*tls.Config)
	if !enableHTTP2 {
		tlsOpts = append(tlsOpts, func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} })
	}
	opts.Metrics = metricsserver.Options{
		BindAddress:   metricsAddr,
		SecureServing: secureMetrics,
		TLSOpts:       tlsOpts,
	}
	if secureMetrics {
		opts.Metrics.FilterProvider = metricsfilters.WithAuthenticationAndAuthorization
	}
	opts.HealthProbeBindAddress = probeAddr
	watched, err := manager.ParseWatchNamespaces(*watchNamespaces)
	if err != nil {
		log.Error(err, "Invalid flag --watch-namespaces")
		os.Exit(1)
	}
	opts.WatchNamespaces = watched

	mgr, err := manager.New(ctrl.GetConfigOrDie(), opts)
	if err != nil {
		log.Error(err, "Unable to set up the manager")
		os.Exit(1)
	}
	issuers, err := issuerOpts()
	if err != nil {
		log.Error(err, "Invalid flag")
		os.Exit(1)
	}
	cfg := controllers.Config{VaultNamespace: opts.VaultNamespace, Issuers: &issuers, StatusInterval: *statusInterval}
	if cfg.StatusInterval == 0 {
		cfg.StatusInterval = -1 // Config reads zero as "the default"; the flag's 0 means every change
	}
	if err := fairUse(&cfg); err != nil {
		log.Error(err, "Invalid flag")
		os.Exit(1)
	}
	if err := operator.Setup(mgr, cfg, ctrlmetrics.Registry); err != nil {
		log.Error(err, "Unable to set up the operator")
		os.Exit(1)
	}
	log.Info("Starting manager", "version", version.Version, "vaultNamespace", opts.VaultNamespace, "leaderElection", opts.LeaderElection,
		"watchNamespaces", opts.WatchNamespaces)
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		log.Error(err, "Manager stopped with an error")
		os.Exit(1)
	}
}

// issuerFlags binds the flags that bound requests to issuers and what is accepted from
// them; the returned function reads them after parsing.
func issuerFlags(fs *flag.FlagSet) func() (controllers.IssuerOptions, error) {
	def := controllers.DefaultIssuerOptions()
	timeout := fs.Duration("issuer-request-timeout", def.HTTP.Timeout, "Bound on each request to an issuer, from dialing to the end of the answer, so that a hanging issuer cannot hold the workers.")
	refused := fs.String("issuer-refused-networks", issuer.FormatNetworks(def.HTTP.RefusedNetworks),
		"Comma-separated address ranges (CIDR) no request to an issuer may reach, checked on the resolved address; the default refuses link-local addresses (cloud metadata). Add the pod and service ranges of internal services to keep issuer URLs from reaching them; empty refuses nothing.")
	maxToken := fs.Int("max-token-bytes", def.MaxTokenBytes, fmt.Sprintf("Largest access or refresh token accepted from an issuer (at most %d); a larger one fails the request with an error giving its size.", controllers.MaxTokenBytesLimit))
	return func() (controllers.IssuerOptions, error) {
		if *timeout <= 0 {
			return controllers.IssuerOptions{}, fmt.Errorf("--issuer-request-timeout must be positive, not %s", *timeout)
		}
		nets, err := issuer.ParseNetworks(*refused)
		if err != nil {
			return controllers.IssuerOptions{}, fmt.Errorf("--issuer-refused-networks: %w", err)
		}
		if *maxToken < 1024 || *maxToken > controllers.MaxTokenBytesLimit {
			return controllers.IssuerOptions{}, fmt.Errorf("--max-token-bytes must be between 1024 and %d, not %d", controllers.MaxTokenBytesLimit, *maxToken)
		}
		return controllers.IssuerOptions{HTTP: issuer.HTTPOptions{Timeout: *timeout, RefusedNetworks: nets}, MaxTokenBytes: *maxToken}, nil
	}
}

// fairUseFlags binds the flags that share issuers fairly between jobs; the returned
// function sets them into a Config after parsing.
func fairUseFlags(fs *flag.FlagSet) func(*controllers.Config) error {
	concurrency := fs.Int("issuer-max-concurrent-requests", controllers.DefaultIssuerConcurrency,
		"Most token requests in flight per issuer; keep it below --max-concurrent-reconciles so that one hanging issuer cannot take every worker.")
	rps := fs.Float64("issuer-requests-per-second", controllers.DefaultIssuerRate, "Most token requests per second per issuer.")
	burst := fs.Int("issuer-request-burst", controllers.DefaultIssuerBurst, "Token requests an issuer may receive at once above its rate.")
	rotateNow := fs.Duration("rotate-now-min-interval", controllers.DefaultRotateNowMinInterval,
		"Shortest time between a job's last rotation and one its rotate-now annotation asks for.")
	floor := fs.Duration("min-rotation-interval", controllers.DefaultMinRotationGap,
		"Shortest time between two rotations of one job, however short its tokens live (a shorter-lived token is used until it expires and the job says so in a condition).")
	return func(cfg *controllers.Config) error {
		switch {
		case *concurrency < 1:
			return fmt.Errorf("--issuer-max-concurrent-requests must be at least 1, not %d", *concurrency)
		case *rps <= 0:
			return fmt.Errorf("--issuer-requests-per-second must be positive, not %g", *rps)
		case *burst < 1:
			return fmt.Errorf("--issuer-request-burst must be at least 1, not %d", *burst)
		case *rotateNow <= 0:
			return fmt.Errorf("--rotate-now-min-interval must be positive, not %s", *rotateNow)
		case *floor < time.Second:
			return fmt.Errorf("--min-rotation-interval must be at least 1s, not %s", *floor)
		}
		cfg.IssuerLimits = controllers.IssuerLimits{Concurrency: *concurrency, Rate: *rps, Burst: *burst}
		cfg.RotateNowMinInterval, cfg.MinRotationGap = *rotateNow, *floor
		return nil
	}
}

// defaultVaultNamespace is the namespace the operator runs in (downward API), else
// the namespace config/default installs it into.
func defaultVaultNamespace() string {
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	return "jobtoken-system"
}
