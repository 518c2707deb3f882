package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ClientAuthMethod is how the operator authenticates its OAuth client at the token endpoint.
// +kubebuilder:validation:Enum=client_secret_basic;client_secret_post;private_key_jwt
type ClientAuthMethod string

const (
	// ClientAuthSecretBasic sends the client id and secret in an HTTP Basic header.
	ClientAuthSecretBasic ClientAuthMethod = "client_secret_basic"
	// ClientAuthSecretPost sends the client id and secret in the form body.
	ClientAuthSecretPost ClientAuthMethod = "client_secret_post"
	// ClientAuthPrivateKeyJWT signs a short-lived assertion with the client's private key (RFC 7523).
	ClientAuthPrivateKeyJWT ClientAuthMethod = "private_key_jwt"
)

// SecretKeySelector names one key of a Secret. For a TokenIssuer or an ImportJob the
// Secret is in the object's own namespace; for a ClusterTokenIssuer it is in the
// operator's namespace.
type SecretKeySelector struct {
	// name of the Secret.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// key in the Secret's data.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Key string `json:"key,omitempty"`
}

// OAuth2IssuerSpec reaches an OAuth 2.0 / OpenID Connect authorization server.
// Give either issuerURL (endpoints found by discovery) or tokenURL (explicit endpoints).
// Use an OAuth client of its own for jobs: revoking a job's tokens must not touch the
// sessions of the human users who submitted them.
// +kubebuilder:validation:XValidation:rule="has(self.issuerURL) != has(self.tokenURL)",message="exactly one of issuerURL or tokenURL must be set"
// +kubebuilder:validation:XValidation:rule="self.clientAuth != 'private_key_jwt' || has(self.privateKeySecretRef)",message="privateKeySecretRef is required when clientAuth is private_key_jwt"
// +kubebuilder:validation:XValidation:rule="self.clientAuth == 'private_key_jwt' || has(self.clientSecretRef)",message="clientSecretRef is required when clientAuth is client_secret_basic or client_secret_post"
type OAuth2IssuerSpec struct {
	// issuerURL is the issuer identifier. Endpoints are discovered from
	// <issuerURL>/.well-known/openid-configuration, falling back to RFC 8414
	// (/.well-known/oauth-authorization-server); the issuer the document names must
	// equal this URL.
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:Pattern=`^https?://`
	IssuerURL string `json:"issuerURL,omitempty"`
	// tokenURL is the token endpoint, for issuers without discovery.
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:Pattern=`^https?://`
	TokenURL string `json:"tokenURL,omitempty"`
	// revocationURL is the RFC 7009 revocation endpoint; it overrides the discovered one.
	// Without one, tokens cannot be revoked when a job ends.
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:Pattern=`^https?://`
	RevocationURL string `json:"revocationURL,omitempty"`
	// introspectionURL is the RFC 7662 introspection endpoint; it overrides the discovered one.
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:Pattern=`^https?://`
	IntrospectionURL string `json:"introspectionURL,omitempty"`
	// jwksURL is the JSON Web Key Set of the issuer; it overrides the discovered one.
	// With it, a token signed by a key the issuer no longer publishes is rotated at once.
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:Pattern=`^https?://`
	JWKSURL string `json:"jwksURL,omitempty"`
	// clientID is the OAuth client the operator authenticates as.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	ClientID string `json:"clientID"`
	// clientAuth is how the client authenticates at the token endpoint.
	// +optional
	// +kubebuilder:default=client_secret_basic
	ClientAuth ClientAuthMethod `json:"clientAuth,omitempty"`
	// clientSecretRef names the client secret (default key "client-secret").
	// +optional
	ClientSecretRef *SecretKeySelector `json:"clientSecretRef,omitempty"`
	// privateKeySecretRef names a PEM private key (RSA or EC) for private_key_jwt
	// (default key "tls.key").
	// +optional
	PrivateKeySecretRef *SecretKeySelector `json:"privateKeySecretRef,omitempty"`
	// privateKeyID is the "kid" put in the assertion header for private_key_jwt.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	PrivateKeyID string `json:"privateKeyID,omitempty"`
	// scopes requested by default for jobs that name none.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=256
	Scopes []string `json:"scopes,omitempty"`
	// audience requested by default for jobs that name none.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=512
	Audience []string `json:"audience,omitempty"`
	// endpointHosts are further hosts ("host" or "host:port") discovery may place the
	// token, revocation, introspection and JWKS endpoints on. By default a discovered
	// endpoint must be on the issuer's own host and port, and on its scheme or https;
	// endpoints given explicitly in this spec are not restricted.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=261
	EndpointHosts []string `json:"endpointHosts,omitempty"`
	// defaultTokenLifetime is assumed when a token response has no expires_in and the
	// access token is not a JWT with exp and iat.
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s')",message="defaultTokenLifetime must be positive"
	DefaultTokenLifetime *metav1.Duration `json:"defaultTokenLifetime,omitempty"`
}

