package controllers

import (
	"context"
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
	if spec.FOLIO != nil {
		return issuer.NewFOLIO(issuer.FOLIOConfig{BaseURL: spec.FOLIO.URL, Tenant: spec.FOLIO.Tenant, HTTPClient: hc, MaxTokenBytes: opts.MaxTokenBytes})
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
	}
	if o.DefaultTokenLifetime != nil {
		cfg.DefaultTTL = o.DefaultTokenLifetime.Duration
	} else {
		cfg.DefaultTTL = 5 * time.Minute
	}
	var err error
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
