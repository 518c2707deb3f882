package issuer

// The OAuth 2.0 / OpenID Connect dialect: discovery (OIDC and RFC 8414), the token
// endpoint with the client_credentials, password, refresh_token and token-exchange
// (RFC 8693) grants, client authentication by secret (basic, post) or private_key_jwt
// (RFC 7523), revocation (RFC 7009) and the JWKS key ids.
//
// Why the token endpoint is spoken by hand and not through golang.org/x/oauth2:
//   - x/oauth2 computes Token.Expiry with time.Now(); the operator needs an injected
//     clock (tests, and "receipt time on our own clock" as the one source of truth);
//   - its errors lose what classification needs: body-read failures are formatted
//     with %v (no errors.Is), there is no hook to know whether the request was written
//     (retry vs. never replay a refresh), and RetrieveError.Error() embeds the raw
//     response body, which can echo token bytes;
//   - AuthStyleAutoDetect sends a second request when the first is refused, which is
//     unsafe around single-use refresh tokens, and there is no private_key_jwt, token
//     exchange, revocation or Keycloak refresh_expires_in support;
//   - the fuzz targets need a pure parser over the response bytes.
// What is kept from x/oauth2's behaviour (internal/token.go): expires_in as a number or
// a numeric string, "error" in a 200 response is an error, a missing access_token is an
// error, form-encoded responses are accepted, the old refresh token is kept when the
// response carries none, and client_secret_basic form-encodes id and secret.

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"k8s.io/utils/clock"
)

// Client authentication methods (the token_endpoint_auth_method names of RFC 7591).
const (
	ClientAuthSecretBasic   = "client_secret_basic"
	ClientAuthSecretPost    = "client_secret_post"
	ClientAuthPrivateKeyJWT = "private_key_jwt"
	// ClientAuthNone sends only client_id (a public client). Not offered by the CRD.
	ClientAuthNone = "none"
)

// Token types and the token-exchange grant (RFC 8693).
const (
	GrantTypeTokenExchange    = "urn:ietf:params:oauth:grant-type:token-exchange"
	TokenTypeAccessToken      = "urn:ietf:params:oauth:token-type:access_token"
	TokenTypeRefreshToken     = "urn:ietf:params:oauth:token-type:refresh_token"
	clientAssertionTypeJWT    = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
	clientAssertionLifetime   = 60 * time.Second
	wellKnownOpenIDConfig     = "/.well-known/openid-configuration"
	wellKnownOAuthAuthzServer = "/.well-known/oauth-authorization-server"
)

// OAuth2Config configures an OAuth 2.0 / OIDC issuer client.
type OAuth2Config struct {
	// IssuerURL enables discovery (OIDC, then RFC 8414). The discovered "issuer" must
	// equal it (a trailing slash aside).
	IssuerURL string
	// Explicit endpoints: used when IssuerURL is empty, and override discovered ones
	// when set. TokenURL is required without IssuerURL.
	TokenURL, RevocationURL, IntrospectionURL, JWKSURL string
	// ClientID and ClientSecret of the operator's OAuth client.
	ClientID, ClientSecret string
	// ClientAuth is client_secret_basic (default), client_secret_post, private_key_jwt
	// or none.
	ClientAuth string
	// PrivateKeyPEM (PKCS#1, PKCS#8 or SEC 1; RSA, ECDSA or Ed25519) and its key id,
	// for private_key_jwt.
	PrivateKeyPEM []byte
	PrivateKeyID  string
	// Scopes and Audience requested when a grant names none.
	Scopes   []string
	Audience []string
	// DefaultTTL is the access-token lifetime assumed when the response has neither
	// expires_in nor a JWT access token with exp and iat. Zero means such a response
	// is an error.
	DefaultTTL time.Duration
	// HTTPClient sends the requests (default: NewHTTPClient with its defaults).
	// Redirects are never followed, except by discovery, which carries no credentials.
	HTTPClient *http.Client
	// Clock stamps responses (default: the real clock).
	Clock clock.PassiveClock
	// MaxTokenBytes is the largest access or refresh token accepted (default
	// DefaultMaxTokenBytes); a larger one makes the request fail.
	MaxTokenBytes int
	// AllowPlainHTTP lets credentials and tokens travel over http:// endpoints. Off,
	// such endpoints are a configuration error and no credential is sent to them.
	AllowPlainHTTP bool
	// EndpointHosts are further hosts ("host" or "host:port") discovery may place
	// endpoints on; by default they must be on the issuer's own scheme and host.
	EndpointHosts []string
}

