// Package manager builds the controller-runtime manager the operator runs in, shared by
// the manager binary, the demo and the integration tests so that they run the same thing.
package manager

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/go-logr/logr"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	jobtokenv1alpha1 "github.com/jobtoken/jobtoken/api/v1alpha1"
	"github.com/jobtoken/jobtoken/internal/scheme"
)

// LeaderElectionID names the lease that makes one replica the only refresher.
const LeaderElectionID = "jobtoken.dev-manager"

// Options configure the manager.
type Options struct {
	// VaultNamespace holds the vault Secrets and ClusterTokenIssuer Secrets.
	VaultNamespace string
	// LeaderElection turns on the lease; LeaderElectionNamespace defaults to VaultNamespace.
	LeaderElection          bool
	LeaderElectionNamespace string
	// LeaseDuration, RenewDeadline and RetryPeriod tune leader election (zero: defaults).
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	Metrics                                   metricsserver.Options
	HealthProbeBindAddress                    string
	// Logger overrides the global logger (tests capture the manager's logs with it).
	Logger *logr.Logger
	// SkipNameValidation lets several managers run in one process (tests, the demo).
	SkipNameValidation bool
	// WatchNamespaces, when set, limits the cache, and so every controller, to the
	// ImportJobs, TokenIssuers, Secrets, Jobs and Pods of these namespaces and of
	// VaultNamespace; the manager then needs rights in those namespaces only.
	// Cluster-scoped objects (ClusterTokenIssuers, Namespaces) are still watched
	// cluster-wide. Empty watches every namespace.
	WatchNamespaces []string
}

// ParseWatchNamespaces reads the --watch-namespaces list: comma-separated namespace
// names, blanks ignored, duplicates dropped.
func ParseWatchNamespaces(list string) ([]string, error) {
	var out []string
	for _, ns := range strings.Split(list, ",") {
		ns = strings.TrimSpace(ns)
		if ns == "" || slices.Contains(out, ns) {
			continue
		}
		if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
			return nil, fmt.Errorf("%q is not a namespace name: %s", ns, strings.Join(errs, "; "))
		}
		out = append(out, ns)
	}
	return out, nil
}

// cacheNamespaces is what the cache watches: nil (every namespace) or the listed
// namespaces and the vault namespace, whose stored chains the operator always needs.
func cacheNamespaces(opts Options) map[string]cache.Config {
	if len(opts.WatchNamespaces) == 0 {
		return nil
	}
	out := map[string]cache.Config{opts.VaultNamespace: {}}
	for _, ns := range opts.WatchNamespaces {
		out[ns] = cache.Config{}
	}
	return out
}

// ManagedSelector selects the objects the operator creates; the cache holds only those
// Secrets, Jobs and Pods, never every Secret of the cluster.
func ManagedSelector() labels.Selector {
	return labels.SelectorFromSet(labels.Set{jobtokenv1alpha1.LabelManagedBy: jobtokenv1alpha1.ManagedByValue})
}

// New builds a manager with the cache scoped to the operator's labelled objects. Reads of
// other Secrets (client secrets, grant input) go to the API server directly.
func New(cfg *rest.Config, opts Options) (ctrl.Manager, error) {
	if opts.VaultNamespace == "" {
		return nil, errors.New("manager: the vault namespace is required (--vault-namespace)")
	}
	leNamespace := opts.LeaderElectionNamespace
	if leNamespace == "" {
		leNamespace = opts.VaultNamespace
	}
	selector := ManagedSelector()
	mopts := ctrl.Options{
		Scheme:                        scheme.New(),
		Metrics:                       opts.Metrics,
		HealthProbeBindAddress:        opts.HealthProbeBindAddress,
		LeaderElection:                opts.LeaderElection,
		LeaderElectionID:              LeaderElectionID,
		LeaderElectionNamespace:       leNamespace,
		LeaderElectionReleaseOnCancel: true,
		Cache: cache.Options{
			DefaultNamespaces: cacheNamespaces(opts),
			// The operator never reads managedFields: dropping them from the cached objects
			// saves memory per job (docs/benchmarks.md).
			DefaultTransform: cache.TransformStripManagedFields(),
			ByObject: map[client.Object]cache.ByObject{
				&corev1.Secret{}: {Label: selector},
				&batchv1.Job{}:   {Label: selector, Transform: stripJobTemplate},
				&corev1.Pod{}:    {Label: selector},
			},
		},
		Client: client.Options{Cache: &client.CacheOptions{Unstructured: false}},
	}
	if opts.Logger != nil {
		mopts.Logger = *opts.Logger
	}
	if opts.SkipNameValidation {
		mopts.Controller = config.Controller{SkipNameValidation: &opts.SkipNameValidation}
	}
	if opts.LeaseDuration > 0 {
		mopts.LeaseDuration = &opts.LeaseDuration
	}
	if opts.RenewDeadline > 0 {
		mopts.RenewDeadline = &opts.RenewDeadline
	}
	if opts.RetryPeriod > 0 {
		mopts.RetryPeriod = &opts.RetryPeriod
	}
	return ctrl.NewManager(cfg, mopts)
}

// stripJobTemplate drops what the operator never reads from its cached Jobs: the pod
// template (the ImportJob holds it) and managedFields. Only metadata and status are used
// (memory per job).
func stripJobTemplate(obj any) (any, error) {
	if j, ok := obj.(*batchv1.Job); ok {
		j.Spec.Template = corev1.PodTemplateSpec{}
		j.ManagedFields = nil
	}
	return obj, nil
}
