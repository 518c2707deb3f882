package tokenfile

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jobtokenv1alpha1 "github.com/jobtoken/jobtoken/api/v1alpha1"
	"github.com/jobtoken/jobtoken/internal/kubeletsim"
)

func TestNamesMatchTheAPI(t *testing.T) {
	for _, c := range []struct{ ours, api string }{
		{EnvFile, jobtokenv1alpha1.EnvTokenFile},
		{KeyAccessToken, jobtokenv1alpha1.KeyAccessToken},
		{KeyTokenType, jobtokenv1alpha1.KeyTokenType},
		{KeyExpiresAt, jobtokenv1alpha1.KeyExpiresAt},
		{dataDirName, kubeletsim.DataDirName},
	} {
		if c.ours != c.api {
			t.Errorf("tokenfile uses %q where the operator uses %q", c.ours, c.api)
		}
	}
}

func TestFirstReadFromVolume(t *testing.T) {
	dir, file := newVolume(t, 1)

	// The layout is the kubelet's: ..data -> ..<timestamp>, access_token -> ..data/access_token.
	link, err := os.Readlink(filepath.Join(dir, "..data"))
	if err != nil || !strings.HasPrefix(link, "..") || link == "..data" {
		t.Fatalf("..data -> %q, %v", link, err)
	}
	if target, err := os.Readlink(file); err != nil || target != "..data/access_token" {
		t.Fatalf("access_token -> %q, %v", target, err)
	}

	for _, path := range []string{file, dir} {
		s, err := New(path)
		if err != nil {
			t.Fatalf("New(%s): %v", path, err)
		}
		tok := mustToken(t, s)
		if tok.Value != "token-000001" { // trimmed
			t.Fatalf("New(%s): wrong token value", path)
		}
		if tok.Type != "DPoP" || !tok.ExpiresAt.Equal(baseExpiry.Add(time.Minute)) {
			t.Fatalf("New(%s): got %v", path, tok)
		}
	}
}

func TestNewFromEnv(t *testing.T) {
	_, file := newVolume(t, 2)
	t.Setenv(EnvFile, file)
	s, err := NewFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	mustVersion(t, s, 2)

	t.Setenv(EnvFile, "")
	if _, err := NewFromEnv(); err == nil || !strings.Contains(err.Error(), EnvFile) {
		t.Fatalf("NewFromEnv without %s: %v", EnvFile, err)
	}
	if _, err := New(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("New of a missing file: no error")
	}
}

func TestUpdateSeen(t *testing.T) {
	dir, file := newVolume(t, 1)
	s, err := New(file)
	if err != nil {
		t.Fatal(err)
	}
	mustVersion(t, s, 1)
	for n := 2; n <= 5; n++ {
		publish(t, dir, version(n))
		mustVersion(t, s, n)
	}
	// Old timestamped directories are gone: one data directory, ..data, and the three links.
	entries, _ := os.ReadDir(dir)
	if len(entries) != 5 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Fatalf("volume holds %v", names)
	}
}

func TestDefaultsWithoutTypeAndExpiry(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "v")
	publish(t, dir, map[string][]byte{KeyAccessToken: []byte("  abc.def-ghi  \n")})
	s, err := New(filepath.Join(dir, KeyAccessToken))
	if err != nil {
		t.Fatal(err)
	}
	tok := mustToken(t, s)
	if tok.Value != "abc.def-ghi" || tok.Type != "Bearer" || !tok.ExpiresAt.IsZero() {
		t.Fatalf("got %v", tok)
	}
	if got := tok.AuthorizationHeader(); got != "Bearer abc.def-ghi" {
		t.Fatal("wrong Authorization header")
	}
	// A lower-case type is sent as the canonical "Bearer".
	publish(t, dir, map[string][]byte{KeyAccessToken: []byte("x"), KeyTokenType: []byte("bearer\n")})
	if got := mustToken(t, s).AuthorizationHeader(); got != "Bearer x" {
		t.Fatalf("lower-case bearer: header %q", got)
	}
}

func TestCachingReadsOnlyOnChange(t *testing.T) {
	dir, file := newVolume(t, 1)
	s, err := New(file)
	if err != nil {
		t.Fatal(err)
	}
	reads := countReads(s, nil)
	mustVersion(t, s, 1)
	if got := reads.Load(); got != 3 {
		t.Fatalf("first Token read %d files, want 3", got)
	}
	for range 100 {
		mustVersion(t, s, 1)
	}
	if got := reads.Load(); got != 3 {
		t.Fatalf("100 unchanged Token calls read %d files, want no more than the first 3", got)
	}
	publish(t, dir, version(2))
	for range 10 {
		mustVersion(t, s, 2)
	}
	if got := reads.Load(); got != 6 {
		t.Fatalf("after one update: %d reads, want 6", got)
	}
	// Writing the same payload again changes nothing on disk (the writer skips it).
	publish(t, dir, version(2))
	mustVersion(t, s, 2)
	if got := reads.Load(); got != 6 {
		t.Fatalf("after an unchanged update: %d reads, want 6", got)
	}
}

func TestCachingPlainFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte("first\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := New(file)
	if err != nil {
		t.Fatal(err)
	}
	reads := countReads(s, nil)
	for range 50 {
		if tok := mustToken(t, s); tok.Value != "first" || tok.Type != "Bearer" {
			t.Fatalf("got %v", tok)
		}
	}
	if got := reads.Load(); got != 1 {
		t.Fatalf("50 reads of an unchanged plain file read it %d times, want 1 (no token_type/expires_at beside a file not named access_token)", got)
	}
	// Replace by rename, as a careful writer does: a new inode is a new version even
	// when size and modification time match.
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, []byte("secnd\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(file)
	_ = os.Chtimes(tmp, fi.ModTime(), fi.ModTime())
	if err := os.Rename(tmp, file); err != nil {
		t.Fatal(err)
	}
	if tok := mustToken(t, s); tok.Value != "secnd" {
		t.Fatal("rename over the file not seen")
	}
	if got := reads.Load(); got != 2 {
		t.Fatalf("reads %d, want 2", got)
	}
}

func TestPlainDirectory(t *testing.T) {
	dir := t.TempDir()
	for name, content := range version(7) {
		if err := os.WriteFile(filepath.Join(dir, name), content, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{dir, filepath.Join(dir, KeyAccessToken)} {
		s, err := New(p)
		if err != nil {
			t.Fatal(err)
		}
		mustVersion(t, s, 7)
	}
}

// A writer that has filled a new timestamped directory (or only part of it) but not yet
// renamed ..data_tmp over ..data must not be visible.
func TestHalfWrittenIsNotVisible(t *testing.T) {
	dir, file := newVolume(t, 1)
	s, err := New(file)
	if err != nil {
		t.Fatal(err)
	}
	mustVersion(t, s, 1)

	partial := filepath.Join(dir, "..2026_11_23_12_00_00.123456789")
	if err := os.Mkdir(partial, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(partial, KeyAccessToken), []byte("token-0"), 0o400); err != nil {
		t.Fatal(err)
	}
	mustVersion(t, s, 1)
	if err := os.Symlink(filepath.Base(partial), filepath.Join(dir, kubeletsim.NewDataDirName)); err != nil {
		t.Fatal(err)
	}
	mustVersion(t, s, 1) // ..data_tmp exists, not yet renamed over ..data

	publish(t, dir, version(2)) // the writer replaces the stale ..data_tmp
	mustVersion(t, s, 2)
}

// The writer swaps ..data and removes the directory a reader is reading from: the reader
// notices and reads the new payload whole, never a mix of both.
func TestSwapDuringReadIsRetried(t *testing.T) {
	dir, file := newVolume(t, 1)
	s, err := New(file)
	if err != nil {
		t.Fatal(err)
	}
	mustVersion(t, s, 1)
	publish(t, dir, version(2))
	swapped := false
	countReads(s, func(name string) {
		if !swapped && filepath.Base(name) == KeyAccessToken {
			swapped = true
			publish(t, dir, version(3)) // removes the directory of version 2 mid-read
		}
	})
	mustVersion(t, s, 3)
}

// A plain file written in place while it is read is read again.
func TestPlainFileWrittenDuringRead(t *testing.T) {
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte("abc"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := New(file)
	if err != nil {
		t.Fatal(err)
	}
	first := true
	s.readFile = func(name string) ([]byte, error) {
		data, err := os.ReadFile(name)
		if first {
			first = false
			f, _ := os.OpenFile(file, os.O_APPEND|os.O_WRONLY, 0)
			_, _ = f.WriteString("defgh")
			_ = f.Close()
		}
		return data, err
	}
	if tok := mustToken(t, s); tok.Value != "abcdefgh" {
		t.Fatalf("read a partly written file (%d bytes)", len(tok.Value))
	}
}

func TestEmptyFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "token")
	for _, content := range []string{"", " \n\t\n"} {
		if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := New(file)
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.Token()
		if !errors.Is(err, ErrEmptyToken) || !strings.Contains(err.Error(), file) {
			t.Fatalf("empty file %q: %v", content, err)
		}
		// An error is not cached: the next call sees the token once it is there.
		if err := os.WriteFile(file, []byte("now-there"), 0o600); err != nil {
			t.Fatal(err)
		}
		if tok := mustToken(t, s); tok.Value != "now-there" {
			t.Fatal("token written after an empty read not seen")
		}
	}

	dir := filepath.Join(t.TempDir(), "v")
	publish(t, dir, map[string][]byte{KeyAccessToken: nil})
	s, err := New(filepath.Join(dir, KeyAccessToken))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Token(); !errors.Is(err, ErrEmptyToken) {
		t.Fatalf("empty access_token in a volume: %v", err)
	}
}

func TestErrorsAndOutputNeverHoldTheToken(t *testing.T) {
	const secret = "s3cr3t-t0ken-value"
	dir := filepath.Join(t.TempDir(), "v")
	publish(t, dir, map[string][]byte{KeyAccessToken: []byte(secret), KeyExpiresAt: []byte("tomorrow")})
	s, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Token(); err == nil || strings.Contains(err.Error(), secret) || !strings.Contains(err.Error(), "RFC 3339") {
		t.Fatalf("bad expires_at: %v", err)
	}
	publish(t, dir, map[string][]byte{KeyAccessToken: []byte(secret + "\r\nX-Evil: 1")})
	if _, err := s.Token(); err == nil || strings.Contains(err.Error(), secret) {
		t.Fatalf("token with a line break: %v", err)
	}

	publish(t, dir, map[string][]byte{KeyAccessToken: []byte(secret)})
	tok := mustToken(t, s)
	var b strings.Builder
	fmt.Fprintf(&b, "%v %+v %#v %s", tok, tok, tok, tok)
	slog.New(slog.NewTextHandler(&b, nil)).Info("token", "tok", tok)
	if strings.Contains(b.String(), secret) {
		t.Fatalf("formatting a Token leaked its value: %s", b.String())
	}
}

func TestOAuth2TokenSource(t *testing.T) {
	dir, file := newVolume(t, 4)
	s, err := New(file)
	if err != nil {
		t.Fatal(err)
	}
	ts := s.OAuth2()
	o, err := ts.Token()
	if err != nil {
		t.Fatal(err)
	}
	if o.AccessToken != "token-000004" || o.TokenType != "Bearer" || !o.Expiry.Equal(baseExpiry.Add(4*time.Minute)) {
		t.Fatal("oauth2 token does not match the files")
	}
	publish(t, dir, version(5))
	if o, _ = ts.Token(); o == nil || o.AccessToken != "token-000005" {
		t.Fatal("oauth2 source did not follow the update")
	}
}

// Updates race with reads: readers sharing one Source, and readers that open a Source for
// every read (other processes), read while the kubelet's atomic writer swaps the payload
// many times. Each read returns one complete version (token, type and expiry of the same
// rotation), and no shared-Source reader goes back to an older version. The test also
// checks that the race took place: every reader read while the swaps were under way and
// saw at least two versions then; otherwise it would prove nothing. Run with -race.
func TestUpdatesRaceWithReads(t *testing.T) {
	const (
		shared, separate = 4, 2
		minSwaps         = 300
		// A starved reader gets more swaps, up to these bounds, before the test gives up.
		maxSwaps = 20000
		maxWait  = 30 * time.Second
	)
	dir, file := newVolume(t, 0)
	s, err := New(file)
	if err != nil {
		t.Fatal(err)
	}
	type progress struct {
		reads, versions atomic.Int64 // during the swaps
	}
	prog := make([]progress, shared+separate)
	var swapping atomic.Bool
	done := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, shared+separate)
	reader := func(r int, get func() (Token, error), monotonic bool) {
		last := -1
		seen := map[int]bool{}
		for {
			select {
			case <-done:
				return
			default:
			}
			before := swapping.Load()
			tok, err := get()
			if err != nil {
				errs <- fmt.Errorf("reader %d: %w", r, err)
				return
			}
			n, err := versionOf(tok)
			if err != nil {
				errs <- fmt.Errorf("reader %d: %w", r, err)
				return
			}
			if monotonic && n < last {
				errs <- fmt.Errorf("reader %d went back from version %d to %d", r, last, n)
				return
			}
			last = n
			if before && swapping.Load() {
				prog[r].reads.Add(1)
				if !seen[n] {
					seen[n] = true
					prog[r].versions.Add(1)
				}
			}
		}
	}
	for r := range shared {
		wg.Go(func() { reader(r, s.Token, true) })
	}
	for r := shared; r < shared+separate; r++ {
		wg.Go(func() {
			reader(r, func() (Token, error) {
				other, err := New(file)
				if err != nil {
					return Token{}, err
				}
				return other.Token()
			}, false)
		})
	}
	raced := func() bool {
		for i := range prog {
			if prog[i].reads.Load() < 1 || prog[i].versions.Load() < 2 {
				return false
			}
		}
		return true
	}
	swapping.Store(true)
	deadline := time.Now().Add(maxWait)
	swaps := 0
	for swaps < minSwaps || (!raced() && swaps < maxSwaps && time.Now().Before(deadline)) {
		swaps++
		if err := kubeletsim.WriteAtomic(dir, version(swaps)); err != nil {
			close(done)
			wg.Wait()
			t.Fatal(err)
		}
	}
	swapping.Store(false)
	close(done)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for i := range prog {
		if reads, versions := prog[i].reads.Load(), prog[i].versions.Load(); reads < 1 || versions < 2 {
			t.Errorf("reader %d read %d times and saw %d versions during %d swaps; want reads of at least 2 versions while the volume changed",
				i, reads, versions, swaps)
		}
	}
	mustVersion(t, s, swaps)
}