// Endpoints are an issuer's endpoints, discovered or configured.
type Endpoints struct {
	Issuer        string
	Token         string
	Revocation    string
	Introspection string
	JWKS          string
	EndSession    string
	// GrantTypesSupported and TokenEndpointAuthMethodsSupported as discovered (may be
	// empty; informational).
	GrantTypesSupported               []string
	TokenEndpointAuthMethodsSupported []string
	// DiscoveryURL is the document the endpoints came from; empty when configured.
	DiscoveryURL string
}

// OAuth2 is the OAuth 2.0 / OIDC dialect. It is safe for concurrent use.
type OAuth2 struct {
	cfg       OAuth2Config
	endpoints Endpoints
	t         transport
	signer    crypto.Signer
	method    jwt.SigningMethod
}

var (
	_ Client     = (*OAuth2)(nil)
	_ KeyChecker = (*OAuth2)(nil)
)

// NewOAuth2 validates cfg and, when IssuerURL is set, runs discovery. Every error is an
// *Error: ClassConfiguration for a bad config (naming the field), a bad or mismatching
// discovery document; ClassTransient when the issuer could not be reached.
func NewOAuth2(ctx context.Context, cfg OAuth2Config) (*OAuth2, error) {
	cfgErr := func(format string, args ...any) error {
		return &Error{Class: ClassConfiguration, Op: "config", Description: fmt.Sprintf(format, args...)}
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.ClientID == "" {
		return nil, cfgErr("ClientID is required")
	}
	if cfg.DefaultTTL < 0 {
		return nil, cfgErr("DefaultTTL must not be negative")
	}
	o := &OAuth2{cfg: cfg, t: newTransport(cfg.HTTPClient, cfg.Clock)}
	o.t.allowPlainHTTP = cfg.AllowPlainHTTP
	switch cfg.ClientAuth {
	case "":
		o.cfg.ClientAuth = ClientAuthSecretBasic
		fallthrough
	case ClientAuthSecretBasic, ClientAuthSecretPost:
		if cfg.ClientSecret == "" {
			return nil, cfgErr("ClientSecret is required for ClientAuth %s", o.cfg.ClientAuth)
		}
	case ClientAuthPrivateKeyJWT:
		if len(cfg.PrivateKeyPEM) == 0 {
			return nil, cfgErr("PrivateKeyPEM is required for ClientAuth private_key_jwt")
		}
		var err error
		if o.signer, o.method, err = parseSigningKey(cfg.PrivateKeyPEM); err != nil {
			return nil, cfgErr("PrivateKeyPEM: %v", err)
		}
	case ClientAuthNone:
	default:
		return nil, cfgErr("ClientAuth %q is not one of client_secret_basic, client_secret_post, private_key_jwt, none", cfg.ClientAuth)
	}
	for _, f := range []struct{ name, v string }{
		{"IssuerURL", cfg.IssuerURL}, {"TokenURL", cfg.TokenURL}, {"RevocationURL", cfg.RevocationURL},
		{"IntrospectionURL", cfg.IntrospectionURL}, {"JWKSURL", cfg.JWKSURL},
	} {
		if f.v == "" {
			continue
		}
		if err := checkHTTPURL(f.v); err != nil {
			return nil, cfgErr("%s: %v", f.name, err)
		}
	}
	if cfg.IssuerURL == "" && cfg.TokenURL == "" {
		return nil, cfgErr("IssuerURL or TokenURL is required")
	}
	if cfg.IssuerURL != "" {
		ep, err := Discover(ctx, cfg.HTTPClient, cfg.IssuerURL, cfg.EndpointHosts...)
		if err != nil {
			return nil, err
		}
		o.endpoints = *ep
	}
	for _, f := range []struct {
		dst *string
		v   string
	}{
		{&o.endpoints.Token, cfg.TokenURL}, {&o.endpoints.Revocation, cfg.RevocationURL},
		{&o.endpoints.Introspection, cfg.IntrospectionURL}, {&o.endpoints.JWKS, cfg.JWKSURL},
	} {
		if f.v != "" {
			*f.dst = f.v
		}
	}
	if o.endpoints.Token == "" {
		return nil, cfgErr("the discovery document of %s names no token_endpoint and TokenURL is empty", cfg.IssuerURL)
	}
	if !cfg.AllowPlainHTTP {
		for _, f := range []struct{ name, v string }{
			{"token endpoint", o.endpoints.Token}, {"revocation endpoint", o.endpoints.Revocation},
			{"introspection endpoint", o.endpoints.Introspection},
		} {
			if strings.HasPrefix(strings.ToLower(f.v), "http://") {
				return nil, cfgErr("the %s %s is plain http, which would carry credentials and tokens unencrypted: use https, or allow plain http on the issuer (insecureAllowPlainHTTP)", f.name, f.v)
			}
		}
	}
	return o, nil
}

// Endpoints returns the endpoints in use.
func (o *OAuth2) Endpoints() Endpoints { return o.endpoints }

func checkHTTPURL(v string) error {
	u, err := url.Parse(v)
	if err != nil {
		return errors.New("not a URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return errors.New("must be an absolute http or https URL")
	}
	if u.User != nil {
		return errors.New("must not carry user info")
	}
	return nil
}

// discoveryDoc is the subset of OIDC Discovery / RFC 8414 metadata used here.
type discoveryDoc struct {
	Issuer                            string   `json:"issuer"`
	TokenEndpoint                     string   `json:"token_endpoint"`
	RevocationEndpoint                string   `json:"revocation_endpoint"`
	IntrospectionEndpoint             string   `json:"introspection_endpoint"`
	JWKSURI                           string   `json:"jwks_uri"`
	EndSessionEndpoint                string   `json:"end_session_endpoint"`
	GrantTypesSupported               []string `json:"grant_types_supported"`
	TokenEndpointAuthMethodsSupported []string `json:"token_endpoint_auth_methods_supported"`
}

// checkEndpointHost refuses an endpoint that discovery moved off the issuer: another
// host (or port), or another scheme than the issuer's or https, unless its host is listed.
func checkEndpointHost(issuer *url.URL, endpoint string, allowed []string) error {
	u, err := url.Parse(endpoint)
	if err != nil {
		return errors.New("not a URL")
	}
	if slices.Contains(allowed, u.Host) || slices.Contains(allowed, u.Hostname()) {
		return nil
	}
	if !strings.EqualFold(u.Host, issuer.Host) {
		return fmt.Errorf("is on host %s, not the issuer's %s (list it in the issuer's endpoint hosts to allow it)", u.Host, issuer.Host)
	}
	if u.Scheme != issuer.Scheme && u.Scheme != "https" {
		return fmt.Errorf("uses %s, not the issuer's %s", u.Scheme, issuer.Scheme)
	}
	return nil
}

// Discover reads the issuer's metadata: OIDC .well-known/openid-configuration first,
// then RFC 8414 .well-known/oauth-authorization-server (inserted before the issuer's
// path, then appended to it) when the former is missing (any 4xx). The document's
// "issuer" must equal issuerURL (a trailing slash aside), and its endpoints must be
// absolute http(s) URLs on the issuer's host and scheme (https always allowed), or on
// one of allowedHosts. Errors are *Error: Transient for network errors, 5xx and 429;
// Configuration for a missing or bad document and an issuer mismatch.
func Discover(ctx context.Context, httpClient *http.Client, issuerURL string, allowedHosts ...string) (*Endpoints, error) {
	cfgErr := func(format string, args ...any) error {
		return &Error{Class: ClassConfiguration, Op: "discovery", Description: fmt.Sprintf(format, args...)}
	}
	if err := checkHTTPURL(issuerURL); err != nil {
		return nil, cfgErr("issuer URL %q: %v", issuerURL, err)
	}
	u, _ := url.Parse(issuerURL)
	u.RawQuery, u.Fragment = "", ""
	base := strings.TrimSuffix(u.String(), "/")
	path := strings.TrimSuffix(u.EscapedPath(), "/")
	root := &url.URL{Scheme: u.Scheme, Host: u.Host}
	candidates := []string{base + wellKnownOpenIDConfig, root.String() + wellKnownOAuthAuthzServer + path}
	if path != "" {
		candidates = append(candidates, base+wellKnownOAuthAuthzServer)
	}
	// Discovery follows redirects (a plain GET carrying nothing secret).
	if httpClient == nil {
		httpClient = NewHTTPClient(HTTPOptions{})
	}
	follow := *httpClient
	follow.CheckRedirect = nil
	hc := &follow
	t := transport{client: hc, clock: clock.RealClock{}}
	var last *Error
	for _, docURL := range candidates {
		c := call{op: "discovery", method: http.MethodGet, url: docURL,
			header: http.Header{"Accept": {"application/json"}}, idempotent: true}
		r, err := t.do(ctx, c)
		if err != nil {
			return nil, err
		}
		if r.status >= 400 && r.status < 500 && r.status != http.StatusTooManyRequests {
			last = t.statusError(c, r, "", fmt.Sprintf("GET %s: %s", docURL, http.StatusText(r.status)))
			continue
		}
		if r.status != http.StatusOK {
			return nil, t.statusError(c, r, "", fmt.Sprintf("GET %s: %s", docURL, http.StatusText(r.status)))
		}
		var doc discoveryDoc
		if err := json.Unmarshal(r.body, &doc); err != nil {
			return nil, cfgErr("%s is not a JSON metadata document: %v", docURL, scrubber(nil).wrap(err))
		}
		if strings.TrimSuffix(doc.Issuer, "/") != base {
			return nil, cfgErr("%s names issuer %q, not %q", docURL, scrubber(nil).text(doc.Issuer, 200), issuerURL)
		}
		for _, f := range []struct{ name, v string }{
			{"token_endpoint", doc.TokenEndpoint}, {"revocation_endpoint", doc.RevocationEndpoint},
			{"introspection_endpoint", doc.IntrospectionEndpoint}, {"jwks_uri", doc.JWKSURI},
			{"end_session_endpoint", doc.EndSessionEndpoint},
		} {
			if f.v == "" {
				continue
			}
			if err := checkHTTPURL(f.v); err != nil {
				return nil, cfgErr("%s: %s %q: %v", docURL, f.name, scrubber(nil).text(f.v, 200), err)
			}
			if f.name == "end_session_endpoint" {
				continue // never called
			}
			if err := checkEndpointHost(u, f.v, allowedHosts); err != nil {
				return nil, cfgErr("%s: %s %q %v", docURL, f.name, scrubber(nil).text(f.v, 200), err)
			}
		}
		return &Endpoints{
			Issuer: doc.Issuer, Token: doc.TokenEndpoint, Revocation: doc.RevocationEndpoint,
			Introspection: doc.IntrospectionEndpoint, JWKS: doc.JWKSURI, EndSession: doc.EndSessionEndpoint,
			GrantTypesSupported: doc.GrantTypesSupported, TokenEndpointAuthMethodsSupported: doc.TokenEndpointAuthMethodsSupported,
			DiscoveryURL: docURL,
		}, nil
	}
	last.Class = ClassConfiguration
	last.Description = fmt.Sprintf("no discovery document at %s", strings.Join(candidates, " or "))
	return nil, last
}

// Mint obtains a fresh pair with the grant.
func (o *OAuth2) Mint(ctx context.Context, g Grant) (*TokenSet, error) {
	form := url.Values{}
	var secrets []string
	consumed := false
	scopes, audience := g.Scopes, g.Audience
	if len(scopes) == 0 {
		scopes = o.cfg.Scopes
	}
	if len(audience) == 0 {
		audience = o.cfg.Audience
	}
	oldRefresh := ""
	switch g.Type {
	case GrantClientCredentials:
		form.Set("grant_type", "client_credentials")
	case GrantPassword:
		if g.Username == "" || g.Password == "" {
			return nil, &Error{Class: ClassConfiguration, Op: "mint", Description: "the Password grant needs a username and a password"}
		}
		form.Set("grant_type", "password")
		form.Set("username", g.Username)
		form.Set("password", g.Password)
		secrets = append(secrets, g.Password)
	case GrantTokenExchange:
		if g.SubjectToken == "" {
			return nil, &Error{Class: ClassConfiguration, Op: "mint", Description: "the TokenExchange grant needs a subject token"}
		}
		form.Set("grant_type", GrantTypeTokenExchange)
		form.Set("subject_token", g.SubjectToken)
		st := g.SubjectTokenType
		if st == "" {
			st = TokenTypeAccessToken
		}
		form.Set("subject_token_type", st)
		if g.RequestedTokenType != "" {
			form.Set("requested_token_type", g.RequestedTokenType)
		}
		secrets = append(secrets, g.SubjectToken)
		consumed = true
	case GrantRefreshToken:
		if g.RefreshToken == "" {
			return nil, &Error{Class: ClassConfiguration, Op: "mint", Description: "the RefreshToken grant needs a refresh token"}
		}
		form.Set("grant_type", "refresh_token")
		form.Set("refresh_token", g.RefreshToken)
		secrets = append(secrets, g.RefreshToken)
		oldRefresh, consumed = g.RefreshToken, true
	default:
		return nil, &Error{Class: ClassConfiguration, Op: "mint", Description: fmt.Sprintf("grant %q is not supported by the OAuth2 dialect", g.Type)}
	}
	if len(scopes) > 0 {
		form.Set("scope", strings.Join(scopes, " "))
	}
	// RFC 8693 §2.1 allows "audience" several times; Hydra, Keycloak and Auth0 read
	// it for the other grants too.
	for _, a := range audience {
		form.Add("audience", a)
	}
	return o.tokenRequest(ctx, "mint", form, secrets, consumed, oldRefresh, g.Type == GrantTokenExchange)
}

// Refresh redeems a refresh token once (RFC 6749 §6), without a scope (same scope as
// before). The old refresh token is kept only when the response carries none.
func (o *OAuth2) Refresh(ctx context.Context, refreshToken string) (*TokenSet, error) {
	if refreshToken == "" {
		return nil, &Error{Class: ClassConfiguration, Op: "refresh", Description: "no refresh token to redeem"}
	}
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refreshToken}}
	return o.tokenRequest(ctx, "refresh", form, []string{refreshToken}, true, refreshToken, false)
}

