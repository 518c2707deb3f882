// Command example-worker is a minimal batch worker: it calls a protected URL n times at a
// fixed rate with the token that the jobtoken operator keeps fresh in $JOBTOKEN_FILE, and
// prints how many calls got 2xx and how many 401.
//
//	example-worker -url http://127.0.0.1:8080/records -n 600 -rate 5
//
// It exits 1 when any call failed (not 2xx), as an import that lost records would.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/jobtoken/jobtoken/pkg/tokenfile"
)

// summary is what the worker prints at the end (one line, or JSON with -json).
type summary struct {
	Calls        int   `json:"calls"`
	OK           int   `json:"ok2xx"`
	Unauthorized int   `json:"unauthorized401"`
	Other        int   `json:"otherStatus"`
	Errors       int   `json:"errors"`
	Retries      int64 `json:"retriedAfter401"`
}

func main() {
	os.Exit(run())
}

func run() int {
	var (
		url       = flag.String("url", "", "URL to call (required)")
		method    = flag.String("method", http.MethodGet, "HTTP method")
		n         = flag.Int("n", 10, "number of calls; 0 calls until interrupted")
		rate      = flag.Float64("rate", 5, "calls per second")
		tokenFile = flag.String("token-file", "", "token file or volume directory (default $"+tokenfile.EnvFile+")")
		timeout   = flag.Duration("timeout", 10*time.Second, "timeout of one call")
		asJSON    = flag.Bool("json", false, "print the summary as JSON")
		verbose   = flag.Bool("v", false, "print every call that did not get a 2xx")
	)
	flag.Parse()
	if *url == "" || *rate <= 0 || *n < 0 {
		flag.Usage()
		return 2
	}

	var src *tokenfile.Source
	var err error
	if *tokenFile != "" {
		src, err = tokenfile.New(*tokenFile)
	} else {
		src, err = tokenfile.NewFromEnv()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "example-worker:", err)
		return 2
	}
	transport := tokenfile.NewTransport(src, http.DefaultTransport)
	client := &http.Client{Transport: transport, Timeout: *timeout}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var sum summary
	tick := time.NewTicker(time.Duration(float64(time.Second) / *rate))
	defer tick.Stop()
	for i := 0; *n == 0 || i < *n; i++ {
		if i > 0 {
			select {
			case <-ctx.Done():
			case <-tick.C:
			}
		}
		if ctx.Err() != nil {
			break
		}
		status, err := call(ctx, client, *method, *url)
		sum.Calls++
		switch {
		case err != nil:
			sum.Errors++
			if *verbose {
				fmt.Fprintf(os.Stderr, "call %d: %v\n", i+1, err)
			}
		case status >= 200 && status < 300:
			sum.OK++
		case status == http.StatusUnauthorized:
			sum.Unauthorized++
		default:
			sum.Other++
		}
		if *verbose && err == nil && (status < 200 || status >= 300) {
			fmt.Fprintf(os.Stderr, "call %d: HTTP %d\n", i+1, status)
		}
	}
	sum.Retries = transport.Retries()

	if *asJSON {
		_ = json.NewEncoder(os.Stdout).Encode(sum)
	} else {
		fmt.Printf("calls=%d 2xx=%d 401=%d other=%d errors=%d retried_after_401=%d\n",
			sum.Calls, sum.OK, sum.Unauthorized, sum.Other, sum.Errors, sum.Retries)
	}
	if sum.OK != sum.Calls {
		return 1
	}
	return 0
}

// call makes one request and returns its status. Errors never hold the token: the
// Transport puts it only into the Authorization header.
func call(ctx context.Context, client *http.Client, method, url string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, nil
}
