package tokenfile

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jobtoken/jobtoken/internal/kubeletsim"
)

// baseExpiry anchors the expiry of the numbered test tokens.
var baseExpiry = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// version is the payload of the n-th rotation: the token, its type and its expiry all
// carry n, so that a reader can tell a mixed payload from a complete one.
func version(n int) map[string][]byte {
	typ := "Bearer"
	if n%2 == 1 {
		typ = "DPoP"
	}
	return map[string][]byte{
		KeyAccessToken: fmt.Appendf(nil, "token-%06d\n", n),
		KeyTokenType:   []byte(typ),
		KeyExpiresAt:   []byte(baseExpiry.Add(time.Duration(n) * time.Minute).Format(time.RFC3339)),
	}
}

// versionOf checks that tok is one complete version and returns its number.
func versionOf(tok Token) (int, error) {
	num, ok := strings.CutPrefix(tok.Value, "token-")
	if !ok {
		return 0, fmt.Errorf("unexpected token (%d bytes)", len(tok.Value))
	}
	n, err := strconv.Atoi(num)
	if err != nil {
		return 0, fmt.Errorf("unexpected token (%d bytes)", len(tok.Value))
	}
	want := version(n)
	if tok.Type != string(want[KeyTokenType]) || !tok.ExpiresAt.Equal(baseExpiry.Add(time.Duration(n)*time.Minute)) {
		return 0, fmt.Errorf("mixed payload: token %d with type %q and expiry %s", n, tok.Type, tok.ExpiresAt)
	}
	return n, nil
}

// publish updates dir exactly as the kubelet does, with its atomic writer (one
// implementation, shared with the kubelet stand-in).
func publish(tb testing.TB, dir string, files map[string][]byte) {
	tb.Helper()
	if err := kubeletsim.WriteAtomic(dir, files); err != nil {
		tb.Fatalf("WriteAtomic: %v", err)
	}
}

// newVolume returns a Secret volume directory holding version n, and the path of its
// access_token (what JOBTOKEN_FILE names).
func newVolume(tb testing.TB, n int) (dir, tokenFile string) {
	tb.Helper()
	dir = filepath.Join(tb.TempDir(), "jobtoken")
	publish(tb, dir, version(n))
	return dir, filepath.Join(dir, KeyAccessToken)
}

// countReads makes s count its file reads (the hook of the caching tests), optionally
// running before() ahead of each read.
func countReads(s *Source, before func(name string)) *atomic.Int64 {
	var n atomic.Int64
	s.readFile = func(name string) ([]byte, error) {
		n.Add(1)
		if before != nil {
			before(name)
		}
		return os.ReadFile(name)
	}
	return &n
}

func mustToken(tb testing.TB, s *Source) Token {
	tb.Helper()
	tok, err := s.Token()
	if err != nil {
		tb.Fatalf("Token: %v", err)
	}
	return tok
}

func mustVersion(tb testing.TB, s *Source, want int) {
	tb.Helper()
	n, err := versionOf(mustToken(tb, s))
	if err != nil {
		tb.Fatal(err)
	}
	if n != want {
		tb.Fatalf("read version %d, want %d", n, want)
	}
}