// tokenRequest posts form to the token endpoint. consumed says whether a success the
// dialect cannot use may have burned the grant's input (a refresh token, a subject token).
// redeem allows redeeming a refresh token that came alone (see below) once.
func (o *OAuth2) tokenRequest(ctx context.Context, op string, form url.Values, secrets []string, consumed bool, oldRefresh string, redeem bool) (*TokenSet, error) {
	c, err := o.authedCall(op, o.endpoints.Token, form, secrets)
	if err != nil {
		return nil, err
	}
	r, ierr := o.t.do(ctx, c)
	if ierr != nil {
		return nil, ierr
	}
	if r.status < 200 || r.status > 299 {
		return nil, o.oauthError(c, r)
	}
	ts, onlyRefresh, perr := parseTokenResponse(r.body, r.header.Get("Content-Type"), r.receivedAt, o.cfg.DefaultTTL)
	if perr == nil {
		// Checked before a refresh token that came alone is redeemed: an oversized one is
		// never sent back.
		perr = checkTokenSizes(ts, o.cfg.MaxTokenBytes)
	}
	if perr == nil && onlyRefresh {
		// RFC 8693 puts the issued token in "access_token" whatever its type: with
		// issued_token_type refresh_token and no separate refresh_token, that is a refresh
		// token, which must never reach the workers. Redeem it once for an access token.
		if !redeem {
			return nil, protocolError(c, r, true, "token response: the answer to a refresh carries only a refresh token")
		}
		rt := ts.RefreshToken
		return o.tokenRequest(ctx, op, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, []string{rt}, true, rt, false)
	}
	if perr != nil {
		var eib *errorInBody
		if errors.As(perr, &eib) {
			return nil, o.classify(c, r, eib.code, eib.desc)
		}
		return nil, protocolError(c, r, consumed, "token response: "+perr.Error())
	}
	if ts.RefreshToken == "" {
		ts.RefreshToken = oldRefresh
	}
	return ts, nil
}

