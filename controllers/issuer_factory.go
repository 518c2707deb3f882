package controllers

import (
	"context"
	"time"

	jobtokenv1alpha1 "github.com/jobtoken/jobtoken/api/v1alpha1"
	"github.com/jobtoken/jobtoken/internal/issuer"
)

// NewIssuerClient builds the dialect client an issuer spec describes, reading the client
// secret or private key from secretNamespace. For OAuth2 with an issuerURL it runs
// discovery, so an unreachable or mismatching issuer fails here.
func NewIssuerClient(ctx context.Context, spec jobtokenv1alpha1.TokenIssuerSpec, secretNamespace string, secrets SecretReader) (issuer.Client, error) {
	if spec.FOLIO != nil {
		return issuer.NewFOLIO(issuer.FOLIOConfig{BaseURL: spec.FOLIO.URL, Tenant: spec.FOLIO.Tenant})
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
