package controllers

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	jobtokenv1alpha1 "github.com/jobtoken/jobtoken/api/v1alpha1"
	"github.com/jobtoken/jobtoken/internal/issuer"
	"github.com/jobtoken/jobtoken/internal/statemetrics"
)

var (
	tokenRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "jobtoken_token_requests_total",
		Help: "Requests to identity providers, by issuer, operation (mint, refresh, revoke) and result (success or the error class).",
	}, []string{"issuer", "op", "result"})
	tokenRequestDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "jobtoken_token_request_duration_seconds",
		Help:    "Duration of requests to identity providers, by issuer and operation.",
		Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
	}, []string{"issuer", "op"})
	tokenExpiry = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "jobtoken_token_expiration_timestamp_seconds",
		Help: "Expiry of the access token served to an ImportJob's workers, as a Unix time.",
	}, []string{"namespace", "name"})
	rotations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "jobtoken_rotations_total",
		Help: "Access tokens replaced by a refresh, by issuer.",
	}, []string{"issuer"})
	remints = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "jobtoken_remints_total",
		Help: "Fresh pairs minted with the grant after the first, by issuer and reason.",
	}, []string{"issuer", "reason"})
	revocations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "jobtoken_revocations_total",
		Help: "Revocations at the end of ImportJobs, by result (success, failed, skipped: the issuer that minted the chain is gone).",
	}, []string{"result"})
)

func init() {
	metrics.Registry.MustRegister(tokenRequests, tokenRequestDuration, tokenExpiry, rotations, remints, revocations)
}

// forgetTokenMetrics deletes the token series of a job whose tokens ended.
func forgetTokenMetrics(job *jobtokenv1alpha1.ImportJob) {
	tokenExpiry.DeleteLabelValues(job.Namespace, job.Name)
	statemetrics.Written.Forget(client.ObjectKeyFromObject(job))
}

// forgetIssuerMetrics deletes the series of an issuer that no longer exists, so that
// issuers created and deleted over time do not grow the metrics without bound.
func forgetIssuerMetrics(name string) {
	for _, v := range []interface {
		DeletePartialMatch(prometheus.Labels) int
	}{tokenRequests, tokenRequestDuration, rotations, remints} {
		v.DeletePartialMatch(prometheus.Labels{"issuer": name})
	}
}

// instrumentedClient counts and times every request of an issuer.Client.
type instrumentedClient struct {
	issuer.Client
	name string
}

var _ issuer.Client = instrumentedClient{}

func (c instrumentedClient) observe(op string, start time.Time, err error) {
	result := "success"
	if err != nil {
		result = string(issuer.ClassOf(err))
	}
	tokenRequests.WithLabelValues(c.name, op, result).Inc()
	tokenRequestDuration.WithLabelValues(c.name, op).Observe(time.Since(start).Seconds())
}

func (c instrumentedClient) Mint(ctx context.Context, g issuer.Grant) (*issuer.TokenSet, error) {
	start := time.Now()
	ts, err := c.Client.Mint(ctx, g)
	c.observe("mint", start, err)
	return ts, err
}

func (c instrumentedClient) Refresh(ctx context.Context, rt string) (*issuer.TokenSet, error) {
	start := time.Now()
	ts, err := c.Client.Refresh(ctx, rt)
	c.observe("refresh", start, err)
	return ts, err
}

func (c instrumentedClient) Revoke(ctx context.Context, r issuer.Revocation) error {
	start := time.Now()
	err := c.Client.Revoke(ctx, r)
	c.observe("revoke", start, err)
	return err
}