// FOLIOIssuerSpec reaches the FOLIO authn API (/authn/login-with-expiry,
// /authn/refresh, /authn/logout), whose tokens travel in the cookies folioAccessToken
// and folioRefreshToken. Jobs on a FOLIO issuer use the Password grant.
type FOLIOIssuerSpec struct {
	// url is the base URL of the FOLIO gateway (Okapi or Kong).
	// +required
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:Pattern=`^https?://`
	URL string `json:"url"`
	// tenant is sent as X-Okapi-Tenant.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Tenant string `json:"tenant"`
}

// TokenIssuerSpec says how to reach one identity provider. Exactly one of oauth2 or folio is set.
// +kubebuilder:validation:XValidation:rule="has(self.oauth2) != has(self.folio)",message="exactly one of oauth2 or folio must be set"
// +kubebuilder:validation:XValidation:rule="!(has(self.caBundle) && has(self.caBundleSecretRef))",message="set at most one of caBundle or caBundleSecretRef"
type TokenIssuerSpec struct {
	// oauth2 reaches an OAuth 2.0 / OpenID Connect authorization server.
	// +optional
	OAuth2 *OAuth2IssuerSpec `json:"oauth2,omitempty"`
	// folio reaches the FOLIO authn API.
	// +optional
	FOLIO *FOLIOIssuerSpec `json:"folio,omitempty"`
	// caBundle is a PEM bundle of the certificate authorities trusted for the issuer's
	// HTTPS endpoints, for issuers with a private CA. When set (here or through
	// caBundleSecretRef) these are the only roots trusted; otherwise the system's are.
	// Certificate verification cannot be turned off.
	// +optional
	// +kubebuilder:validation:MaxLength=262144
	CABundle []byte `json:"caBundle,omitempty"`
	// caBundleSecretRef names a Secret key holding the PEM bundle (default key "ca.crt").
	// +optional
	CABundleSecretRef *SecretKeySelector `json:"caBundleSecretRef,omitempty"`
	// insecureAllowPlainHTTP lets the client secret, passwords and tokens travel to the
	// issuer over plain http:// (unencrypted, readable and changeable by anyone on the
	// path). Without it an http:// token, revocation, introspection or FOLIO endpoint
	// is refused. Meant for a development issuer on the same machine; the issuer then
	// carries the condition InsecureTransport=True.
	// +optional
	InsecureAllowPlainHTTP bool `json:"insecureAllowPlainHTTP,omitempty"`
}

// IssuerEndpoints are the endpoints in use, discovered or given.
type IssuerEndpoints struct {
	// token endpoint.
	// +optional
	Token string `json:"token,omitempty"`
	// revocation endpoint.
	// +optional
	Revocation string `json:"revocation,omitempty"`
	// introspection endpoint.
	// +optional
	Introspection string `json:"introspection,omitempty"`
	// jwks endpoint.
	// +optional
	JWKS string `json:"jwks,omitempty"`
}

