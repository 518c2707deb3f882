// Package tokenfile reads the access token that the jobtoken operator keeps fresh in a
// Secret mounted into worker pods, and provides an http.RoundTripper that sends it.
//
// The operator sets JOBTOKEN_FILE to the mounted access_token file. The kubelet updates
// the volume with its atomic writer: the payload goes into a new timestamped directory
// ("..2026_11_23_12_00_00.123456789"), then the symlink "..data" is switched to it in one
// rename, and the visible names ("access_token -> ..data/access_token") never change. A
// Source reads the files on every use but cheaply: one readlink of "..data" per call is
// the cache key, and the files are read again only when it changed, through the
// timestamped directory itself, so a reader always sees one complete payload (token,
// type and expiry of the same rotation), never a half-written one.
//
// Plain files work too (a path that is not a kubelet volume): the cache key is then one
// stat (identity, size, modification time), and the file is read whole.
//
// The package depends on the standard library and golang.org/x/oauth2 only, and never
// puts token bytes into errors or String output.
package tokenfile

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Names shared with the operator (they equal the constants of
// github.com/jobtoken/jobtoken/api/v1alpha1, which this package does not import to keep
// worker binaries free of Kubernetes dependencies; a test checks that they agree).
const (
	// EnvFile names the environment variable that points at the access token file.
	EnvFile = "JOBTOKEN_FILE"
	// KeyAccessToken, KeyTokenType and KeyExpiresAt are the files of the token volume.
	KeyAccessToken = "access_token"
	KeyTokenType   = "token_type"
	KeyExpiresAt   = "expires_at" // RFC 3339
	// DefaultTokenType is used when token_type is absent or empty.
	DefaultTokenType = "Bearer"

	dataDirName = "..data"
	// maxAttempts bounds the re-reads when the writer swaps the data directory under a
	// reader (each swap needs a full write of the payload, so a few attempts suffice).
	maxAttempts = 16
)

// ErrEmptyToken is returned (wrapped, with the file name) when the token file is empty or
// holds only whitespace.
var ErrEmptyToken = errors.New("tokenfile: the access token file is empty")

// Token is the access token as the files hold it.
type Token struct {
	// Value is the access token, whitespace trimmed. Never log it.
	Value string
	// Type is the token_type file's content, "Bearer" when absent or empty.
	Type string
	// ExpiresAt is expires_at (RFC 3339); zero when the file is absent.
	ExpiresAt time.Time
}

// String describes the token without its value, so that logging a Token cannot leak it.
func (t Token) String() string {
	exp := "unknown"
	if !t.ExpiresAt.IsZero() {
		exp = t.ExpiresAt.UTC().Format(time.RFC3339)
	}
	return fmt.Sprintf("tokenfile.Token{Type: %s, ExpiresAt: %s, Value: [redacted %d bytes]}", t.Type, exp, len(t.Value))
}

// GoString is String, for %#v.
func (t Token) GoString() string { return t.String() }

// LogValue keeps the value out of log/slog output.
func (t Token) LogValue() slog.Value {
	return slog.GroupValue(slog.String("type", t.Type), slog.Time("expiresAt", t.ExpiresAt), slog.String("value", "[redacted]"))
}

// AuthorizationHeader returns "<Type> <Value>", the value of the Authorization header
// (a type of "bearer" in any case is sent as "Bearer").
func (t Token) AuthorizationHeader() string {
	typ := t.Type
	if typ == "" || strings.EqualFold(typ, DefaultTokenType) {
		typ = DefaultTokenType
	}
	return typ + " " + t.Value
}

// SetAuthHeader sets the Authorization header of r.
func (t Token) SetAuthHeader(r *http.Request) { r.Header.Set("Authorization", t.AuthorizationHeader()) }

// Source reads the token files. It is safe for concurrent use; create one per token file
// and share it.
type Source struct {
	path string // as given

	// Kubelet layout: dir holds "..data"; rel is the token's path inside the timestamped
	// directory.
	volume   bool
	dir      string
	rel      string
	dataLink string // dir/..data

	// Plain file layout: file is read whole; siblings tells whether token_type and
	// expires_at beside it belong to it.
	file     string
	siblings bool

	// readFile reads one file (os.ReadFile; tests count the reads).
	readFile func(string) ([]byte, error)

	mu  sync.Mutex // serializes re-reads
	cur atomic.Pointer[entry]
}

type entry struct {
	link string      // volume: target of ..data when read
	fi   fs.FileInfo // plain file: stat when read
	tok  Token
}

// NewFromEnv returns a Source for the file named by $JOBTOKEN_FILE.
func NewFromEnv() (*Source, error) {
	p := os.Getenv(EnvFile)
	if p == "" {
		return nil, fmt.Errorf("tokenfile: %s is not set (the jobtoken operator sets it in every container of the job)", EnvFile)
	}
	return New(p)
}

// New returns a Source for path: the access token file (normally a symlink
// access_token -> ..data/access_token in a Secret volume), or the volume directory that
// holds access_token, token_type and expires_at. The path must exist.
func New(path string) (*Source, error) {
	s := &Source{path: path, readFile: os.ReadFile}
	fi, err := os.Lstat(path) //nolint:gosec // reading the caller's token file is the point
	if err != nil {
		return nil, fmt.Errorf("tokenfile: %w", err)
	}
	switch {
	case fi.IsDir():
		if isVolumeDir(path) {
			s.volume, s.dir, s.rel = true, path, KeyAccessToken
		} else {
			s.file, s.siblings = filepath.Join(path, KeyAccessToken), true
		}
	case fi.Mode()&fs.ModeSymlink != 0:
		target, err := os.Readlink(path)
		if err != nil {
			return nil, fmt.Errorf("tokenfile: %w", err)
		}
		dir := filepath.Dir(path)
		if rel, ok := strings.CutPrefix(filepath.ToSlash(target), dataDirName+"/"); ok && isVolumeDir(dir) {
			s.volume, s.dir, s.rel = true, dir, filepath.FromSlash(rel)
		} else {
			s.file, s.siblings = path, filepath.Base(path) == KeyAccessToken
		}
	default:
		s.file, s.siblings = path, filepath.Base(path) == KeyAccessToken
	}
	if s.volume {
		s.dataLink = filepath.Join(s.dir, dataDirName)
	} else {
		if fi, err := os.Stat(s.file); err != nil { //nolint:gosec // the caller's token file
			return nil, fmt.Errorf("tokenfile: %w", err)
		} else if fi.IsDir() {
			return nil, fmt.Errorf("tokenfile: %s is a directory", s.file)
		}
	}
	return s, nil
}

func isVolumeDir(dir string) bool {
	fi, err := os.Lstat(filepath.Join(dir, dataDirName)) //nolint:gosec // beside the caller's token file
	return err == nil && fi.Mode()&fs.ModeSymlink != 0
}

// Path returns the path the Source was created with.
func (s *Source) Path() string { return s.path }

// Token returns the current token. The common case costs one readlink (or stat) and no
// read; the files are read again only after the writer changed them.
func (s *Source) Token() (Token, error) {
	if s.volume {
		link, err := os.Readlink(s.dataLink)
		if err != nil {
			return Token{}, fmt.Errorf("tokenfile: %w", err)
		}
		if e := s.cur.Load(); e != nil && e.link == link {
			return e.tok, nil
		}
	} else {
		fi, err := os.Stat(s.file)
		if err != nil {
			return Token{}, fmt.Errorf("tokenfile: %w", err)
		}
		if e := s.cur.Load(); e != nil && sameVersion(e.fi, fi) {
			return e.tok, nil
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.volume {
		return s.loadVolume()
	}
	return s.loadFile()
}

// loadVolume reads the payload through the timestamped directory ..data points at. That
// directory is complete before it is published and is never modified, only removed after
// the next swap; so a read that saw ..data unchanged before and after, or that read every
// file, has one complete payload. Anything else is retried.
func (s *Source) loadVolume() (Token, error) {
	dataLink := s.dataLink
	for range maxAttempts {
		link, err := os.Readlink(dataLink)
		if err != nil {
			return Token{}, fmt.Errorf("tokenfile: %w", err)
		}
		if e := s.cur.Load(); e != nil && e.link == link {
			return e.tok, nil // another caller read it meanwhile
		}
		snap := link
		if !filepath.IsAbs(snap) {
			snap = filepath.Join(s.dir, link)
		}
		tokenPath := filepath.Join(snap, s.rel)
		tok, complete, readErr := s.readPayload(tokenPath, filepath.Dir(tokenPath))
		if !complete {
			after, err := os.Readlink(dataLink)
			if err != nil {
				return Token{}, fmt.Errorf("tokenfile: %w", err)
			}
			if after != link {
				continue // swapped (and maybe removed) while reading
			}
		}
		if readErr != nil {
			return Token{}, s.describe(readErr)
		}
		s.cur.Store(&entry{link: link, tok: tok.Token})
		return tok.Token, nil
	}
	return Token{}, fmt.Errorf("tokenfile: %s changed %d times while being read", s.dir, maxAttempts)
}

// loadFile reads a plain file whole and keeps the result only when the file's identity,
// size and modification time did not change during the read.
func (s *Source) loadFile() (Token, error) {
	for range maxAttempts {
		before, err := os.Stat(s.file)
		if err != nil {
			return Token{}, fmt.Errorf("tokenfile: %w", err)
		}
		if e := s.cur.Load(); e != nil && sameVersion(e.fi, before) {
			return e.tok, nil
		}
		dir := ""
		if s.siblings {
			dir = filepath.Dir(s.file)
		}
		tok, _, readErr := s.readPayload(s.file, dir)
		after, err := os.Stat(s.file)
		if err != nil {
			return Token{}, fmt.Errorf("tokenfile: %w", err)
		}
		if !sameVersion(before, after) {
			continue // written while reading
		}
		if readErr != nil {
			return Token{}, s.describe(readErr)
		}
		if int64(len(tok.raw)) != after.Size() {
			continue // a writer is still filling it in place
		}
		s.cur.Store(&entry{fi: after, tok: tok.Token})
		return tok.Token, nil
	}
	return Token{}, fmt.Errorf("tokenfile: %s changed %d times while being read", s.file, maxAttempts)
}

// readResult is a parsed token plus the raw size of the token file.
type readResult struct {
	Token
	raw []byte
}

// readPayload reads the token file and, when dir is set, token_type and expires_at in dir.
// complete reports that every file was present.
func (s *Source) readPayload(tokenPath, dir string) (readResult, bool, error) {
	raw, err := s.readFile(tokenPath)
	if err != nil {
		return readResult{}, false, err
	}
	res := readResult{raw: raw, Token: Token{Type: DefaultTokenType}}
	complete := true
	if dir != "" {
		typ, err := s.readFile(filepath.Join(dir, KeyTokenType))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			complete = false
		case err != nil:
			return readResult{}, false, err
		default:
			if t := strings.TrimSpace(string(typ)); t != "" {
				res.Type = t
			}
		}
		exp, err := s.readFile(filepath.Join(dir, KeyExpiresAt))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			complete = false
		case err != nil:
			return readResult{}, false, err
		default:
			if e := strings.TrimSpace(string(exp)); e != "" {
				t, perr := time.Parse(time.RFC3339, e)
				if perr != nil {
					return readResult{}, complete, errors.New("expires_at is not an RFC 3339 time")
				}
				res.ExpiresAt = t
			}
		}
	}
	res.Value = strings.TrimSpace(string(raw))
	if res.Value == "" {
		return res, complete, ErrEmptyToken
	}
	if !validToken(res.Value) {
		return res, complete, errors.New("the access token holds characters not allowed in an HTTP header")
	}
	return res, complete, nil
}

func (s *Source) describe(err error) error {
	switch {
	case errors.Is(err, ErrEmptyToken):
		return fmt.Errorf("%w: %s", ErrEmptyToken, s.path)
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("tokenfile: %s: %w", s.path, err)
	default:
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return fmt.Errorf("tokenfile: %w", err)
		}
		return fmt.Errorf("tokenfile: %s: %w", s.path, err)
	}
}

// validToken accepts visible ASCII only (RFC 6750 b64token and opaque tokens alike), so
// that a broken file can never inject header lines.
func validToken(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}

func sameVersion(a, b fs.FileInfo) bool {
	return a != nil && b != nil && os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}