// authedCall builds a form POST with the client's authentication.
func (o *OAuth2) authedCall(op, endpoint string, form url.Values, secrets []string) (call, error) {
	h := http.Header{
		"Content-Type": {"application/x-www-form-urlencoded"},
		"Accept":       {"application/json"},
	}
	switch o.cfg.ClientAuth {
	case ClientAuthSecretBasic:
		// RFC 6749 §2.3.1: id and secret are form-url-encoded before Basic encoding.
		cred := url.QueryEscape(o.cfg.ClientID) + ":" + url.QueryEscape(o.cfg.ClientSecret)
		basic := base64.StdEncoding.EncodeToString([]byte(cred))
		h.Set("Authorization", "Basic "+basic)
		secrets = append(secrets, o.cfg.ClientSecret, basic)
	case ClientAuthSecretPost:
		form.Set("client_id", o.cfg.ClientID)
		form.Set("client_secret", o.cfg.ClientSecret)
		secrets = append(secrets, o.cfg.ClientSecret)
	case ClientAuthPrivateKeyJWT:
		assertion, err := o.clientAssertion()
		if err != nil {
			return call{}, &Error{Class: ClassConfiguration, Op: op, Description: "signing the client assertion failed", Err: scrubber(nil).wrap(err)}
		}
		form.Set("client_id", o.cfg.ClientID)
		form.Set("client_assertion_type", clientAssertionTypeJWT)
		form.Set("client_assertion", assertion)
		secrets = append(secrets, assertion)
	case ClientAuthNone:
		form.Set("client_id", o.cfg.ClientID)
	}
	return call{op: op, method: http.MethodPost, url: endpoint, header: h, body: []byte(form.Encode()), secrets: secrets}, nil
}

