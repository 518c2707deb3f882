package harness

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jobtoken/jobtoken/internal/devissuer"
)

// Issuer is the development issuer served on 127.0.0.1 behind a counting layer: TCP
// connections accepted, token-endpoint requests per second, and how many times each
// refresh token was presented (kept as SHA-256 hashes, never the token).
type Issuer struct {
	*devissuer.Server
	URL string

	ln  net.Listener
	srv *http.Server

	conns atomic.Int64

	mu sync.Mutex
	// tokenRequests counts POST /token (any grant, any result), per second since start.
	start      time.Time
	perSecond  map[int64]int64
	tokenTotal int64
	revokes    int64
	// redeemed holds the hashes of the refresh tokens the issuer redeemed (answered 200,
	// or committed and dropped); replays counts presentations of one after that.
	redeemed    map[[32]byte]bool
	redemptions int64
	replays     int64
}

// statusRecorder notes the status of an answer, and whether the connection was taken
// over (the issuer drops it after committing a refresh, Faults.CommitThenDrop).
type statusRecorder struct {
	http.ResponseWriter
	status   int
	hijacked bool
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	s.hijacked = true
	return http.NewResponseController(s.ResponseWriter).Hijack()
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// StartIssuer starts a development issuer with cfg on 127.0.0.1.
func StartIssuer(cfg devissuer.Config) (*Issuer, error) {
	srv, err := devissuer.New(cfg)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	is := &Issuer{Server: srv, URL: "http://" + ln.Addr().String(), ln: ln, start: time.Now(),
		perSecond: map[int64]int64{}, redeemed: map[[32]byte]bool{}}
	is.srv = &http.Server{
		Handler:           is.middleware(srv.Handler()),
		ReadHeaderTimeout: 10 * time.Second,
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				is.conns.Add(1)
			}
		},
	}
	go func() { _ = is.srv.Serve(ln) }()
	return is, nil
}

// Close stops serving.
func (is *Issuer) Close() error {
	err := is.srv.Close()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

func (is *Issuer) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || (r.URL.Path != "/token" && r.URL.Path != "/revoke") {
			next.ServeHTTP(w, r)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		_ = r.Body.Close()
		r.Body = io.NopCloser(bytes.NewReader(body))
		var rt [32]byte
		isRefresh := false
		is.mu.Lock()
		if r.URL.Path == "/revoke" {
			is.revokes++
		} else {
			is.tokenTotal++
			is.perSecond[int64(time.Since(is.start)/time.Second)]++
			if form, perr := url.ParseQuery(string(body)); err == nil && perr == nil && form.Get("grant_type") == "refresh_token" {
				rt, isRefresh = sha256.Sum256([]byte(form.Get("refresh_token"))), true
				if is.redeemed[rt] {
					// Presented again after the issuer redeemed it: a replay.
					is.replays++
				}
			}
		}
		is.mu.Unlock()
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		if isRefresh && (rec.hijacked || rec.status == 0 || rec.status == http.StatusOK) {
			// Answered 200, or committed and the answer dropped (the connection hijacked).
			is.mu.Lock()
			if !is.redeemed[rt] {
				is.redeemed[rt] = true
				is.redemptions++
			}
			is.mu.Unlock()
		}
	})
}

// IssuerTraffic is a snapshot of the counting layer.
type IssuerTraffic struct {
	Connections   int64
	TokenRequests int64
	Revocations   int64
	// Redemptions is how many distinct refresh tokens the issuer redeemed; Replays how
	// many times a refresh token was presented again after its redemption (a second
	// refresh of one generation). A retry after a 503 is not a replay.
	Redemptions, Replays int64
}

// Traffic returns the counters so far.
func (is *Issuer) Traffic() IssuerTraffic {
	is.mu.Lock()
	defer is.mu.Unlock()
	return IssuerTraffic{Connections: is.conns.Load(), TokenRequests: is.tokenTotal, Revocations: is.revokes,
		Redemptions: is.redemptions, Replays: is.replays}
}

// PeakTokenRate is the highest number of token requests in one second between from and to.
func (is *Issuer) PeakTokenRate(from, to time.Time) int64 {
	is.mu.Lock()
	defer is.mu.Unlock()
	lo, hi := int64(from.Sub(is.start)/time.Second), int64(to.Sub(is.start)/time.Second)
	var peak int64
	for s := lo; s <= hi; s++ {
		peak = max(peak, is.perSecond[s])
	}
	return peak
}

// TokenRequestsBetween counts token requests in the whole seconds between from and to.
func (is *Issuer) TokenRequestsBetween(from, to time.Time) int64 {
	is.mu.Lock()
	defer is.mu.Unlock()
	lo, hi := int64(from.Sub(is.start)/time.Second), int64(to.Sub(is.start)/time.Second)
	var n int64
	for s := lo; s <= hi; s++ {
		n += is.perSecond[s]
	}
	return n
}
