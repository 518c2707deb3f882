package controllers

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	jobtokenv1alpha1 "github.com/jobtoken/jobtoken/api/v1alpha1"
	"github.com/jobtoken/jobtoken/internal/issuer"
)

// SecretReader reads the Secrets an issuer or a grant names. The manager's cache holds
// only the operator's own Secrets, so this is the uncached API reader.
type SecretReader interface {
	Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error
}

// IssuerClientFactory builds the client of one issuer from its spec, reading its Secrets
// from secretNamespace. Tests replace it with one that returns a fake.
type IssuerClientFactory func(ctx context.Context, spec jobtokenv1alpha1.TokenIssuerSpec, secretNamespace string, secrets SecretReader) (issuer.Client, error)

// issuerRef is what an ImportJob resolved its issuerRef to.
type issuerRef struct {
	// Name is "TokenIssuer/<ns>/<name>" or "ClusterTokenIssuer/<name>", for logs and metrics.
	Name            string
	Spec            jobtokenv1alpha1.TokenIssuerSpec
	Status          jobtokenv1alpha1.TokenIssuerStatus
	SecretNamespace string
	Generation      int64
	UID             types.UID
	// Allowed is a ClusterTokenIssuer's limits; nil for a TokenIssuer, which serves its
	// own namespace only.
	Allowed *jobtokenv1alpha1.ClusterIssuerAllowed
}

// getIssuer reads the issuer an ImportJob names. A missing issuer is reported with a
// NotFound error.
func getIssuer(ctx context.Context, c client.Reader, job *jobtokenv1alpha1.ImportJob, vaultNamespace string) (*issuerRef, error) {
	ref := job.Spec.IssuerRef
	switch ref.Kind {
	case jobtokenv1alpha1.IssuerKindClusterTokenIssuer:
		obj := &jobtokenv1alpha1.ClusterTokenIssuer{}
		if err := c.Get(ctx, client.ObjectKey{Name: ref.Name}, obj); err != nil {
			return nil, err
		}
		return &issuerRef{Name: issuerMetricName(true, "", obj.Name), Spec: obj.Spec.TokenIssuerSpec, Status: obj.Status,
			SecretNamespace: vaultNamespace, Generation: obj.Generation, UID: obj.UID, Allowed: &obj.Spec.Allowed}, nil
	default:
		obj := &jobtokenv1alpha1.TokenIssuer{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: job.Namespace, Name: ref.Name}, obj); err != nil {
			return nil, err
		}
		return &issuerRef{Name: issuerMetricName(false, obj.Namespace, obj.Name), Spec: obj.Spec, Status: obj.Status,
			SecretNamespace: obj.Namespace, Generation: obj.Generation, UID: obj.UID}, nil
	}
}

// issuerGoneError says the issuer that minted a chain no longer exists as that object:
// it was deleted, or deleted and re-created under its name (a new UID). The chain's
// tokens are never sent to whatever now answers to the name.
type issuerGoneError struct {
	recorded issuerBinding
	// now is the object that holds the name today, nil when there is none.
	now *issuerRef
	// movedTo is the origin the same issuer object points at now, when its owner
	// pointed it at another server.
	movedTo string
}

func (e *issuerGoneError) Error() string {
	if e.now == nil {
		return fmt.Sprintf("the issuer that minted the chain, %s, no longer exists", e.recorded)
	}
	if e.movedTo != "" {
		return fmt.Sprintf("the issuer that minted the chain, %s, now points at %s instead of %s", e.recorded, e.movedTo, e.recorded.Endpoint)
	}
	return fmt.Sprintf("the issuer that minted the chain, %s, was replaced by %s (uid %s)", e.recorded, e.now.Name, e.now.UID)
}

// getBoundIssuer reads the issuer a chain records. It fails with an *issuerGoneError
// when that object is gone or another object holds its name; a binding without a UID
// (recorded before UIDs were) matches the object of that name.
func getBoundIssuer(ctx context.Context, c client.Reader, b issuerBinding, vaultNamespace string) (*issuerRef, error) {
	job := &jobtokenv1alpha1.ImportJob{}
	job.Namespace = b.Namespace
	job.Spec.IssuerRef = jobtokenv1alpha1.IssuerReference{Kind: b.Kind, Name: b.Name}
	ref, err := getIssuer(ctx, c, job, vaultNamespace)
	if apierrors.IsNotFound(err) {
		return nil, &issuerGoneError{recorded: b}
	}
	if err != nil {
		return nil, fmt.Errorf("read issuer %s: %w", b, err)
	}
	if b.UID != "" && ref.UID != b.UID {
		return nil, &issuerGoneError{recorded: b, now: ref}
	}
	if origin := ref.origin(); b.Endpoint != "" && origin != b.Endpoint {
		return nil, &issuerGoneError{recorded: b, now: ref, movedTo: origin}
	}
	return ref, nil
}

