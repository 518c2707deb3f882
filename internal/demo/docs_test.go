package demo

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jobtoken/jobtoken/internal/devissuer"
	"github.com/jobtoken/jobtoken/internal/kubeletsim"
	"github.com/jobtoken/jobtoken/internal/testenv"
)

// TestWorkerDocsShellExamples runs the shell examples of docs/workers.md as written,
// against the development issuer's protected API, with a token file laid out as the
// kubelet lays it out.
func TestWorkerDocsShellExamples(t *testing.T) {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(filepath.Join(root, "docs", "workers.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(string(doc), -1)
	if len(blocks) < 3 {
		t.Fatalf("docs/workers.md has %d sh examples, want at least 3", len(blocks))
	}
	// The example worker is built and put on PATH, as a worker image would hold it.
	binDir := t.TempDir()
	build := exec.Command("go", "build", "-o", filepath.Join(binDir, "example-worker"), "./cmd/example-worker")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the example worker: %v\n%s", err, out)
	}

	srv, err := devissuer.New(devissuer.Config{Clients: map[string]string{clientID: clientSecret}, Users: map[string]string{submitter: submitterPass}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = srv.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	token, err := passwordToken(ctx, srv.URL(), submitter, submitterPass)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := kubeletsim.WriteAtomic(dir, map[string][]byte{"access_token": []byte(token), "token_type": []byte("Bearer")}); err != nil {
		t.Fatal(err)
	}

	for i, b := range blocks {
		script := strings.ReplaceAll(b[1], "https://api.example.org/records", srv.URL()+"/api/records")
		wantCalls := int64(1)
		if strings.Contains(script, "example-worker") {
			// The documented run makes 600 calls at 5/s; the same command, faster.
			script = strings.Replace(script, "-n 600 -rate 5", "-n 6 -rate 50", 1)
			wantCalls = 6
		}
		if strings.Contains(b[1], "call()") {
			script += "\n[ \"$code\" = 200 ] || { echo \"got $code\"; exit 1; }\n"
		}
		before := srv.Counters().ResourceAccepted
		cmd := exec.CommandContext(ctx, "sh", "-ec", script)
		cmd.Env = append(os.Environ(), "JOBTOKEN_FILE="+filepath.Join(dir, "access_token"), "PATH="+binDir+":"+os.Getenv("PATH"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("example %d failed: %v\n%s\n%s", i+1, err, script, out)
			continue
		}
		if after := srv.Counters().ResourceAccepted; after != before+wantCalls {
			t.Errorf("example %d: the API accepted %d calls, want %d", i+1, after-before, wantCalls)
		}
	}
}
