// Package devissuer is a small, real, in-memory OAuth2/OIDC authorization server with
// FOLIO authn endpoints and a protected resource. The demo and every controller test use
// it in-process (New, Start, Handler) or as the cmd/devissuer binary.
//
// It behaves like the identity providers jobtoken has to survive (see PROTOCOLS.md):
//
//   - access tokens are RS256 JWTs with a kid; RotateSigningKey drops the old key from the
//     JWKS at once, so tokens signed with it fail at the protected resource ("unknown_kid");
//   - refresh tokens are opaque and rotate on every use; replaying a used one revokes the
//     whole family (Keycloak with Revoke Refresh Token on and Max Reuse 0, or Okta/Auth0
//     breach detection) and is counted in Counters.RefreshReuse;
//   - a session maximum ends every chain at a fixed time however often it is refreshed,
//     and refresh_expires_in shrinks towards it (Keycloak SSO Session Max);
//   - users can log out, which ends their own sessions, including families exchanged
//     from their tokens: an RFC 8693 exchange joins the subject token's session, like
//     Keycloak 26.2 standard token exchange (Config.ExchangeOwnSession opts out);
//   - faults: latency, 503s, an issuer that is down, and a refresh that is committed
//     but whose answer is lost.
//
// Endpoints (URL() is the issuer identifier):
//
//	GET  /.well-known/openid-configuration, /.well-known/oauth-authorization-server
//	GET  /jwks
//	POST /token        password, client_credentials (no refresh token), refresh_token,
//	                   urn:ietf:params:oauth:grant-type:token-exchange
//	POST /revoke       RFC 7009; a refresh token takes its whole family with it
//	POST /introspect   RFC 7662
//	POST /logout       ?user=NAME (the user logs out everywhere), or refresh_token plus
//	                   client authentication (ends that token's session)
//	POST /authn/login-with-expiry, /authn/refresh, /authn/logout   FOLIO authn
//	GET|POST /api/records   protected resource; 401 reasons invalid, unknown_kid,
//	                   expired, revoked
//	GET  /admin/counters; POST /admin/rotate-key; GET|POST /admin/faults;
//	POST /admin/logout (same as /logout)
//
// All times come from the injected clock, except fault latency, which is real time.
// Token times are whole seconds, like Keycloak: expires_in equals the TTL exactly.
// Token bytes are never logged.
package devissuer

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"k8s.io/utils/clock"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultAccessTokenTTL  = 20 * time.Second
	DefaultRefreshTokenTTL = 10 * time.Minute
	DefaultTenant          = "diku"
	DefaultLeeway          = 2 * time.Second
	// DefaultAddr is what Start binds when given an empty address.
	DefaultAddr = "127.0.0.1:0"
)

// Config configures a Server. Zero fields take the defaults above.
type Config struct {
	// AccessTokenTTL is the access token lifetime, capped by the session end. Default 20s.
	// All three durations are rounded up to whole seconds, the unit of exp and expires_in.
	AccessTokenTTL time.Duration
	// RefreshTokenTTL is the lifetime of each refresh token. Sliding: each refresh gives a
	// new refresh token with this TTL, capped by the session end. Default 10m.
	RefreshTokenTTL time.Duration
	// SessionMax ends a session (and every family in it) at session start + SessionMax,
	// however often it is refreshed. 0 means no maximum.
	SessionMax time.Duration
	// Clients maps client_id to secret. client_secret_basic and client_secret_post are
	// accepted.
	Clients map[string]string
	// Users maps username to password, for the password grant and FOLIO login.
	Users map[string]string
	// Tenant is the FOLIO X-Okapi-Tenant accepted. Default "diku".
	Tenant string
	// KeyFile is a PEM RSA private key (PKCS#1 or PKCS#8) to sign with. When the file does
	// not exist, New generates a key and writes it there (mode 0600), so the next start
	// signs with the same key and kid. Empty means a fresh key at every start.
	KeyFile string
	// Clock is the source of every token time. Default: the real clock.
	Clock clock.Clock
	// Leeway is the exp leeway at the protected resource. Default 2s; negative means none.
	Leeway time.Duration
	// ExchangeOwnSession gives a token-exchange family a session of its own: its own
	// session maximum counted from the exchange, and the user's logout does not end it.
	// Default false: the family joins the subject token's session, like Keycloak 26.2
	// standard token exchange (same session maximum, ends with the user's logout).
	// (Addition to the original sketch.)
	ExchangeOwnSession bool
	// Logger receives events (family revoked, reuse detected, key rotated, faults set).
	// Never token bytes. Nil discards. (Addition to the original sketch.)
	Logger *slog.Logger
	// RecordTokens keeps every token minted in memory so that Issued can return
	// them, for tests that scan outputs for leaked token bytes. Off by default: the
	// server otherwise holds only token hashes.
	RecordTokens bool
}

// Server is the development issuer. It is safe for concurrent use.
type Server struct {
	cfg    Config
	clk    clock.Clock
	log    *slog.Logger
	leeway time.Duration

	handler http.Handler

	// mu guards everything below.
	mu        sync.Mutex
	keys      []*signingKey // published in the JWKS; the last one signs
	sessions  map[string]*session
	families  map[string]*family
	refreshes map[string]*refreshRec // by sha256 of the token
	accesses  map[string]*accessRec  // by sha256 of the token
	lastPrune time.Time
	faults    Faults
	errAcc    float64 // ErrorRate accumulator (deterministic spreading)
	c         Counters
	issued    IssuedTokens // only with Config.RecordTokens

	srvMu  sync.Mutex
	srv    *http.Server
	ln     net.Listener
	url    string
	closed bool
}

