package client

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// tokenExpiry reads a JWT's exp claim without verifying the token (only
// herald can): the client needs it only to know when to ask for a new one.
func tokenExpiry(tok string) (time.Time, bool) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return time.Time{}, false
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return time.Time{}, false
	}
	var claims struct {
		Exp *float64 `json:"exp"`
	}
	if json.Unmarshal(b, &claims) != nil || claims.Exp == nil {
		return time.Time{}, false
	}
	return time.UnixMilli(int64(*claims.Exp * 1000)), true
}

// expiringWithin says whether tok expires within d.
func expiringWithin(tok string, d time.Duration) bool {
	exp, ok := tokenExpiry(tok)
	return ok && time.Until(exp) < d
}

// usableToken is the token to connect with: a fresh one from GetToken when
// there is none or it has expired (or nearly).
func (c *Client) usableToken(ctx context.Context) (string, error) {
	c.mu.Lock()
	tok := c.token
	c.mu.Unlock()
	if c.opts.GetToken != nil && (tok == "" || expiringWithin(tok, 2*time.Second)) {
		return c.freshToken(ctx)
	}
	return tok, nil
}

func (c *Client) freshToken(ctx context.Context) (string, error) {
	if c.opts.GetToken == nil {
		return "", errors.New("token expired and Options.GetToken is not set")
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	tok, err := c.opts.GetToken(ctx)
	if err != nil {
		return "", fmt.Errorf("get token: %w", err)
	}
	if tok == "" {
		return "", errors.New("get token: GetToken returned an empty token")
	}
	c.mu.Lock()
	c.token = tok
	c.mu.Unlock()
	return tok, nil
}

// startRefresh answers token_expired: a new token from GetToken, sent with
// authenticate on the current connection. Called with c.mu held.
func (c *Client) startRefresh() error {
	if c.refreshing || c.ctx.Err() != nil {
		return nil
	}
	if c.opts.GetToken == nil {
		return errors.New("token expired and Options.GetToken is not set: private subscriptions end after herald's grace period")
	}
	c.refreshing = true
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer func() {
			c.mu.Lock()
			c.refreshing = false
			c.mu.Unlock()
		}()
		tok, err := c.freshToken(c.ctx)
		if err == nil {
			err = c.Call(c.ctx, "authenticate", map[string]any{"token": tok}, nil)
		}
		if err != nil && c.ctx.Err() == nil {
			c.reportError(fmt.Errorf("token refresh: %w", err))
		}
	}()
	return nil
}
