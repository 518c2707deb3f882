package main

import (
	"flag"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/jobtoken/jobtoken/controllers"
	"github.com/jobtoken/jobtoken/internal/issuer"
)

// TestIssuerFlags: by default the manager refuses link-local destinations (the cloud
// metadata address among them), bounds each request and the size of tokens; bad values
// name the flag.
func TestIssuerFlags(t *testing.T) {
	parse := func(args ...string) (issuer.HTTPOptions, error) {
		o, err := parseIssuerFlags(args...)
		return o.HTTP, err
	}
	def, err := parse()
	if err != nil {
		t.Fatal(err)
	}
	if got := issuer.FormatNetworks(def.RefusedNetworks); got != "169.254.0.0/16,fe80::/10" {
		t.Errorf("default refused networks %q", got)
	}
	if def.Timeout < 5*time.Second || def.Timeout > 10*time.Second {
		t.Errorf("default timeout %s is outside 5-10s", def.Timeout)
	}
	o, err := parse("--issuer-refused-networks=10.0.0.0/8, 169.254.169.254", "--issuer-request-timeout=3s")
	if err != nil {
		t.Fatal(err)
	}
	if got := issuer.FormatNetworks(o.RefusedNetworks); got != "10.0.0.0/8,169.254.169.254/32" || o.Timeout != 3*time.Second {
		t.Errorf("parsed %q %s", got, o.Timeout)
	}
	if o, err := parse("--issuer-refused-networks="); err != nil || len(o.RefusedNetworks) != 0 {
		t.Errorf("empty list: %v %v", o.RefusedNetworks, err)
	}
	for _, bad := range [][]string{{"--issuer-refused-networks=10.0.0.0/33"}, {"--issuer-request-timeout=0s"}, {"--max-token-bytes=100"}, {"--max-token-bytes=1000000"}} {
		if _, err := parse(bad...); err == nil || !strings.Contains(err.Error(), strings.SplitN(strings.TrimPrefix(bad[0], "--"), "=", 2)[0]) {
			t.Errorf("%v: %v", bad, err)
		}
	}
}

func parseIssuerFlags(args ...string) (controllers.IssuerOptions, error) {
	fs := flag.NewFlagSet("manager", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	get := issuerFlags(fs)
	if err := fs.Parse(args); err != nil {
		return controllers.IssuerOptions{}, err
	}
	return get()
}

func TestMaxTokenBytesFlag(t *testing.T) {
	o, err := parseIssuerFlags()
	if err != nil || o.MaxTokenBytes != issuer.DefaultMaxTokenBytes {
		t.Fatalf("default %d %v", o.MaxTokenBytes, err)
	}
	if o, err := parseIssuerFlags("--max-token-bytes=16384"); err != nil || o.MaxTokenBytes != 16384 {
		t.Fatalf("set %d %v", o.MaxTokenBytes, err)
	}
}