// clientAssertion signs an RFC 7523 client assertion for the token endpoint.
func (o *OAuth2) clientAssertion() (string, error) {
	now := o.cfg.Clock.Now()
	jti := make([]byte, 16)
	if _, err := rand.Read(jti); err != nil {
		return "", err
	}
	claims := jwt.RegisteredClaims{
		Issuer:    o.cfg.ClientID,
		Subject:   o.cfg.ClientID,
		Audience:  jwt.ClaimStrings{o.endpoints.Token},
		ID:        hex.EncodeToString(jti),
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(clientAssertionLifetime)),
	}
	tok := jwt.NewWithClaims(o.method, claims)
	if o.cfg.PrivateKeyID != "" {
		tok.Header["kid"] = o.cfg.PrivateKeyID
	}
	return tok.SignedString(o.signer)
}

// parseSigningKey reads an RSA, ECDSA or Ed25519 private key and picks its JWS algorithm.
func parseSigningKey(data []byte) (crypto.Signer, jwt.SigningMethod, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, nil, errors.New("no PEM block found")
	}
	if rk, err := jwt.ParseRSAPrivateKeyFromPEM(data); err == nil {
		if rk.N.BitLen() < 2048 {
			return nil, nil, errors.New("RSA keys must have at least 2048 bits")
		}
		return rk, jwt.SigningMethodRS256, nil
	}
	if ek, err := jwt.ParseECPrivateKeyFromPEM(data); err == nil {
		switch ek.Curve {
		case elliptic.P256():
			return ek, jwt.SigningMethodES256, nil
		case elliptic.P384():
			return ek, jwt.SigningMethodES384, nil
		case elliptic.P521():
			return ek, jwt.SigningMethodES512, nil
		}
		return nil, nil, errors.New("unsupported elliptic curve")
	}
	if k, err := jwt.ParseEdPrivateKeyFromPEM(data); err == nil {
		if ed, ok := k.(ed25519.PrivateKey); ok {
			return ed, jwt.SigningMethodEdDSA, nil
		}
	}
	return nil, nil, fmt.Errorf("PEM block %q is not an RSA, ECDSA or Ed25519 private key (PKCS#1, PKCS#8 or SEC 1)", block.Type)
}

