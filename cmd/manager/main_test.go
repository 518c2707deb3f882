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

// TestFairUseFlags: the per-issuer limits, the rotate-now interval and the rotation
// floor reach the controllers' Config, with defaults and clear errors.
func TestFairUseFlags(t *testing.T) {
	parse := func(args ...string) (controllers.Config, error) {
		fs := flag.NewFlagSet("manager", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		set := fairUseFlags(fs)
		var cfg controllers.Config
		if err := fs.Parse(args); err != nil {
			return cfg, err
		}
		return cfg, set(&cfg)
	}
	cfg, err := parse()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.IssuerLimits.Concurrency != controllers.DefaultIssuerConcurrency || cfg.RotateNowMinInterval != controllers.DefaultRotateNowMinInterval ||
		cfg.MinRotationGap != controllers.DefaultMinRotationGap {
		t.Errorf("defaults: %+v", cfg)
	}
	cfg, err = parse("--issuer-max-concurrent-requests=3", "--issuer-requests-per-second=2.5", "--issuer-request-burst=5",
		"--rotate-now-min-interval=1m", "--min-rotation-interval=15s")
	if err != nil {
		t.Fatal(err)
	}
	want := controllers.IssuerLimits{Concurrency: 3, Rate: 2.5, Burst: 5}
	if cfg.IssuerLimits != want || cfg.RotateNowMinInterval != time.Minute || cfg.MinRotationGap != 15*time.Second {
		t.Errorf("set: %+v", cfg)
	}
	for _, bad := range []string{"--issuer-max-concurrent-requests=0", "--issuer-requests-per-second=0", "--issuer-request-burst=0",
		"--rotate-now-min-interval=0s", "--min-rotation-interval=100ms"} {
		name := strings.SplitN(strings.TrimPrefix(bad, "--"), "=", 2)[0]
		if _, err := parse(bad); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: %v", bad, err)
		}
	}
}
