// Package fake provides an issuer.Client for unit tests of callers. Each method calls the
// matching XxxFn field when set and records every call.
package fake

import (
	"context"
	"sync"

	"github.com/jobtoken/jobtoken/internal/issuer"
)

// Client is a configurable issuer.Client.
type Client struct {
	MintFn    func(ctx context.Context, grant issuer.Grant) (*issuer.TokenSet, error)
	RefreshFn func(ctx context.Context, refreshToken string) (*issuer.TokenSet, error)
	RevokeFn  func(ctx context.Context, tokens issuer.Revocation) error
	KeyIDsFn  func(ctx context.Context) ([]string, error)

	mu    sync.Mutex
	calls []string
}

var (
	_ issuer.Client     = &Client{}
	_ issuer.KeyChecker = &Client{}
)

// New returns a fake with no behaviour set: every call succeeds with a zero result.
func New() *Client { return &Client{} }

// WithMint sets MintFn.
func (c *Client) WithMint(fn func(context.Context, issuer.Grant) (*issuer.TokenSet, error)) *Client {
	c.MintFn = fn
	return c
}

// WithRefresh sets RefreshFn.
func (c *Client) WithRefresh(fn func(context.Context, string) (*issuer.TokenSet, error)) *Client {
	c.RefreshFn = fn
	return c
}

// WithRevoke sets RevokeFn.
func (c *Client) WithRevoke(fn func(context.Context, issuer.Revocation) error) *Client {
	c.RevokeFn = fn
	return c
}

// WithKeyIDs sets KeyIDsFn.
func (c *Client) WithKeyIDs(fn func(context.Context) ([]string, error)) *Client {
	c.KeyIDsFn = fn
	return c
}

// Calls returns the operations called so far, in order ("mint", "refresh", "revoke", "keyids").
func (c *Client) Calls() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.calls...)
}

func (c *Client) record(op string) {
	c.mu.Lock()
	c.calls = append(c.calls, op)
	c.mu.Unlock()
}

// Mint implements issuer.Client.
func (c *Client) Mint(ctx context.Context, grant issuer.Grant) (*issuer.TokenSet, error) {
	c.record("mint")
	if c.MintFn == nil {
		return &issuer.TokenSet{}, nil
	}
	return c.MintFn(ctx, grant)
}

// Refresh implements issuer.Client.
func (c *Client) Refresh(ctx context.Context, refreshToken string) (*issuer.TokenSet, error) {
	c.record("refresh")
	if c.RefreshFn == nil {
		return &issuer.TokenSet{}, nil
	}
	return c.RefreshFn(ctx, refreshToken)
}

// Revoke implements issuer.Client.
func (c *Client) Revoke(ctx context.Context, tokens issuer.Revocation) error {
	c.record("revoke")
	if c.RevokeFn == nil {
		return nil
	}
	return c.RevokeFn(ctx, tokens)
}

// KeyIDs implements issuer.KeyChecker.
func (c *Client) KeyIDs(ctx context.Context) ([]string, error) {
	c.record("keyids")
	if c.KeyIDsFn == nil {
		return nil, nil
	}
	return c.KeyIDsFn(ctx)
}