var (
	_ crypto.Signer = (*rsa.PrivateKey)(nil)
	_ crypto.Signer = (*ecdsa.PrivateKey)(nil)
)

// Revoke revokes the refresh token (hint refresh_token), then the access token (hint
// access_token), per RFC 7009. 200 for a token the issuer does not know is success, as
// is unsupported_token_type for the access token (the issuer cannot revoke access
// tokens; they end at their expiry) and a "Session not active" style answer (the token
// is dead already). Both are attempted; the first error is returned.
func (o *OAuth2) Revoke(ctx context.Context, tokens Revocation) error {
	if tokens.AccessToken == "" && tokens.RefreshToken == "" && len(tokens.Replaced) == 0 {
		return nil
	}
	if o.endpoints.Revocation == "" {
		return &Error{Class: ClassConfiguration, Op: "revoke", Description: "the issuer has no revocation endpoint (set RevocationURL)"}
	}
	type token struct{ v, hint string }
	all := []token{{tokens.RefreshToken, "refresh_token"}, {tokens.AccessToken, "access_token"}}
	// A replaced chain's token is revoked too: RFC 7009 asks the issuer to end what was
	// issued on the same grant, so the chain a lost answer rotated on ends with it; a
	// token already spent or expired is answered 200.
	for _, rt := range tokens.Replaced {
		all = append(all, token{rt, "refresh_token"})
	}
	var first error
	for _, tk := range all {
		if tk.v == "" {
			continue
		}
		if err := o.revokeOne(ctx, tk.v, tk.hint); err != nil && first == nil {
			first = err
		}
	}
	return first
}

func (o *OAuth2) revokeOne(ctx context.Context, token, hint string) error {
	form := url.Values{"token": {token}, "token_type_hint": {hint}}
	c, err := o.authedCall("revoke", o.endpoints.Revocation, form, []string{token})
	if err != nil {
		return err
	}
	c.idempotent = true
	r, ierr := o.t.do(ctx, c)
	if ierr != nil {
		return ierr
	}
	if r.status >= 200 && r.status <= 299 {
		return nil
	}
	e := o.oauthError(c, r)
	switch {
	case e.Class == ClassDeadChain:
		return nil // the token is dead already
	case e.Code == "unsupported_token_type" && hint == "access_token":
		return nil
	}
	return e
}

