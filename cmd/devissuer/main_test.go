package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jobtoken/jobtoken/internal/testenv"
)

func TestHelpListsFlags(t *testing.T) {
	var out bytes.Buffer
	if _, err := parseFlags([]string{"--help"}, &out); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("--help: %v", err)
	}
	help := out.String()
	for _, f := range []string{
		"-listen", "-allow-remote", "-access-ttl", "-refresh-ttl", "-session-max", "-client",
		"-user", "-tenant", "-key-file", "-leeway", "-exchange-own-session",
	} {
		if !strings.Contains(help, f) {
			t.Errorf("--help lacks %s", f)
		}
	}
	if !strings.Contains(help, `(default "127.0.0.1:8800")`) {
		t.Errorf("--help does not show the default listen address:\n%s", help)
	}
}

func TestDefaults(t *testing.T) {
	o, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.listen != "127.0.0.1:8800" || o.allowRemote {
		t.Errorf("listen %q allowRemote %v", o.listen, o.allowRemote)
	}
	c := o.cfg
	if c.AccessTokenTTL != 20*time.Second || c.RefreshTokenTTL != 10*time.Minute || c.SessionMax != 0 ||
		c.Tenant != "diku" || c.KeyFile != "" || c.Leeway != 2*time.Second || len(c.Clients) != 0 || len(c.Users) != 0 {
		t.Errorf("defaults %+v", c)
	}
}

func TestParseFlags(t *testing.T) {
	o, err := parseFlags([]string{
		"--listen", "[::1]:9000", "--access-ttl", "3m", "--refresh-ttl=30m", "--session-max", "1h",
		"--client", "jobtoken:s3:cret", "--client", "ui:ui", "--user", "alice:pw", "--tenant", "t1",
		"--key-file", "/tmp/k.pem", "--leeway", "0s",
	}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	c := o.cfg
	if o.listen != "[::1]:9000" || c.AccessTokenTTL != 3*time.Minute || c.RefreshTokenTTL != 30*time.Minute ||
		c.SessionMax != time.Hour || c.Tenant != "t1" || c.KeyFile != "/tmp/k.pem" || c.Leeway >= 0 {
		t.Errorf("parsed %+v", o)
	}
	if c.Clients["jobtoken"] != "s3:cret" || c.Clients["ui"] != "ui" || c.Users["alice"] != "pw" {
		t.Errorf("clients %v users %v", c.Clients, c.Users)
	}
}

func TestParseFlagsErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--listen", "0.0.0.0:8800"},
		{"--listen", ":8800"},
		{"--listen", "example.com:8800"},
		{"--listen", "10.1.2.3:8800"},
		{"--listen", "nonsense"},
		{"--client", "nosecret"},
		{"--client", ":x"},
		{"--client", "a:1", "--client", "a:2"},
		{"--user", "alice"},
		{"--access-ttl", "-1s"},
		{"--session-max", "forever"},
		{"stray"},
	} {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
	for _, args := range [][]string{
		{"--listen", "0.0.0.0:8800", "--allow-remote"},
		{"--listen", "localhost:0"},
		{"--listen", "127.0.0.2:0"},
	} {
		if _, err := parseFlags(args, io.Discard); err != nil {
			t.Errorf("%q: %v", args, err)
		}
	}
}

func TestSecretsNotPrinted(t *testing.T) {
	p := &pairs{what: "client", m: map[string]string{}}
	if err := p.Set("jobtoken:topsecret"); err != nil {
		t.Fatal(err)
	}
	if s := p.String(); strings.Contains(s, "topsecret") {
		t.Errorf("String() = %q", s)
	}
}

// TestRunServesAndStops runs the binary's main path with a client secret and a user
// password, uses both (password grant, refresh, revocation), and checks that the log
// describes the run and holds neither of them nor any token handed out.
func TestRunServesAndStops(t *testing.T) {
	const clientSecret, password = "cs-7Hq2Zx9Lw4", "pw-Vd83Kr1Ty6"
	o, err := parseFlags([]string{"--listen", "127.0.0.1:0", "--client", "job:" + clientSecret, "--user", "alice:" + password}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	var logs testenv.LogBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, o, pw, slog.New(slog.NewTextHandler(&logs, nil)))
		_ = pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	base := strings.TrimSpace(line)
	if !strings.HasPrefix(base, "http://127.0.0.1:") {
		t.Fatalf("printed %q", line)
	}
	res, err := http.Get(base + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	var disc struct {
		TokenEndpoint      string `json:"token_endpoint"`
		RevocationEndpoint string `json:"revocation_endpoint"`
	}
	err = json.NewDecoder(res.Body).Decode(&disc)
	_ = res.Body.Close()
	if err != nil || res.StatusCode != http.StatusOK || disc.TokenEndpoint == "" || disc.RevocationEndpoint == "" {
		t.Fatalf("discovery %d: %v %+v", res.StatusCode, err, disc)
	}
	post := func(endpoint string, form url.Values) map[string]any {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(form.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("job", clientSecret)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = res.Body.Close() }()
		out := map[string]any{}
		_ = json.NewDecoder(res.Body).Decode(&out)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("%s: status %d", endpoint, res.StatusCode)
		}
		return out
	}
	first := post(disc.TokenEndpoint, url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {password}})
	second := post(disc.TokenEndpoint, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {str(first["refresh_token"])}})
	post(disc.RevocationEndpoint, url.Values{"token": {str(second["refresh_token"])}, "token_type_hint": {"refresh_token"}})
	secrets := map[string]string{"the client secret": clientSecret, "the password": password}
	for i, set := range []map[string]any{first, second} {
		for _, k := range []string{"access_token", "refresh_token"} {
			v := str(set[k])
			if len(v) < 16 {
				t.Fatalf("answer %d has no %s", i, k)
			}
			secrets[fmt.Sprintf("%s %d", k, i)] = v
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	out := logs.String()
	for _, want := range []string{"Development issuer listening", "clients=", "Shutting down"} {
		if !strings.Contains(out, want) {
			t.Errorf("the log lacks %q: the scan below would prove little", want)
		}
	}
	for what, v := range secrets {
		if strings.Contains(out, v) {
			t.Errorf("the log holds %s", what)
		}
	}
}

func str(v any) string {
	s, _ := v.(string)
	return s
}
