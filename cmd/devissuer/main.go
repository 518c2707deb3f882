// Command devissuer runs the built-in development issuer: a small in-memory OAuth2/OIDC
// server with FOLIO authn endpoints and a protected resource (/api/records), for the demo
// and for manual tests. See internal/devissuer for the endpoints and behaviours.
//
// It listens on 127.0.0.1 only unless --allow-remote is given, prints its URL (the
// issuer identifier) on stdout once listening, logs events (never token bytes) on stderr,
// and stops on SIGINT or SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/jobtoken/jobtoken/internal/devissuer"
)

// DefaultListen is the default --listen address.
const DefaultListen = "127.0.0.1:8800"

// options is the parsed command line.
type options struct {
	listen      string
	allowRemote bool
	cfg         devissuer.Config
}

// pairs is a repeatable NAME:VALUE flag.
type pairs struct {
	what string // "client" or "user", for messages
	m    map[string]string
}

func (p *pairs) String() string {
	if p == nil || len(p.m) == 0 {
		return ""
	}
	names := make([]string, 0, len(p.m))
	for k := range p.m {
		names = append(names, k)
	}
	sort.Strings(names)
	return strings.Join(names, ",") // names only: never print secrets
}

func (p *pairs) Set(v string) error {
	name, val, ok := strings.Cut(v, ":")
	if !ok || name == "" || val == "" {
		return fmt.Errorf("want %s NAME:SECRET", p.what)
	}
	if _, dup := p.m[name]; dup {
		return fmt.Errorf("%s %q given twice", p.what, name)
	}
	p.m[name] = val
	return nil
}

// parseFlags parses args (without the program name). Usage and errors go to out.
// It returns flag.ErrHelp for -h/--help.
func parseFlags(args []string, out io.Writer) (*options, error) {
	o := &options{}
	clients := &pairs{what: "client", m: map[string]string{}}
	users := &pairs{what: "user", m: map[string]string{}}
	fs := flag.NewFlagSet("devissuer", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		_, _ = fmt.Fprintf(out, `Usage: devissuer [flags]

The jobtoken development issuer: an in-memory OAuth2/OIDC server (password,
client_credentials, refresh_token with rotation and reuse detection, RFC 8693
token exchange, RFC 7009 revocation, RFC 7662 introspection), FOLIO authn
(/authn/login-with-expiry, /authn/refresh, /authn/logout), a protected resource
(/api/records) and /admin/{counters,rotate-key,faults}. Prints its URL on stdout
once listening; stops on SIGINT or SIGTERM.

Flags:
`)
		fs.PrintDefaults()
		_, _ = fmt.Fprintf(out, `
Example:
  devissuer --client jobtoken:s3cret --user alice:alice-pw --session-max 1h
`)
	}
	fs.StringVar(&o.listen, "listen", DefaultListen, "`address` to listen on; must be a loopback address unless --allow-remote")
	fs.BoolVar(&o.allowRemote, "allow-remote", false, "allow a --listen address that is not loopback (the issuer has no TLS and weak secrets: development only)")
	fs.DurationVar(&o.cfg.AccessTokenTTL, "access-ttl", devissuer.DefaultAccessTokenTTL, "access token lifetime (whole seconds)")
	fs.DurationVar(&o.cfg.RefreshTokenTTL, "refresh-ttl", devissuer.DefaultRefreshTokenTTL, "refresh token lifetime, sliding: each refresh gives a new one with this lifetime, capped by the session end")
	fs.DurationVar(&o.cfg.SessionMax, "session-max", 0, "session maximum: a refresh chain ends this long after its login however often it is refreshed (0 = none)")
	fs.Var(clients, "client", "OAuth client as `ID:SECRET` (repeatable); client_secret_basic and client_secret_post")
	fs.Var(users, "user", "user as `NAME:PASSWORD` (repeatable), for the password grant and FOLIO login")
	fs.StringVar(&o.cfg.Tenant, "tenant", devissuer.DefaultTenant, "FOLIO tenant expected in X-Okapi-Tenant")
	fs.StringVar(&o.cfg.KeyFile, "key-file", "", "PEM RSA signing key `file` (PKCS#1 or PKCS#8), created (mode 0600) when missing, so restarts keep the kid; empty = a fresh key at every start")
	fs.DurationVar(&o.cfg.Leeway, "leeway", devissuer.DefaultLeeway, "exp leeway at the protected resource (0 = none)")
	fs.BoolVar(&o.cfg.ExchangeOwnSession, "exchange-own-session", false, "a token-exchange family gets a session of its own (own session maximum, survives the user's logout); default: it joins the subject token's session like Keycloak 26.2 (ends with the user's logout)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		err := fmt.Errorf("unexpected arguments: %q", fs.Args())
		_, _ = fmt.Fprintln(out, err)
		return nil, err
	}
	for name, d := range map[string]time.Duration{"--access-ttl": o.cfg.AccessTokenTTL, "--refresh-ttl": o.cfg.RefreshTokenTTL, "--session-max": o.cfg.SessionMax} {
		if d < 0 {
			return nil, fmt.Errorf("%s must not be negative", name)
		}
	}
	if err := checkListen(o.listen, o.allowRemote); err != nil {
		return nil, err
	}
	if o.cfg.Leeway <= 0 {
		o.cfg.Leeway = -1 // Config: 0 means the default, negative means none
	}
	o.cfg.Clients, o.cfg.Users = clients.m, users.m
	return o, nil
}

// checkListen refuses an address that is not loopback unless allowRemote. A host name
// other than "localhost" and an empty host (all interfaces) count as not loopback.
func checkListen(addr string, allowRemote bool) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--listen %q: %w", addr, err)
	}
	if allowRemote {
		return nil
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("--listen %q is not a loopback address; pass --allow-remote to serve other hosts", addr)
}

// run serves until ctx is done. It prints the URL on stdout once listening.
func run(ctx context.Context, o *options, stdout io.Writer, log *slog.Logger) error {
	cfg := o.cfg
	cfg.Logger = log
	if len(cfg.Clients) == 0 {
		log.Warn("No --client given: the token endpoint rejects every client")
	}
	s, err := devissuer.New(cfg)
	if err != nil {
		return err
	}
	if err := s.Start(o.listen); err != nil {
		return err
	}
	clientIDs := make([]string, 0, len(cfg.Clients))
	for id := range cfg.Clients {
		clientIDs = append(clientIDs, id)
	}
	sort.Strings(clientIDs)
	log.Info("Development issuer listening", "url", s.URL(), "kid", s.KeyID(), "clients", clientIDs,
		"users", len(cfg.Users), "tenant", cfg.Tenant, "accessTTL", cfg.AccessTokenTTL,
		"refreshTTL", cfg.RefreshTokenTTL, "sessionMax", cfg.SessionMax)
	if _, err := fmt.Fprintln(stdout, s.URL()); err != nil {
		_ = s.Close()
		return err
	}
	<-ctx.Done()
	log.Info("Shutting down")
	return s.Close()
}

func main() {
	o, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "devissuer:", err)
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, os.Stdout, log); err != nil {
		log.Error("Development issuer failed", "err", err)
		stop()
		os.Exit(1)
	}
}
