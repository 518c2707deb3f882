package issuer

// The FOLIO dialect: the authn API of mod-login (Okapi) and mod-login-keycloak (Eureka),
// PROTOCOLS.md §1.3. Tokens travel only in cookies (folioAccessToken,
// folioRefreshToken); the JSON body carries their expiry instants.
//
// Expiry, in order of preference:
//  1. the body's accessTokenExpiration minus the response's Date header: both are the
//     server's clock, so the difference is a lifetime immune to skew between FOLIO and
//     the operator (like expires_in), added to the local receipt time;
//  2. the cookie's Max-Age (the same lifetime in whole seconds, set by the server);
//  3. the body's instant itself (exposed to clock skew, used only when FOLIO sends
//     neither a Date header nor Max-Age);
//  4. the access token's JWT exp-iat, then DefaultTTL.
// refreshTokenExpiration becomes RefreshExpiresAt the same way (with the refresh
// cookie's Max-Age).
//
// A success without both cookies is an error: Configuration for a login (a proxy that
// strips Set-Cookie, or an authn module without login-with-expiry, answers the same way
// every time), OutcomeUnknown for a refresh (the refresh token was presented and FOLIO
// rotates it on success, so the old one may be spent while the new one is lost).

import (
	"context"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"k8s.io/utils/clock"
)

const (
	folioAccessCookie  = "folioAccessToken"
	folioRefreshCookie = "folioRefreshToken"
	folioTenantHeader  = "X-Okapi-Tenant"
)

// FOLIOConfig configures a FOLIO authn API client.
type FOLIOConfig struct {
	// BaseURL is the gateway (Okapi or Kong), e.g. https://folio.example.org.
	BaseURL string
	// Tenant is sent as X-Okapi-Tenant.
	Tenant string
	// HTTPClient sends the requests (default: NewHTTPClient with its defaults).
	// Redirects are never followed.
	HTTPClient *http.Client
	// Clock stamps responses (default: the real clock).
	Clock clock.PassiveClock
	// DefaultTTL is the access-token lifetime assumed when the response tells none.
	DefaultTTL time.Duration
	// MaxTokenBytes is the largest access or refresh token accepted (default
	// DefaultMaxTokenBytes); a larger one makes the request fail.
	MaxTokenBytes int
	// AllowPlainHTTP lets the password and tokens travel to an http:// BaseURL. Off,
	// such a BaseURL is a configuration error.
	AllowPlainHTTP bool
}

// FOLIO is the FOLIO dialect. It is safe for concurrent use.
type FOLIO struct {
	cfg  FOLIOConfig
	base string
	t    transport
}

var _ Client = (*FOLIO)(nil)

