package server

import (
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/core/auth"
	"github.com/heraldhq/herald/core/rpc"
)

// A plugin route's caller: what each credential makes, what a wrong one is
// told, and until when a token's rights last (its expiry plus the grace).
func TestAuthenticateHTTP(t *testing.T) {
	srv := testServer(t, 100) // secret "s", API key "k"
	grace := srv.live().Auth.ExpiryGrace
	authz := func(bearer, query string) (string, error) {
		r := httptest.NewRequest("GET", "/v1/x?"+query, nil)
		if bearer != "" {
			r.Header.Set("Authorization", "Bearer "+bearer)
		}
		c, err := srv.AuthenticateHTTP(r)
		if err != nil {
			return "", err
		}
		if c.Backend {
			return "backend", nil
		}
		return c.UserID, nil
	}
	who, err := authz("k", "")
	require.NoError(t, err)
	require.Equal(t, "backend", who)

	_, err = authz("not-the-key", "")
	var re *rpc.Error
	require.ErrorAs(t, err, &re)
	require.Equal(t, rpc.CodeUnauthenticated, re.Code)
	require.Contains(t, re.Message, "not an API key of this server", "a mistyped key is not called a bad token")

	_, err = authz("a.b.c", "")
	require.ErrorAs(t, err, &re)
	require.Contains(t, re.Message, "token malformed")

	tok, err := auth.NewTokens("s").Mint("alice", time.Hour, nil)
	require.NoError(t, err)
	r := httptest.NewRequest("GET", "/v1/x?token="+tok, nil)
	c, err := srv.AuthenticateHTTP(r)
	require.NoError(t, err)
	require.Equal(t, "alice", c.UserID)
	id, err := auth.NewTokens("s").Verify(tok)
	require.NoError(t, err)
	require.Equal(t, id.ExpiresAt.Add(grace), c.Until, "a stream lasts as long as a connection's subscriptions would")

	forever, err := auth.NewTokens("s").Mint("bob", 0, nil)
	require.NoError(t, err)
	r = httptest.NewRequest("GET", "/v1/x", nil)
	r.Header.Set("Authorization", "Bearer "+forever)
	c, err = srv.AuthenticateHTTP(r)
	require.NoError(t, err)
	require.True(t, c.Until.IsZero(), "a token without exp has no end")
}
