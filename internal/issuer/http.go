package issuer

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"k8s.io/utils/clock"
)

// Shared HTTP plumbing of the dialects: one request, its classification when it fails,
// and scrubbing of every string that ends up in an *Error.
//
// The dialects do not use golang.org/x/oauth2 to send token requests (see oauth2.go for
// the full reasoning): telling "failed before the request was written" (safe to retry)
// from "may have reached the issuer" (never replay a refresh) needs an httptrace hook and
// the raw error of both Do and the body read, which x/oauth2 flattens into strings.

const (
	// maxBodyBytes caps what is read of any issuer response.
	maxBodyBytes = 1 << 20
	// maxRetryAfter caps the issuer's Retry-After hint.
	maxRetryAfter = time.Hour
	// maxDescriptionRunes caps an issuer's error description in an *Error.
	maxDescriptionRunes = 300
	// redacted replaces token bytes in error strings.
	redacted = "[redacted]"
)

// call is one HTTP request to an issuer.
type call struct {
	op     string
	method string
	url    string
	header http.Header
	body   []byte
	// secrets are the token, password and client-secret values the request carries;
	// every error string derived from the request or its answer is scrubbed of them.
	secrets []string
	// idempotent requests (discovery, JWKS, revocation) are safe to repeat, so a
	// failure after sending them is Transient, not OutcomeUnknown.
	idempotent bool
}

// reply is an issuer's answer, fully read.
type reply struct {
	status int
	header http.Header
	body   []byte
	// receivedAt is the local time the response headers arrived.
	receivedAt time.Time
}

// transport sends calls and classifies failures.
type transport struct {
	client *http.Client
	clock  clock.PassiveClock
	// allowPlainHTTP lets calls that carry secrets go to http:// URLs.
	allowPlainHTTP bool
}

func newTransport(hc *http.Client, clk clock.PassiveClock) transport {
	if hc == nil {
		hc = NewHTTPClient(HTTPOptions{})
	}
	// Never follow redirects: a token request redirected elsewhere would carry the
	// credentials and tokens to a host nobody configured (307/308 resend the body).
	c := *hc
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	if clk == nil {
		clk = clock.RealClock{}
	}
	return transport{client: &c, clock: clk}
}

// do sends c. A non-nil *Error means no usable answer was read; an answer with any
// status is returned for the dialect to interpret.
func (t transport) do(ctx context.Context, c call) (*reply, *Error) {
	sc := scrubber(c.secrets)
	var body io.Reader
	if c.body != nil {
		body = bytes.NewReader(c.body)
	}
	// The URL never carries token bytes (tokens travel in bodies, headers and cookies),
	// so request errors that quote it are safe; they are scrubbed all the same.
	var wrote atomic.Bool
	trace := &httptrace.ClientTrace{
		// Called once the request (headers and body) was written or failed to be.
		// A failed write may still have delivered enough for the issuer to act, so
		// any call at all counts as "may have been sent".
		WroteRequest: func(httptrace.WroteRequestInfo) { wrote.Store(true) },
	}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), c.method, c.url, body)
	if err != nil {
		return nil, &Error{Class: ClassConfiguration, Op: c.op, Err: sc.wrap(err)}
	}
	if len(c.secrets) > 0 && req.URL.Scheme != "https" && !t.allowPlainHTTP {
		// The last guard: whatever the endpoint's origin, a credential is never written
		// to a connection without TLS unless the issuer says so.
		return nil, &Error{Class: ClassConfiguration, Op: c.op, Description: fmt.Sprintf(
			"refusing to send credentials to %s over plain http: use https, or allow plain http on the issuer (insecureAllowPlainHTTP)", req.URL.Redacted())}
	}
	for k, vs := range c.header {
		req.Header[k] = vs
	}
	resp, err := t.client.Do(req)
	if err != nil {
		class := ClassTransient
		var refused *RefusedDestinationError
		switch {
		case errors.As(err, &refused), isCertificateError(err):
			// The same destination is refused, the same certificate is not trusted, until
			// the spec (or the name's address, or the issuer's certificate) changes. Both
			// fail before the request is written.
			class = ClassConfiguration
		case wrote.Load() && !c.idempotent:
			class = ClassOutcomeUnknown
		}
		return nil, &Error{Class: class, Op: c.op, Err: sc.wrap(transportErrorText(err))}
	}
	defer func() { _ = resp.Body.Close() }()
	receivedAt := t.clock.Now()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBodyBytes+1))
	if err == nil && len(data) > maxBodyBytes {
		err = errors.New("response body larger than 1 MiB")
	} else if err != nil {
		err = transportErrorText(err)
	}
	if err != nil {
		// The issuer answered but the answer was cut short: it may have acted on the
		// request (rotated the refresh token) unless it said it failed.
		class := ClassOutcomeUnknown
		if c.idempotent || resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests {
			class = ClassTransient
		}
		return nil, &Error{Class: class, Op: c.op, StatusCode: resp.StatusCode,
			RetryAfter: t.retryAfter(resp.Header), Err: sc.wrap(err)}
	}
	return &reply{status: resp.StatusCode, header: resp.Header, body: data, receivedAt: receivedAt}, nil
}

