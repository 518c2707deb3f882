package kubeletsim

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"
)

var tsDirName = regexp.MustCompile(`^\.\.\d{4}_\d{2}_\d{2}_\d{2}_\d{2}_\d{2}\.\d+$`)

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func readLink(t *testing.T, path string) string {
	t.Helper()
	target, err := os.Readlink(path)
	if err != nil {
		t.Fatal(err)
	}
	return target
}

func TestWriteAtomicLayout(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "vol")
	files := map[string][]byte{"access_token": []byte("a1"), "token_type": []byte("Bearer"), "expires_at": []byte("2026-11-23T12:00:00Z")}
	if err := WriteAtomic(dir, files); err != nil {
		t.Fatal(err)
	}
	ts := readLink(t, filepath.Join(dir, DataDirName))
	if !tsDirName.MatchString(ts) {
		t.Fatalf("..data -> %q, want a timestamped directory name", ts)
	}
	for name, content := range files {
		if got := readLink(t, filepath.Join(dir, name)); got != filepath.Join(DataDirName, name) {
			t.Errorf("%s -> %q, want ..data/%s", name, got, name)
		}
		fi, err := os.Stat(filepath.Join(dir, ts, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o400 {
			t.Errorf("%s has mode %v, want 0400", name, fi.Mode().Perm())
		}
		if got, _ := os.ReadFile(filepath.Join(dir, name)); string(got) != string(content) {
			t.Errorf("%s reads %q through its link", name, got)
		}
	}
	if want := []string{ts, DataDirName, "access_token", "expires_at", "token_type"}; !slices.Equal(listDir(t, dir), want) {
		t.Fatalf("volume holds %v, want %v", listDir(t, dir), want)
	}
}

func TestWriteAtomicUpdate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "vol")
	if err := WriteAtomic(dir, map[string][]byte{"access_token": []byte("a1"), "token_type": []byte("Bearer")}); err != nil {
		t.Fatal(err)
	}
	first := readLink(t, filepath.Join(dir, DataDirName))
	linkInfo, _ := os.Lstat(filepath.Join(dir, "access_token"))

	// Unchanged payload: nothing is written.
	wrote, err := writeAtomic(dir, map[string][]byte{"access_token": []byte("a1"), "token_type": []byte("Bearer")})
	if err != nil || wrote {
		t.Fatalf("unchanged payload: wrote=%v err=%v", wrote, err)
	}
	if readLink(t, filepath.Join(dir, DataDirName)) != first {
		t.Fatal("unchanged payload swapped ..data")
	}

	// Changed payload, one key dropped: new directory, old one removed, the dropped
	// key's link removed, the kept link untouched.
	wrote, err = writeAtomic(dir, map[string][]byte{"access_token": []byte("a2")})
	if err != nil || !wrote {
		t.Fatalf("changed payload: wrote=%v err=%v", wrote, err)
	}
	second := readLink(t, filepath.Join(dir, DataDirName))
	if second == first {
		t.Fatal("..data not swapped")
	}
	if want := []string{second, DataDirName, "access_token"}; !slices.Equal(listDir(t, dir), want) {
		t.Fatalf("volume holds %v, want %v", listDir(t, dir), want)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "access_token")); string(got) != "a2" {
		t.Fatalf("access_token reads %q", got)
	}
	if after, _ := os.Lstat(filepath.Join(dir, "access_token")); !os.SameFile(linkInfo, after) {
		t.Fatal("the user-visible link was recreated; the kubelet creates it once")
	}
}

func TestWriteAtomicNestedPathAndStaleTmp(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "vol")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// A writer that died between creating ..data_tmp and the rename.
	if err := os.Symlink("..gone", filepath.Join(dir, NewDataDirName)); err != nil {
		t.Fatal(err)
	}
	if err := WriteAtomic(dir, map[string][]byte{"sub/file": []byte("x")}); err != nil {
		t.Fatal(err)
	}
	if got := readLink(t, filepath.Join(dir, "sub")); got != filepath.Join(DataDirName, "sub") {
		t.Fatalf("sub -> %q", got)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "sub", "file")); string(got) != "x" {
		t.Fatalf("sub/file reads %q", got)
	}
	if _, err := os.Lstat(filepath.Join(dir, NewDataDirName)); !os.IsNotExist(err) {
		t.Fatal("..data_tmp left behind")
	}
}

func TestWriteAtomicRejectsBadPaths(t *testing.T) {
	dir := t.TempDir()
	for _, p := range []string{"", "/abs", "../up", "a/../../b", "..data", "..hidden"} {
		if err := WriteAtomic(dir, map[string][]byte{p: []byte("x")}); err == nil {
			t.Errorf("path %q accepted", p)
		}
	}
}