// KeyIDs returns the key ids in the issuer's JWKS. Without a JWKS URL it returns none
// (access tokens are then opaque and no kid check applies).
func (o *OAuth2) KeyIDs(ctx context.Context) ([]string, error) {
	if o.endpoints.JWKS == "" {
		return nil, nil
	}
	c := call{op: "jwks", method: http.MethodGet, url: o.endpoints.JWKS, header: http.Header{"Accept": {"application/json"}}, idempotent: true}
	r, err := o.t.do(ctx, c)
	if err != nil {
		return nil, err
	}
	if r.status != http.StatusOK {
		return nil, o.t.statusError(c, r, "", "GET "+o.endpoints.JWKS+": "+http.StatusText(r.status))
	}
	var set struct {
		Keys []struct {
			Kid string `json:"kid"`
			Use string `json:"use"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(r.body, &set); err != nil {
		return nil, &Error{Class: ClassConfiguration, Op: "jwks", StatusCode: r.status, Description: "the JWKS is not a JSON key set", Err: scrubber(nil).wrap(err)}
	}
	kids := make([]string, 0, len(set.Keys))
	for _, k := range set.Keys {
		if k.Kid != "" && k.Use != "enc" {
			kids = append(kids, k.Kid)
		}
	}
	return kids, nil
}

// oauthError turns a non-2xx answer into an *Error, reading an RFC 6749 §5.2 body when
// there is one.
func (o *OAuth2) oauthError(c call, r *reply) *Error {
	var body oauthErrorBody
	_ = json.Unmarshal(r.body, &body)
	if body.Error == "" {
		if v, err := url.ParseQuery(string(r.body)); err == nil && isFormContent(r.header.Get("Content-Type")) {
			body.Error, body.ErrorDescription = v.Get("error"), v.Get("error_description")
		}
	}
	return o.classify(c, r, body.Error, body.ErrorDescription)
}

// classify sorts an error answer by its OAuth error code, Keycloak's descriptions, and
// finally its status.
func (o *OAuth2) classify(c call, r *reply, code, desc string) *Error {
	e := o.t.statusError(c, r, code, desc)
	if class, ok := classifyOAuthCode(code, desc); ok {
		e.Class = class
	}
	return e
}

// deadChainDescriptions are Keycloak's error_description values (PROTOCOLS.md §2.3)
// that mean the refresh chain or session is over, whatever the error code.
var deadChainDescriptions = []string{
	"token is not active",
	"session not active",
	"offline session not active",
	"offline user session not found",
	"session doesn't have required client",
	"maximum allowed refresh token reuse exceeded",
	"stale token",
	"invalid refresh token",
	"user disabled",
}

// classifyOAuthCode maps an OAuth error code (RFC 6749 §5.2, RFC 6750, RFC 8693,
// RFC 7009, fosite) and description to a class; ok is false when neither is known.
func classifyOAuthCode(code, desc string) (Class, bool) {
	d := strings.ToLower(desc)
	for _, s := range deadChainDescriptions {
		if strings.Contains(d, s) {
			return ClassDeadChain, true
		}
	}
	switch code {
	case "invalid_grant", "invalid_token", "token_inactive", "token_signature_mismatch":
		return ClassDeadChain, true
	case "invalid_client", "unauthorized_client", "unsupported_grant_type", "invalid_scope",
		"invalid_request", "invalid_target", "unsupported_token_type", "access_denied",
		"request_unauthorized", "misconfiguration", "consent_required", "login_required":
		return ClassConfiguration, true
	case "server_error", "temporarily_unavailable", "slow_down":
		return ClassTransient, true
	}
	return "", false
}

// oauthErrorBody is an RFC 6749 §5.2 error response.
type oauthErrorBody struct {
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
	ErrorURI         string `json:"error_uri"`
}

// errorInBody is what the parser returns for a response carrying an "error" member
// ("some unorthodox servers respond 200 in error case", x/oauth2). Its message names
// only the code; the description is scrubbed where it becomes an *Error.
type errorInBody struct{ code, desc string }

func (e *errorInBody) Error() string { return "the response carries an error member" }

// tokenResponse is a token-endpoint success response (RFC 6749 §5.1, RFC 8693 §2.2,
// Keycloak's refresh_expires_in). Numbers may arrive as JSON numbers or strings.
type tokenResponse struct {
	AccessToken      string          `json:"access_token"`
	TokenType        string          `json:"token_type"`
	ExpiresIn        json.RawMessage `json:"expires_in"`
	RefreshToken     string          `json:"refresh_token"`
	RefreshExpiresIn json.RawMessage `json:"refresh_expires_in"`
	IssuedTokenType  string          `json:"issued_token_type"`
	Scope            string          `json:"scope"`
	Error            string          `json:"error"`
	ErrorDescription string          `json:"error_description"`
}

// parseTokenResponse parses a 2xx token response received at now. Expiry: expires_in,
// else the access token's JWT exp-iat (unverified), else defaultTTL, else an error.
// refresh_expires_in > 0 sets RefreshExpiresAt (0 means no expiry). KeyID is the access
// token's JWS kid. An "error" member makes it return an *errorInBody. An RFC 8693 answer
// whose issued token is a refresh token (issued_token_type refresh_token, no
// refresh_token member) returns onlyRefresh with that token as RefreshToken and no
// AccessToken. Errors never contain token bytes.
func parseTokenResponse(body []byte, contentType string, now time.Time, defaultTTL time.Duration) (ts *TokenSet, onlyRefresh bool, err error) {
	var tr tokenResponse
	if isFormContent(contentType) {
		v, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, false, errors.New("the form-encoded body does not parse")
		}
		tr = tokenResponse{
			AccessToken: v.Get("access_token"), TokenType: v.Get("token_type"), RefreshToken: v.Get("refresh_token"),
			IssuedTokenType: v.Get("issued_token_type"), Scope: v.Get("scope"),
			Error: v.Get("error"), ErrorDescription: v.Get("error_description"),
		}
		if s := v.Get("expires_in"); s != "" {
			tr.ExpiresIn = json.RawMessage(strconv.Quote(s))
		}
		if s := v.Get("refresh_expires_in"); s != "" {
			tr.RefreshExpiresIn = json.RawMessage(strconv.Quote(s))
		}
	} else if err := json.Unmarshal(body, &tr); err != nil {
		// The decoder's message may quote the body; say only where it failed.
		return nil, false, errors.New("the body is not a JSON token response")
	}
	if tr.Error != "" {
		return nil, false, &errorInBody{code: tr.Error, desc: tr.ErrorDescription}
	}
	if tr.AccessToken == "" {
		return nil, false, errors.New("the response has no access_token")
	}
	if tr.IssuedTokenType == TokenTypeRefreshToken && tr.RefreshToken == "" {
		return &TokenSet{RefreshToken: tr.AccessToken, IssuedAt: now}, true, nil
	}
	ts = &TokenSet{
		AccessToken:  tr.AccessToken,
		RefreshToken: tr.RefreshToken,
		TokenType:    normalizeTokenType(tr.TokenType),
		IssuedAt:     now,
	}
	claims, kid := unverifiedJWT(tr.AccessToken)
	ts.KeyID = kid
	expiresIn, ok, err := jsonSeconds(tr.ExpiresIn)
	if err != nil {
		return nil, false, fmt.Errorf("expires_in: %w", err)
	}
	switch {
	case ok && expiresIn > 0:
		ts.ExpiresAt = now.Add(expiresIn)
	case jwtLifetime(claims) > 0:
		ts.ExpiresAt = now.Add(jwtLifetime(claims))
	case defaultTTL > 0:
		ts.ExpiresAt = now.Add(defaultTTL)
	default:
		return nil, false, errors.New("the response has no expires_in, the access token carries no exp and iat, and no default lifetime is configured")
	}
	refreshIn, ok, err := jsonSeconds(tr.RefreshExpiresIn)
	if err != nil {
		return nil, false, fmt.Errorf("refresh_expires_in: %w", err)
	}
	if ok && refreshIn > 0 {
		ts.RefreshExpiresAt = now.Add(refreshIn)
	}
	return ts, false, nil
}

func isFormContent(contentType string) bool {
	mt, _, _ := mime.ParseMediaType(contentType)
	return mt == "application/x-www-form-urlencoded" || mt == "text/plain"
}

// normalizeTokenType spells the bearer scheme the way RFC 6750 does; "" means bearer.
func normalizeTokenType(t string) string {
	if t == "" || strings.EqualFold(t, "bearer") {
		return "Bearer"
	}
	return t
}

// maxSeconds caps relative lifetimes (x/oauth2 caps expires_in at MaxInt32 too).
const maxSeconds = 1<<31 - 1

// jsonSeconds reads a relative lifetime in seconds, given as a JSON number or a numeric
// string. ok is false when absent or null.
func jsonSeconds(raw json.RawMessage) (time.Duration, bool, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, false, nil
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return 0, false, errors.New("not a number")
	}
	var f float64
	switch x := v.(type) {
	case float64:
		f = x
	case string:
		if x == "" {
			return 0, false, nil
		}
		p, err := strconv.ParseFloat(strings.TrimSpace(x), 64)
		if err != nil {
			return 0, false, errors.New("not a number")
		}
		f = p
	default:
		return 0, false, errors.New("not a number")
	}
	if f != f || f < 0 { // NaN or negative
		return 0, false, errors.New("negative")
	}
	if f > maxSeconds {
		f = maxSeconds
	}
	return time.Duration(f * float64(time.Second)), true, nil
}

// unverifiedJWT reads the claims and kid of a JWS without verifying it (the operator
// carries tokens, it does not trust them; PROTOCOLS.md §5(c)). Not a JWS → nil, "".
func unverifiedJWT(token string) (jwt.MapClaims, string) {
	if strings.Count(token, ".") != 2 {
		return nil, ""
	}
	claims := jwt.MapClaims{}
	tok, _, err := jwt.NewParser().ParseUnverified(token, claims)
	if err != nil || tok == nil {
		return nil, ""
	}
	kid, _ := tok.Header["kid"].(string)
	return claims, kid
}

// jwtLifetime is exp-iat of the claims, or 0.
func jwtLifetime(claims jwt.MapClaims) time.Duration {
	if claims == nil {
		return 0
	}
	exp, err1 := claims.GetExpirationTime()
	iat, err2 := claims.GetIssuedAt()
	if err1 != nil || err2 != nil || exp == nil || iat == nil {
		return 0
	}
	d := exp.Sub(iat.Time)
	if d <= 0 || d > maxSeconds*time.Second {
		return 0
	}
	return d
}