// statusError classifies a non-success answer that carried no error code the dialect
// knows. 5xx and 429 are Transient with the issuer's Retry-After; a 504 from a gateway
// to a non-idempotent request is OutcomeUnknown because the issuer behind it may have
// acted; 3xx and other 4xx are Configuration (the same request gets the same answer).
func (t transport) statusError(c call, r *reply, code, desc string) *Error {
	e := &Error{Op: c.op, StatusCode: r.status, RetryAfter: t.retryAfter(r.header)}
	sc := scrubber(c.secrets)
	e.Code, e.Description = sc.text(code, 64), sc.text(desc, maxDescriptionRunes)
	switch {
	case r.status == http.StatusGatewayTimeout && !c.idempotent:
		e.Class = ClassOutcomeUnknown
	case r.status >= 500 || r.status == http.StatusTooManyRequests:
		e.Class = ClassTransient
	default:
		e.Class = ClassConfiguration
	}
	return e
}

// retryAfter reads Retry-After as seconds or an HTTP date. A date is measured against
// the response's Date header when present (both are the issuer's clock), else against
// the local clock. The result is capped at maxRetryAfter.
func (t transport) retryAfter(h http.Header) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	var d time.Duration
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		if n > int64(maxRetryAfter/time.Second) {
			return maxRetryAfter
		}
		d = time.Duration(n) * time.Second
	} else if at, err := http.ParseTime(v); err == nil {
		now := t.clock.Now()
		if date, err := http.ParseTime(h.Get("Date")); err == nil {
			now = date
		}
		d = at.Sub(now)
	}
	return min(max(d, 0), maxRetryAfter)
}

// scrubber removes the values of one request's secrets from strings.
type scrubber []string

// tokenLike matches what looks like token material even when it was not sent in the
// request: JWTs/JWSs and long unbroken runs of base64url-ish characters (opaque tokens).
// UUIDs (36 characters) stay readable.
var tokenLike = regexp.MustCompile(`eyJ[A-Za-z0-9_\-]*\.[A-Za-z0-9_\-.]*|[A-Za-z0-9_\-.~+=%]{40,}`)

// basicCredentials matches an HTTP Basic credential (RFC 7617) wherever it is quoted:
// the base64 of "id:secret" would otherwise survive every other rule when it is short
// or contains "/" (not in tokenLike's alphabet).
var basicCredentials = regexp.MustCompile(`(?i)\bbasic\s+[A-Za-z0-9+/=_\-]+`)

// scrub replaces each secret (raw, and in the encodings a server may echo) and anything
// token-like with a placeholder.
func (s scrubber) scrub(v string) string {
	for _, sec := range s {
		if sec == "" {
			continue
		}
		for _, form := range secretForms(sec) {
			if len(sec) < minFreeSecret {
				v = replaceDelimited(v, form)
			} else {
				v = strings.ReplaceAll(v, form, redacted)
			}
		}
	}
	v = basicCredentials.ReplaceAllString(v, "Basic "+redacted)
	return tokenLike.ReplaceAllString(v, redacted)
}

// minFreeSecret is the length from which a secret is replaced wherever it occurs.
// Shorter ones (a 3-character password) are replaced where they stand alone, between
// characters that cannot be part of a word or token: replacing every "ab" inside other
// words would make messages unreadable and say nothing about the secret.
const minFreeSecret = 4

