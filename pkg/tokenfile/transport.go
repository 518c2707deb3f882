package tokenfile

import (
	"io"
	"net/http"
	"sync/atomic"
)

// TokenSource is what a Transport needs: *Source, or anything that returns the current
// token (a fresh read on every call).
type TokenSource interface {
	Token() (Token, error)
}

// Transport is an http.RoundTripper that sends the current token in the Authorization
// header. On a 401 it reads the token again and, when the token changed (the operator
// rotated it and the kubelet already updated the file) and the request can be sent again,
// retries once with the new token. It never retries more than once per request.
type Transport struct {
	src     TokenSource
	base    http.RoundTripper
	retries atomic.Int64
}

// NewTransport returns a Transport sending requests through base
// (http.DefaultTransport when nil).
func NewTransport(src TokenSource, base http.RoundTripper) *Transport {
	if base == nil {
		base = http.DefaultTransport
	}
	return &Transport{src: src, base: base}
}

// Retries returns how many requests were retried after a 401 with a changed token.
func (t *Transport) Retries() int64 { return t.retries.Load() }

// RoundTrip implements http.RoundTripper. The caller's request is never modified: the
// header goes on a clone.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	tok, err := t.src.Token()
	if err != nil {
		closeBody(req)
		return nil, err
	}
	resp, err := t.base.RoundTrip(withToken(req, tok, req.Body))
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, err
	}
	// Retry once, only when the file now holds another token and the body can be sent
	// again; otherwise the 401 goes to the caller as it is.
	if fresh, terr := t.src.Token(); terr == nil && (fresh.Value != tok.Value || fresh.Type != tok.Type) {
		if body, ok := replayBody(req); ok {
			// Drain a little so that the connection can be reused, then drop the 401.
			_, _ = io.CopyN(io.Discard, resp.Body, 4<<10)
			_ = resp.Body.Close()
			t.retries.Add(1)
			return t.base.RoundTrip(withToken(req, fresh, body))
		}
	}
	return resp, nil
}

// replayBody returns the body for sending req again: none, or a fresh copy from GetBody.
func replayBody(req *http.Request) (io.ReadCloser, bool) {
	if req.Body == nil || req.Body == http.NoBody {
		return req.Body, true
	}
	if req.GetBody == nil {
		return nil, false // a stream that is gone
	}
	body, err := req.GetBody()
	if err != nil {
		return nil, false
	}
	return body, true
}

func withToken(req *http.Request, tok Token, body io.ReadCloser) *http.Request {
	r := req.Clone(req.Context())
	r.Body = body
	tok.SetAuthHeader(r)
	return r
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
}