// origin is the scheme://host:port the issuer's spec points at: the server its client
// talks to. Endpoints found by discovery are held to it by the issuer client.
func (i *issuerRef) origin() string {
	var raw string
	switch {
	case i.Spec.FOLIO != nil:
		raw = i.Spec.FOLIO.URL
	case i.Spec.OAuth2 != nil && i.Spec.OAuth2.TokenURL != "":
		raw = i.Spec.OAuth2.TokenURL
	case i.Spec.OAuth2 != nil:
		raw = i.Spec.OAuth2.IssuerURL
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return ""
	}
	host := strings.ToLower(u.Hostname())
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[strings.ToLower(u.Scheme)]
	}
	return strings.ToLower(u.Scheme) + "://" + net.JoinHostPort(host, port)
}

// ready tells whether the issuer controller found the issuer usable, with its message.
func (i *issuerRef) ready() (bool, string) {
	c := meta.FindStatusCondition(i.Status.Conditions, jobtokenv1alpha1.ConditionReady)
	if c == nil {
		return false, "the issuer has not been checked yet"
	}
	if c.ObservedGeneration != 0 && c.ObservedGeneration != i.Generation {
		return false, "the issuer's latest spec has not been checked yet"
	}
	return c.Status == "True", c.Message
}

// clientCache keeps one client per issuer, so discovery and connections are reused
// across jobs; an entry is rebuilt when the issuer changes or after maxAge, which
// picks up a rotated client secret.
type clientCache struct {
	factory IssuerClientFactory
	secrets SecretReader
	maxAge  time.Duration

	mu      sync.Mutex
	entries map[types.UID]clientCacheEntry
}

type clientCacheEntry struct {
	generation int64
	built      time.Time
	client     issuer.Client
}

func newClientCache(factory IssuerClientFactory, secrets SecretReader, maxAge time.Duration) *clientCache {
	return &clientCache{factory: factory, secrets: secrets, maxAge: maxAge, entries: map[types.UID]clientCacheEntry{}}
}

func (c *clientCache) get(ctx context.Context, ref *issuerRef, now time.Time) (issuer.Client, error) {
	c.mu.Lock()
	c.prune(now)
	e, ok := c.entries[ref.UID]
	c.mu.Unlock()
	if ok && e.generation == ref.Generation && now.Sub(e.built) < c.maxAge {
		return e.client, nil
	}
	cl, err := c.factory(ctx, ref.Spec, ref.SecretNamespace, c.secrets)
	if err != nil {
		return nil, err
	}
	cl = instrumentedClient{Client: cl, name: ref.Name}
	c.mu.Lock()
	c.entries[ref.UID] = clientCacheEntry{generation: ref.Generation, built: now, client: cl}
	c.mu.Unlock()
	return cl, nil
}

// forget drops the issuer's client at once (the issuer was deleted).
func (c *clientCache) forget(uid types.UID) {
	if c == nil {
		return
	}
	c.mu.Lock()
	delete(c.entries, uid)
	c.mu.Unlock()
}

// prune drops the entries that would be rebuilt at their next use anyway: an issuer
// that was deleted (or is no longer used) does not keep its client, with its client
// secret or private key, in memory for longer than maxAge. Called with mu held.
func (c *clientCache) prune(now time.Time) {
	for uid, e := range c.entries {
		if now.Sub(e.built) >= c.maxAge {
			delete(c.entries, uid)
		}
	}
}

// readSecretKey reads one key of a Secret, with errors that name the Secret and key.
func readSecretKey(ctx context.Context, secrets SecretReader, namespace, name, key string) (string, error) {
	s := &corev1.Secret{}
	if err := secrets.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, s); err != nil {
		if apierrors.IsNotFound(err) {
			return "", &secretError{reason: jobtokenv1alpha1.ReasonSecretNotFound, msg: fmt.Sprintf("Secret %s/%s not found", namespace, name)}
		}
		return "", fmt.Errorf("read Secret %s/%s: %w", namespace, name, err)
	}
	if s.Labels[jobtokenv1alpha1.LabelRole] == jobtokenv1alpha1.RoleVault {
		// A stored chain is never an input: a reference to one (a ClusterTokenIssuer's
		// Secrets live in the same namespace) would send a job's refresh token to whatever
		// URL the referring object names.
		return "", &secretError{reason: jobtokenv1alpha1.ReasonSecretNotAllowed, msg: fmt.Sprintf(
			"Secret %s/%s holds a stored token chain of the operator and cannot be used as an input", namespace, name)}
	}
	v, ok := s.Data[key]
	if !ok || len(v) == 0 {
		return "", &secretError{reason: jobtokenv1alpha1.ReasonSecretKeyMissing, msg: fmt.Sprintf("Secret %s/%s has no key %q", namespace, name, key)}
	}
	return string(v), nil
}

// secretError is a missing Secret or key: the user must create it, so the caller waits
// (a Secret created later is picked up by the periodic re-check).
type secretError struct {
	reason string
	msg    string
}

func (e *secretError) Error() string { return e.msg }

func keyOr(key, def string) string {
	if key == "" {
		return def
	}
	return key
}