// secretForms are the spellings of sec a server may echo: raw, form- and path-escaped,
// Go- and JSON-quoted (with and without HTML escaping, and with "\/" as some JSON
// encoders write it), and base64 (standard and URL alphabets, padded and not).
func secretForms(sec string) []string {
	forms := []string{sec, url.QueryEscape(sec), url.PathEscape(sec)}
	q := strconv.Quote(sec)
	forms = append(forms, q[1:len(q)-1])
	var jsonHTML, jsonPlain bytes.Buffer
	_ = json.NewEncoder(&jsonHTML).Encode(sec)
	enc := json.NewEncoder(&jsonPlain)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(sec)
	for _, b := range []bytes.Buffer{jsonHTML, jsonPlain} {
		j := strings.TrimSpace(b.String())
		j = j[1 : len(j)-1]
		forms = append(forms, j, strings.ReplaceAll(j, "/", `\/`))
	}
	if len(sec) >= minFreeSecret {
		for _, e := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
			forms = append(forms, e.EncodeToString([]byte(sec)))
		}
	}
	out := forms[:0]
	seen := map[string]bool{}
	// Longest first, so that a form containing another is replaced whole.
	slices.SortStableFunc(forms, func(a, b string) int { return len(b) - len(a) })
	for _, f := range forms {
		if f != "" && !seen[f] {
			seen[f] = true
			out = append(out, f)
		}
	}
	return out
}

// replaceDelimited replaces the occurrences of form in v that are not inside a word or
// token (the characters around them are not letters, digits or token punctuation).
func replaceDelimited(v, form string) string {
	var b strings.Builder
	for {
		i := strings.Index(v, form)
		if i < 0 {
			b.WriteString(v)
			return b.String()
		}
		end := i + len(form)
		before, _ := utf8.DecodeLastRuneInString(v[:i])
		after, _ := utf8.DecodeRuneInString(v[end:])
		b.WriteString(v[:i])
		if (i == 0 || !wordRune(before)) && (end == len(v) || !wordRune(after)) {
			b.WriteString(redacted)
		} else {
			b.WriteString(form)
		}
		v = v[end:]
	}
}

func wordRune(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsDigit(r) || r == '_' || r == '-'
}

// text scrubs v and makes it a short single line.
func (s scrubber) text(v string, maxRunes int) string {
	v = s.scrub(v)
	v = strings.Map(func(r rune) rune {
		if r == utf8.RuneError || unicode.IsControl(r) {
			return ' '
		}
		return r
	}, v)
	v = strings.Join(strings.Fields(v), " ")
	if utf8.RuneCountInString(v) > maxRunes {
		v = string([]rune(v)[:maxRunes]) + "..."
	}
	return v
}

// wrap returns err with its message scrubbed. errors.Is still sees through it (e.g.
// context.DeadlineExceeded), but the original error is not reachable by Unwrap or
// errors.As: its message may quote what the server sent (a malformed status line, say).
func (s scrubber) wrap(err error) error {
	if err == nil {
		return nil
	}
	return &scrubbedError{msg: s.text(err.Error(), 1000), err: err}
}

// scrubbedError is an error whose message was scrubbed of token bytes.
type scrubbedError struct {
	msg string
	err error
}

func (e *scrubbedError) Error() string { return e.msg }

// Is reports whether the original error matches target.
func (e *scrubbedError) Is(target error) bool { return errors.Is(e.err, target) }

// Timeout reports whether the original error was a timeout (net.Error).
func (e *scrubbedError) Timeout() bool {
	var te interface{ Timeout() bool }
	return errors.As(e.err, &te) && te.Timeout()
}

// protocolError is a success answer the dialect cannot use. Whether the request was
// acted on decides the class: a refresh (or a one-shot redemption) whose answer is
// unusable may still have rotated the refresh token, so it is OutcomeUnknown; a mint
// with a repeatable grant gets the same answer next time, so it is Configuration.
func protocolError(c call, r *reply, consumed bool, msg string) *Error {
	class := ClassConfiguration
	if consumed {
		class = ClassOutcomeUnknown
	}
	return &Error{Class: class, Op: c.op, StatusCode: r.status, Description: scrubber(c.secrets).text(msg, maxDescriptionRunes)}
}