// New validates cfg, applies defaults and prepares the signing key. It does not listen.
func New(cfg Config) (*Server, error) {
	if cfg.AccessTokenTTL < 0 || cfg.RefreshTokenTTL < 0 || cfg.SessionMax < 0 {
		return nil, errors.New("devissuer: TTLs and SessionMax must not be negative")
	}
	if cfg.AccessTokenTTL == 0 {
		cfg.AccessTokenTTL = DefaultAccessTokenTTL
	}
	if cfg.RefreshTokenTTL == 0 {
		cfg.RefreshTokenTTL = DefaultRefreshTokenTTL
	}
	// Token times are whole seconds (JWT NumericDate, expires_in).
	cfg.AccessTokenTTL = ceilSecond(cfg.AccessTokenTTL)
	cfg.RefreshTokenTTL = ceilSecond(cfg.RefreshTokenTTL)
	cfg.SessionMax = ceilSecond(cfg.SessionMax)
	if cfg.Tenant == "" {
		cfg.Tenant = DefaultTenant
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	leeway := cfg.Leeway
	switch {
	case leeway == 0:
		leeway = DefaultLeeway
	case leeway < 0:
		leeway = 0
	}
	cfg.Clients = copyMap(cfg.Clients)
	cfg.Users = copyMap(cfg.Users)
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg:       cfg,
		clk:       cfg.Clock,
		log:       log,
		leeway:    leeway,
		sessions:  map[string]*session{},
		families:  map[string]*family{},
		refreshes: map[string]*refreshRec{},
		accesses:  map[string]*accessRec{},
		c:         newCounters(),
	}
	key, err := loadOrCreateKey(cfg.KeyFile)
	if err != nil {
		return nil, err
	}
	s.keys = []*signingKey{key}
	s.handler = s.routes()
	return s, nil
}

// ceilSecond rounds d up to a whole second.
func ceilSecond(d time.Duration) time.Duration {
	if r := d % time.Second; r != 0 {
		d += time.Second - r
	}
	return d
}

func copyMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Start listens on addr (DefaultAddr when empty) and serves in the background. It returns
// once the listener is bound. A Server can be started once.
func (s *Server) Start(addr string) error {
	if addr == "" {
		addr = DefaultAddr
	}
	s.srvMu.Lock()
	defer s.srvMu.Unlock()
	if s.srv != nil || s.closed {
		return errors.New("devissuer: already started or closed")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("devissuer: listen %s: %w", addr, err)
	}
	tcp := ln.Addr().(*net.TCPAddr)
	host := tcp.IP.String()
	if tcp.IP.IsUnspecified() {
		host = "127.0.0.1"
	}
	s.url = "http://" + net.JoinHostPort(host, fmt.Sprint(tcp.Port))
	s.ln = ln
	s.srv = &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	srv := s.srv
	go func() { _ = srv.Serve(ln) }()
	return nil
}

// URL is the base URL and issuer identifier, "http://127.0.0.1:PORT" without a trailing
// slash. Empty before Start (then, when served through Handler, the issuer is derived
// from each request's Host).
func (s *Server) URL() string {
	s.srvMu.Lock()
	defer s.srvMu.Unlock()
	return s.url
}

// Close stops the listener and closes open connections at once.
func (s *Server) Close() error {
	s.srvMu.Lock()
	defer s.srvMu.Unlock()
	s.closed = true
	if s.srv == nil {
		return nil
	}
	err := s.srv.Close()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// Handler serves every endpoint; use it with httptest or a custom listener.
func (s *Server) Handler() http.Handler { return s.handler }

// issuerFor is the issuer identifier for a request: URL() once started, otherwise the
// request's own scheme and host.
func (s *Server) issuerFor(r *http.Request) string {
	if u := s.URL(); u != "" {
		return u
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	// discovery and keys
	mux.HandleFunc("GET /.well-known/openid-configuration", s.handleDiscovery)
	mux.HandleFunc("GET /.well-known/oauth-authorization-server", s.handleDiscovery)
	mux.HandleFunc("GET /jwks", s.handleJWKS)
	// OAuth 2.0
	mux.HandleFunc("POST /token", s.handleToken)
	mux.HandleFunc("POST /revoke", s.handleRevoke)
	mux.HandleFunc("POST /introspect", s.handleIntrospect)
	mux.HandleFunc("POST /logout", s.handleLogout)
	// FOLIO authn
	mux.HandleFunc("POST /authn/login-with-expiry", s.handleFolioLogin)
	mux.HandleFunc("POST /authn/refresh", s.handleFolioRefresh)
	mux.HandleFunc("POST /authn/logout", s.handleFolioLogout)
	// protected resource
	mux.HandleFunc("GET /api/records", s.handleRecords)
	mux.HandleFunc("POST /api/records", s.handleRecords)
	// admin
	mux.HandleFunc("GET /admin/counters", s.handleAdminCounters)
	mux.HandleFunc("POST /admin/rotate-key", s.handleAdminRotateKey)
	mux.HandleFunc("GET /admin/faults", s.handleAdminFaults)
	mux.HandleFunc("POST /admin/faults", s.handleAdminFaults)
	mux.HandleFunc("POST /admin/logout", s.handleLogout)
	return mux
}