// NewFOLIO validates cfg. It makes no request.
func NewFOLIO(cfg FOLIOConfig) (*FOLIO, error) {
	cfgErr := func(format string, args ...any) error {
		return &Error{Class: ClassConfiguration, Op: "config", Description: fmt.Sprintf(format, args...)}
	}
	if cfg.BaseURL == "" {
		return nil, cfgErr("BaseURL is required")
	}
	if err := checkHTTPURL(cfg.BaseURL); err != nil {
		return nil, cfgErr("BaseURL: %v", err)
	}
	if u, _ := url.Parse(cfg.BaseURL); u.RawQuery != "" || u.Fragment != "" {
		return nil, cfgErr("BaseURL must not have a query or fragment")
	} else if u.Scheme == "http" && !cfg.AllowPlainHTTP {
		return nil, cfgErr("BaseURL %s is plain http, which would carry the password and tokens unencrypted: use https, or allow plain http on the issuer (insecureAllowPlainHTTP)", cfg.BaseURL)
	}
	if cfg.Tenant == "" {
		return nil, cfgErr("Tenant is required")
	}
	if strings.ContainsAny(cfg.Tenant, "\r\n") {
		return nil, cfgErr("Tenant must be a single line")
	}
	if cfg.DefaultTTL < 0 {
		return nil, cfgErr("DefaultTTL must not be negative")
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	f := &FOLIO{cfg: cfg, base: strings.TrimSuffix(cfg.BaseURL, "/"), t: newTransport(cfg.HTTPClient, cfg.Clock)}
	f.t.allowPlainHTTP = cfg.AllowPlainHTTP
	return f, nil
}

// Mint logs in with the Password grant (POST /authn/login-with-expiry). Other grants
// are a configuration error.
func (f *FOLIO) Mint(ctx context.Context, g Grant) (*TokenSet, error) {
	if g.Type != GrantPassword {
		return nil, &Error{Class: ClassConfiguration, Op: "mint", Description: fmt.Sprintf("the FOLIO dialect supports only the Password grant, not %s", g.Type)}
	}
	if g.Username == "" || g.Password == "" {
		return nil, &Error{Class: ClassConfiguration, Op: "mint", Description: "the Password grant needs a username and a password"}
	}
	// The login request is the one place the password must go: to the configured FOLIO.
	body, err := json.Marshal(struct { //nolint:gosec // G117: sending the password is the point of a login
		Username string `json:"username"`
		Password string `json:"password"`
	}{g.Username, g.Password})
	if err != nil {
		return nil, &Error{Class: ClassConfiguration, Op: "mint", Description: "encoding the login request failed"}
	}
	c := f.call("mint", "/authn/login-with-expiry", []string{g.Password})
	c.header.Set("Content-Type", "application/json")
	c.body = body
	return f.tokenRequest(ctx, c, false)
}

// Refresh redeems the refresh token (POST /authn/refresh, no body, the token in the
// folioRefreshToken cookie). FOLIO rotates both tokens.
func (f *FOLIO) Refresh(ctx context.Context, refreshToken string) (*TokenSet, error) {
	if refreshToken == "" {
		return nil, &Error{Class: ClassConfiguration, Op: "refresh", Description: "no refresh token to redeem"}
	}
	if !validCookieValue(refreshToken) {
		return nil, &Error{Class: ClassConfiguration, Op: "refresh", Description: "the refresh token has characters a cookie cannot carry"}
	}
	c := f.call("refresh", "/authn/refresh", []string{refreshToken})
	c.header.Set("Cookie", folioRefreshCookie+"="+refreshToken)
	return f.tokenRequest(ctx, c, true)
}

// Revoke logs the refresh token's session out (POST /authn/logout with the
// folioRefreshToken cookie); 204 (any 2xx) and 404 are success. FOLIO cannot revoke an
// access token (it ends at its expiry), and a logout without the cookie means "log out
// everywhere" on Eureka, so nothing is sent when there is no refresh token.
func (f *FOLIO) Revoke(ctx context.Context, tokens Revocation) error {
	// Replaced chains are left to expire: Okapi takes a spent refresh token presented
	// again, even to log out, for a leak and revokes every token of the user, the other
	// jobs' of the same system user included.
	if tokens.RefreshToken == "" {
		return nil
	}
	if !validCookieValue(tokens.RefreshToken) {
		return &Error{Class: ClassConfiguration, Op: "revoke", Description: "the refresh token has characters a cookie cannot carry"}
	}
	c := f.call("revoke", "/authn/logout", []string{tokens.RefreshToken, tokens.AccessToken})
	c.header.Set("Cookie", folioRefreshCookie+"="+tokens.RefreshToken)
	c.idempotent = true
	r, err := f.t.do(ctx, c)
	if err != nil {
		return err
	}
	if r.status >= 200 && r.status <= 299 || r.status == http.StatusNotFound {
		return nil
	}
	return f.folioError(c, r)
}

func (f *FOLIO) call(op, path string, secrets []string) call {
	return call{
		op: op, method: http.MethodPost, url: f.base + path, secrets: secrets,
		header: http.Header{
			folioTenantHeader: {f.cfg.Tenant},
			"Accept":          {"application/json, text/plain"},
		},
	}
}

// tokenRequest sends a login or refresh and parses the answer.
func (f *FOLIO) tokenRequest(ctx context.Context, c call, consumed bool) (*TokenSet, error) {
	r, err := f.t.do(ctx, c)
	if err != nil {
		return nil, err
	}
	if r.status < 200 || r.status > 299 {
		return nil, f.folioError(c, r)
	}
	ts, perr := parseFOLIOResponse(r.header, r.body, r.receivedAt, f.cfg.DefaultTTL)
	if perr == nil {
		perr = checkTokenSizes(ts, f.cfg.MaxTokenBytes)
	}
	if perr != nil {
		return nil, protocolError(c, r, consumed, "FOLIO "+c.url[len(f.base):]+" response: "+perr.Error())
	}
	return ts, nil
}

// folioError classifies a FOLIO error answer. The credentials or the refresh token are
// dead (DeadChain) on: 422 (Okapi mod-login "Password does not match" / refresh
// "mod-authtoken has returned a 400 level response"; Eureka TOKEN_REFRESH_UNPROCESSABLE,
// which wraps every Keycloak refusal), 401 with "Token leaked" (Okapi reuse detection:
// every refresh token of the user is now revoked), and any 401 to a refresh ("Token has
// expired", an unknown token) or a login (Eureka: Keycloak refused the credentials).
// Everything else follows the status (5xx/429 Transient with Retry-After, 504 to a
// login/refresh OutcomeUnknown, other 4xx Configuration).
func (f *FOLIO) folioError(c call, r *reply) *Error {
	code, desc := folioErrorText(r.body, r.header.Get("Content-Type"))
	e := f.t.statusError(c, r, code, desc)
	switch {
	case r.status == http.StatusUnprocessableEntity && c.op != "revoke":
		e.Class = ClassDeadChain
	case r.status == http.StatusUnauthorized && (c.op != "revoke" || strings.Contains(strings.ToLower(desc), "token leaked")):
		e.Class = ClassDeadChain
	}
	return e
}

// folioErrorText reads an error body: Eureka's {"errors":[{"message","code"}]}, the
// RAML {"errors":[{"message","code","type"}]} or a plain-text message (Okapi). Any other
// body (HTML, a JSON document of another kind) is not FOLIO's answer and is not quoted:
// whatever answers at that URL must not have its content shown in conditions.
func folioErrorText(body []byte, contentType string) (code, desc string) {
	var eb struct {
		Errors []struct {
			Message string `json:"message"`
			Code    string `json:"code"`
			Type    string `json:"type"`
		} `json:"errors"`
		Message string `json:"message"`
		Error   string `json:"error"`
	}
	if json.Unmarshal(body, &eb) == nil {
		if len(eb.Errors) > 0 {
			return eb.Errors[0].Code, eb.Errors[0].Message
		}
		if eb.Message != "" || eb.Error != "" {
			return eb.Error, eb.Message
		}
	}
	if mt, _, _ := mime.ParseMediaType(contentType); mt == "text/plain" {
		return "", string(body)
	}
	return "", ""
}

// folioExpiry is the body of a login-with-expiry or refresh answer.
type folioExpiry struct {
	AccessTokenExpiration  string `json:"accessTokenExpiration"`
	RefreshTokenExpiration string `json:"refreshTokenExpiration"`
}

// parseFOLIOResponse reads a 2xx login or refresh answer received at now: the tokens
// from the Set-Cookie headers, the expiry as described at the top of this file. Both
// cookies must be present and non-empty. Errors never contain token bytes.
func parseFOLIOResponse(h http.Header, body []byte, now time.Time, defaultTTL time.Duration) (*TokenSet, error) {
	access, refresh := lastCookie(h, folioAccessCookie), lastCookie(h, folioRefreshCookie)
	if access == nil {
		return nil, fmt.Errorf("no %s cookie", folioAccessCookie)
	}
	if refresh == nil {
		return nil, fmt.Errorf("no %s cookie", folioRefreshCookie)
	}
	var exp folioExpiry
	_ = json.Unmarshal(body, &exp) // a missing or odd body leaves the other sources
	var serverNow time.Time
	if d, err := http.ParseTime(h.Get("Date")); err == nil {
		serverNow = d
	}
	ts := &TokenSet{
		AccessToken:  access.Value,
		RefreshToken: refresh.Value,
		TokenType:    "Bearer",
		IssuedAt:     now,
	}
	claims, kid := unverifiedJWT(access.Value)
	ts.KeyID = kid
	if d := folioLifetime(exp.AccessTokenExpiration, serverNow, access, now); d > 0 {
		ts.ExpiresAt = now.Add(d)
	} else if d := jwtLifetime(claims); d > 0 {
		ts.ExpiresAt = now.Add(d)
	} else if defaultTTL > 0 {
		ts.ExpiresAt = now.Add(defaultTTL)
	} else {
		return nil, fmt.Errorf("no usable accessTokenExpiration, Max-Age or token exp, and no default lifetime is configured")
	}
	if d := folioLifetime(exp.RefreshTokenExpiration, serverNow, refresh, now); d > 0 {
		ts.RefreshExpiresAt = now.Add(d)
	} else if rc, _ := unverifiedJWT(refresh.Value); jwtLifetime(rc) > 0 {
		ts.RefreshExpiresAt = now.Add(jwtLifetime(rc))
	}
	return ts, nil
}

// folioLifetime is the remaining lifetime of a token: the body instant minus the
// server's Date, else the cookie's Max-Age, else (only without a Date) the body instant
// minus the local time. 0 when none is usable.
func folioLifetime(instant string, serverNow time.Time, ck *http.Cookie, now time.Time) time.Duration {
	at, ok := parseFOLIOInstant(instant)
	if ok && !serverNow.IsZero() {
		if d := at.Sub(serverNow); d > 0 && d <= maxSeconds*time.Second {
			return d
		}
	}
	if ck.MaxAge > 0 {
		return time.Duration(min(ck.MaxAge, maxSeconds)) * time.Second
	}
	if ok && serverNow.IsZero() {
		if d := at.Sub(now); d > 0 && d <= maxSeconds*time.Second {
			return d
		}
	}
	return 0
}

// parseFOLIOInstant reads an ISO-8601 instant: RFC 3339 with or without fractional
// seconds, or (Java LocalDateTime style) without an offset, taken as UTC.
func parseFOLIOInstant(s string) (time.Time, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, false
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, true
	}
	if t, err := time.ParseInLocation("2006-01-02T15:04:05.999999999", s, time.UTC); err == nil {
		return t, true
	}
	return time.Time{}, false
}

// lastCookie returns the last Set-Cookie of that name with a non-empty value that is not
// an invalidation (Max-Age<=0 or an expiry in the past, as FOLIO's logout sends).
func lastCookie(h http.Header, name string) *http.Cookie {
	var found *http.Cookie
	for _, line := range h.Values("Set-Cookie") {
		ck, err := http.ParseSetCookie(line)
		if err != nil || ck.Name != name || ck.Value == "" || ck.MaxAge < 0 {
			continue
		}
		if !ck.Expires.IsZero() && ck.Expires.Unix() <= 0 {
			continue
		}
		found = ck
	}
	return found
}

// validCookieValue reports whether v can be sent as a cookie value unquoted (RFC 6265
// cookie-octets), which every JWT and opaque FOLIO token is.
func validCookieValue(v string) bool {
	for i := 0; i < len(v); i++ {
		b := v[i]
		if b <= 0x20 || b >= 0x7f || b == '"' || b == ',' || b == ';' || b == '\\' {
			return false
		}
	}
	return v != ""
}
