package issuer

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// DefaultRequestTimeout bounds one request to an issuer when the caller sets none: long
// enough for a slow identity provider, short enough that a hanging one does not hold the
// controller's workers for long.
const DefaultRequestTimeout = 10 * time.Second

// DefaultRefusedNetworks are the destinations refused by default: link-local addresses,
// where cloud metadata services answer (169.254.169.254, fd00:ec2::254 aside, which is
// unique-local and must be listed explicitly where it matters).
var DefaultRefusedNetworks = []netip.Prefix{
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("fe80::/10"),
}

// maxResponseHeaderBytes bounds the headers of an issuer's answer, cookies included:
// room for two tokens of the largest size allowed, and more.
const maxResponseHeaderBytes = 64 << 10

// HTTPOptions shape the HTTP client every request to an issuer goes through.
type HTTPOptions struct {
	// Timeout bounds each request, from dialing to the last byte of the answer
	// (default DefaultRequestTimeout).
	Timeout time.Duration
	// RefusedNetworks are destination ranges no request may reach. The check is made on
	// the address actually dialed, after name resolution, so a name that resolves into a
	// refused range is refused too. With an HTTP proxy it applies to the proxy's address.
	RefusedNetworks []netip.Prefix
	// RootCAs are the only certificate authorities trusted for HTTPS; nil means the
	// system's.
	RootCAs *x509.CertPool
}

// NewHTTPClient builds the client an issuer's requests go through: the standard
// transport (proxy from the environment, HTTP/2, keep-alives) with a dialer that
// refuses the configured networks, the given roots, a per-request timeout, and
// redirects not followed (the dialects decide what to do with a 3xx).
func NewHTTPClient(o HTTPOptions) *http.Client {
	if o.Timeout <= 0 {
		o.Timeout = DefaultRequestTimeout
	}
	refused := o.RefusedNetworks
	dialer := &net.Dialer{
		Timeout:   o.Timeout,
		KeepAlive: 30 * time.Second,
		// Control runs for each address the dialer tries, after resolution, before the
		// connection is made.
		Control: func(network, address string, _ syscall.RawConn) error {
			return checkDestination(refused, address)
		},
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = dialer.DialContext
	tr.ResponseHeaderTimeout = o.Timeout
	// Token responses carry a few cookies at most (FOLIO's two); the standard 10 MiB
	// would let one answer hold that much of the manager's memory.
	tr.MaxResponseHeaderBytes = maxResponseHeaderBytes
	if o.RootCAs != nil {
		tr.TLSClientConfig = &tls.Config{RootCAs: o.RootCAs, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{
		Transport:     tr,
		Timeout:       o.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// checkDestination refuses an address ("ip:port") in one of the refused ranges.
func checkDestination(refused []netip.Prefix, address string) error {
	if len(refused) == 0 {
		return nil
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return &RefusedDestinationError{Address: address}
	}
	a := ap.Addr().Unmap()
	for _, p := range refused {
		if p.Contains(a) {
			return &RefusedDestinationError{Address: a.String(), Network: p.String()}
		}
	}
	return nil
}

// RefusedDestinationError is a request refused because its destination is in a refused
// network range.
type RefusedDestinationError struct {
	Address string
	// Network is the refused range that holds Address; empty when Address did not parse.
	Network string
}

func (e *RefusedDestinationError) Error() string {
	if e.Network == "" {
		return fmt.Sprintf("destination %s refused: not an IP address and port", e.Address)
	}
	return fmt.Sprintf("destination %s refused: it is in the refused network %s", e.Address, e.Network)
}

// ParseNetworks reads a comma-separated list of CIDR ranges or single addresses.
func ParseNetworks(v string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if p, err := netip.ParsePrefix(f); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("%q is neither a CIDR range nor an IP address", f)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

// FormatNetworks writes ranges the way ParseNetworks reads them.
func FormatNetworks(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

// transportErrorText describes a failed request without quoting anything the server
// sent. Go's HTTP client quotes the bytes of an answer that is not HTTP (the banner of
// whatever service listens there) in its errors; those bytes must not reach conditions
// and events. Only errors that carry no response bytes keep their own text: network
// operations (dial, read, write, DNS), TLS and certificate failures, timeouts,
// cancellation, a refused destination, and early EOF. The request's method and URL are
// kept.
func transportErrorText(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		inner := transportErrorText(ue.Err)
		if inner == ue.Err {
			return err
		}
		return &keptCause{msg: fmt.Sprintf("%s %q: %s", ue.Op, ue.URL, inner.Error()), err: err}
	}
	var (
		refused *RefusedDestinationError
		netErr  *net.OpError
		dnsErr  *net.DNSError
		certErr *tls.CertificateVerificationError
		recErr  tls.RecordHeaderError
		uaErr   x509.UnknownAuthorityError
		hostErr x509.HostnameError
		invErr  x509.CertificateInvalidError
		timeout interface{ Timeout() bool }
	)
	switch {
	case errors.As(err, &refused), errors.As(err, &netErr), errors.As(err, &dnsErr),
		errors.As(err, &certErr), errors.As(err, &recErr), errors.As(err, &uaErr),
		errors.As(err, &hostErr), errors.As(err, &invErr),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.As(err, &timeout) && timeout.Timeout():
		return err
	}
	return &keptCause{msg: "the answer is not HTTP (its content is not shown)", err: err}
}

// isCertificateError reports whether err is the issuer's certificate failing
// verification (unknown authority, wrong name, expired).
func isCertificateError(err error) bool {
	var (
		certErr *tls.CertificateVerificationError
		uaErr   x509.UnknownAuthorityError
		hostErr x509.HostnameError
		invErr  x509.CertificateInvalidError
	)
	return errors.As(err, &certErr) || errors.As(err, &uaErr) || errors.As(err, &hostErr) || errors.As(err, &invErr)
}

// keptCause replaces an error's message while errors.Is still sees the cause.
type keptCause struct {
	msg string
	err error
}

func (e *keptCause) Error() string        { return e.msg }
func (e *keptCause) Is(target error) bool { return errors.Is(e.err, target) }

// Timeout reports whether the cause was a timeout.
func (e *keptCause) Timeout() bool {
	var te interface{ Timeout() bool }
	return errors.As(e.err, &te) && te.Timeout()
}
