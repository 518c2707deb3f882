package controllers

import (
	"context"
	"crypto/x509"
	"fmt"
	"net/http"
	"time"

	jobtokenv1alpha1 "github.com/jobtoken/jobtoken/api/v1alpha1"
	"github.com/jobtoken/jobtoken/internal/issuer"
)

// IssuerOptions bound what the manager does with every issuer.
type IssuerOptions struct {
	// HTTP shapes the requests (timeout, refused destinations).
	HTTP issuer.HTTPOptions
	// MaxTokenBytes is the largest access or refresh token accepted.
	MaxTokenBytes int
}

// MaxTokenBytesLimit is the most --max-token-bytes may be: the answer's headers are
// bounded too, and FOLIO sends both tokens in them.
const MaxTokenBytesLimit = 24 << 10

// DefaultIssuerOptions is how issuers are reached when the manager is given nothing
// else: the default per-request timeout, link-local destinations (cloud metadata)
// refused, and the default token size limit.
func DefaultIssuerOptions() IssuerOptions {
	return IssuerOptions{
		HTTP:          issuer.HTTPOptions{Timeout: issuer.DefaultRequestTimeout, RefusedNetworks: issuer.DefaultRefusedNetworks},
		MaxTokenBytes: issuer.DefaultMaxTokenBytes,
	}
}

// NewIssuerClient builds the dialect client an issuer spec describes with
// DefaultIssuerOptions (see NewIssuerClientFactory).
func NewIssuerClient(ctx context.Context, spec jobtokenv1alpha1.TokenIssuerSpec, secretNamespace string, secrets SecretReader) (issuer.Client, error) {
	return defaultFactory(ctx, spec, secretNamespace, secrets)
}

var defaultFactory = NewIssuerClientFactory(DefaultIssuerOptions())

// NewIssuerClientFactory returns a factory whose clients send through one HTTP client
// built from opts.HTTP (shared, so that connections are pooled across issuers and survive a
// client's rebuild). Each client reads its client secret or private key from
// secretNamespace; for OAuth2 with an issuerURL it runs discovery, so an unreachable or
// mismatching issuer fails here.
func NewIssuerClientFactory(opts IssuerOptions) IssuerClientFactory {
	hc := issuer.NewHTTPClient(opts.HTTP)
	return func(ctx context.Context, spec jobtokenv1alpha1.TokenIssuerSpec, secretNamespace string, secrets SecretReader) (issuer.Client, error) {
		return newIssuerClient(ctx, spec, secretNamespace, secrets, hc, opts)
	}
}

func newIssuerClient(ctx context.Context, spec jobtokenv1alpha1.TokenIssuerSpec, secretNamespace string, secrets SecretReader, hc *http.Client, opts IssuerOptions) (issuer.Client, error) {
	roots, err := caBundle(ctx, spec, secretNamespace, secrets)
	if err != nil {
		return nil, err
	}
	if roots != nil {
		// An issuer with a private CA gets a client of its own: its roots are not
		// trusted for any other issuer.
		h := opts.HTTP
		h.RootCAs = roots
		hc = issuer.NewHTTPClient(h)
	}
	if spec.FOLIO != nil {
		return issuer.NewFOLIO(issuer.FOLIOConfig{BaseURL: spec.FOLIO.URL, Tenant: spec.FOLIO.Tenant, HTTPClient: hc,
			MaxTokenBytes: opts.MaxTokenBytes, AllowPlainHTTP: spec.InsecureAllowPlainHTTP})
	}
	o := spec.OAuth2
	cfg := issuer.OAuth2Config{
		IssuerURL:        o.IssuerURL,
		TokenURL:         o.TokenURL,
		RevocationURL:    o.RevocationURL,
		IntrospectionURL: o.IntrospectionURL,
		JWKSURL:          o.JWKSURL,
		ClientID:         o.ClientID,
		ClientAuth:       string(o.ClientAuth),
		PrivateKeyID:     o.PrivateKeyID,
		Scopes:           o.Scopes,
		Audience:         o.Audience,
		HTTPClient:       hc,
		MaxTokenBytes:    opts.MaxTokenBytes,
		AllowPlainHTTP:   spec.InsecureAllowPlainHTTP,
		EndpointHosts:    o.EndpointHosts,
	}
	if o.DefaultTokenLifetime != nil {
		cfg.DefaultTTL = o.DefaultTokenLifetime.Duration
	} else {
		cfg.DefaultTTL = 5 * time.Minute
	}
	if o.ClientAuth == jobtokenv1alpha1.ClientAuthPrivateKeyJWT && o.PrivateKeySecretRef != nil {
		var pem string
		pem, err = readSecretKey(ctx, secrets, secretNamespace, o.PrivateKeySecretRef.Name, keyOr(o.PrivateKeySecretRef.Key, "tls.key"))
		cfg.PrivateKeyPEM = []byte(pem)
	} else if o.ClientSecretRef != nil {
		cfg.ClientSecret, err = readSecretKey(ctx, secrets, secretNamespace, o.ClientSecretRef.Name, keyOr(o.ClientSecretRef.Key, "client-secret"))
	}
	if err != nil {
		return nil, err
	}
	return issuer.NewOAuth2(ctx, cfg)
}

// caBundle reads the issuer's CA bundle, inline or from its Secret; nil when it has none.
func caBundle(ctx context.Context, spec jobtokenv1alpha1.TokenIssuerSpec, secretNamespace string, secrets SecretReader) (*x509.CertPool, error) {
	data, field := spec.CABundle, "spec.caBundle"
	if ref := spec.CABundleSecretRef; ref != nil {
		key := keyOr(ref.Key, "ca.crt")
		v, err := readSecretKey(ctx, secrets, secretNamespace, ref.Name, key)
		if err != nil {
			return nil, err
		}
		data, field = []byte(v), fmt.Sprintf("spec.caBundleSecretRef (Secret %s/%s, key %q)", secretNamespace, ref.Name, key)
	}
	if len(data) == 0 {
		return nil, nil
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, &secretError{reason: jobtokenv1alpha1.ReasonInvalidCABundle, msg: field + " holds no PEM certificate"}
	}
	return pool, nil
}