// TokenIssuerStatus is the observed state of an issuer.
type TokenIssuerStatus struct {
	// observedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// conditions: Ready says whether jobs can use the issuer, with a reason users can act on.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +patchStrategy=merge
	// +patchMergeKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty" patchStrategy:"merge" patchMergeKey:"type"`
	// endpoints in use.
	// +optional
	Endpoints *IssuerEndpoints `json:"endpoints,omitempty"`
	// keyIDs are the signing key ids the issuer publishes in its JWKS, as last checked.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=256
	KeyIDs []string `json:"keyIDs,omitempty"`
	// lastCheckTime is when the issuer was last checked.
	// +optional
	LastCheckTime *metav1.Time `json:"lastCheckTime,omitempty"`
}

// TokenIssuer says how to reach one identity provider, for ImportJobs of its namespace.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=ti,categories=jobtoken
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Status",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].message`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type TokenIssuer struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec says how to reach the identity provider.
	// +required
	Spec TokenIssuerSpec `json:"spec"`
	// status is the observed state.
	// +optional
	Status TokenIssuerStatus `json:"status,omitempty"`
}

// TokenIssuerList is a list of TokenIssuers.
// +kubebuilder:object:root=true
type TokenIssuerList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []TokenIssuer `json:"items"`
}

// ClusterTokenIssuerSpec says how to reach one identity provider and who may use it.
type ClusterTokenIssuerSpec struct {
	TokenIssuerSpec `json:",inline"`
	// allowed says which namespaces may use the issuer and how. It is required: a
	// cluster issuer is never open to every namespace unless it says so
	// (namespaceSelector: {}).
	// +required
	Allowed ClusterIssuerAllowed `json:"allowed"`
}

// ClusterIssuerAllowed limits who may use a ClusterTokenIssuer and what they may ask
// for. A namespace may use it when it is listed in namespaces or matched by
// namespaceSelector. Jobs that break a limit are refused (Stalled, reason
// IssuerNotAllowed) before any request reaches the issuer.
// +kubebuilder:validation:XValidation:rule="has(self.namespaces) || has(self.namespaceSelector)",message="allowed needs namespaces or namespaceSelector (namespaceSelector: {} allows every namespace)"
type ClusterIssuerAllowed struct {
	// namespaces that may use the issuer, by name.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MaxLength=63
	Namespaces []string `json:"namespaces,omitempty"`
	// namespaceSelector selects, by label, further namespaces that may use the issuer;
	// the empty selector ({}) selects every namespace.
	// +optional
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`
	// grants jobs may use with the issuer.
	// +required
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=4
	Grants []GrantType `json:"grants"`
	// scopes is the most a job may ask for: every scope a job requests must be listed.
	// Empty means the issuer's default scopes (spec.oauth2.scopes) are the ceiling.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=256
	Scopes []string `json:"scopes,omitempty"`
	// audience is the most a job may ask for: every audience a job requests must be
	// listed. Empty means the issuer's default audience (spec.oauth2.audience) is the ceiling.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=512
	Audience []string `json:"audience,omitempty"`
}

// ClusterTokenIssuer says how to reach one identity provider, for ImportJobs of the
// namespaces it allows. Its Secrets are read from the operator's namespace.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=cti,categories=jobtoken
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Status",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].message`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ClusterTokenIssuer struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec says how to reach the identity provider and who may use it.
	// +required
	Spec ClusterTokenIssuerSpec `json:"spec"`
	// status is the observed state.
	// +optional
	Status TokenIssuerStatus `json:"status,omitempty"`
}

// ClusterTokenIssuerList is a list of ClusterTokenIssuers.
// +kubebuilder:object:root=true
type ClusterTokenIssuerList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClusterTokenIssuer `json:"items"`
}
