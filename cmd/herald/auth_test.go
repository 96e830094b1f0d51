package main_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/internal/heraldtest"
)

func TestBadTokenAtConnectCloses4001(t *testing.T) {
	h := heraldtest.Start(t, heraldtest.Options{})
	for name, tok := range map[string]string{
		"garbage":      "not-a-token",
		"wrong secret": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ4In0.3Jk2oPz2wP1wYh0Xj2d2i8L4D2Qm4-6kZQmS2QhU3xk",
		"expired":      heraldtest.MintToken(t, "alice", -time.Minute, nil),
	} {
		t.Run(name, func(t *testing.T) {
			c := h.Dial(t, tok)
			require.Equal(t, 4001, c.WaitClosed(t))
		})
	}
	// The Authorization header works like ?token=.
	c, _, err := heraldtest.DialURL(h.WSURL, http.Header{"Authorization": {"Bearer " + h.Token(t, "alice")}})
	require.NoError(t, err)
	defer c.Close()
	c.Subscribe(t, "news")
}

func TestUnauthenticatedCallsAreRefused(t *testing.T) {
	h := heraldtest.Start(t, heraldtest.Options{})
	c := h.Dial(t, "")
	require.Equal(t, -32001, c.CallErr(t, "subscribe", map[string]any{"channel": "news"}).Code)
	require.Equal(t, -32001, c.CallErr(t, "hello", map[string]any{}).Code)
	require.Equal(t, -32001, c.CallErr(t, "hello", map[string]any{"token": "bad"}).Code)
	require.Equal(t, -32001, c.CallErr(t, "authenticate", map[string]any{"token": "bad"}).Code)
	c.MustCall(t, "ping", nil)
	var res struct {
		UserID    string  `json:"user_id"`
		ExpiresAt *string `json:"expires_at"`
	}
	require.NoError(t, json.Unmarshal(c.MustCall(t, "authenticate", map[string]any{"token": h.Token(t, "alice")}), &res))
	require.Equal(t, "alice", res.UserID)
	require.NotNil(t, res.ExpiresAt)
	c.Subscribe(t, "news")
	// A token of another user cannot take over the connection.
	require.Equal(t, -32003, c.CallErr(t, "authenticate", map[string]any{"token": h.Token(t, "mallory")}).Code)
}

func TestAnonymousAccess(t *testing.T) {
	h := heraldtest.Start(t, heraldtest.Options{Auth: fmt.Sprintf("anonymous = true\n api_keys = [%q]", heraldtest.APIKey)})
	c := h.Dial(t, "")
	var hello struct {
		UserID *string `json:"user_id"`
	}
	require.NoError(t, json.Unmarshal(c.MustCall(t, "hello", map[string]any{}), &hello))
	require.Nil(t, hello.UserID)
	c.Subscribe(t, "public")
	h.Publish(t, heraldtest.N("public", "e", "t", `{}`))
	require.Len(t, c.Notifications(t, 1), 1)
	require.Equal(t, -32001, c.CallErr(t, "subscribe", map[string]any{"channel": "config"}).Code)
}

func TestConnectionWithoutTokenIsClosedAfterAuthTimeout(t *testing.T) {
	h := heraldtest.Start(t, heraldtest.Options{Auth: fmt.Sprintf("token_secret = %q\n api_keys = [%q]\n auth_timeout = \"1s\"", heraldtest.Secret, heraldtest.APIKey)})
	lingering := h.Dial(t, "")
	signedIn := h.Dial(t, "")
	start := time.Now()
	signedIn.MustCall(t, "authenticate", map[string]any{"token": h.Token(t, "alice")})
	require.Equal(t, 4001, lingering.WaitClosed(t))
	require.GreaterOrEqual(t, time.Since(start), 900*time.Millisecond)
	signedIn.MustCall(t, "ping", nil)
}

func TestTokenExpiryNotifiesThenDropsAfterGrace(t *testing.T) {
	h := heraldtest.Start(t, heraldtest.Options{Auth: fmt.Sprintf("token_secret = %q\n api_keys = [%q]\n expiry_grace = \"700ms\"", heraldtest.Secret, heraldtest.APIKey)})

	// One client lets its token lapse.
	lapsed := h.Dial(t, heraldtest.MintToken(t, "alice", 1500*time.Millisecond, nil))
	lapsed.Subscribe(t, "news")
	// Another renews within the grace period.
	renewed := h.Dial(t, heraldtest.MintToken(t, "bob", 1500*time.Millisecond, nil))
	renewed.Subscribe(t, "news")

	for _, c := range []*heraldtest.Client{lapsed, renewed} {
		n := c.Notifications(t, 1)[0]
		require.Equal(t, "$server", n.Channel)
		require.Equal(t, "token_expired", n.Event)
		require.Equal(t, "server", n.ObjectType)
		require.JSONEq(t, `{"message":"Authentication Token Expired"}`, string(n.Object))
	}
	renewed.MustCall(t, "authenticate", map[string]any{"token": h.Token(t, "bob")})
	// While expired, calls other than authenticate are refused.
	require.Equal(t, -32001, lapsed.CallErr(t, "subscribe", map[string]any{"channel": "more"}).Code)

	time.Sleep(1200 * time.Millisecond) // past the grace
	h.Publish(t, heraldtest.N("news", "e", "t", `{}`))
	require.Equal(t, "news", renewed.Notifications(t, 1)[0].Channel)
	// news is an open channel, not private: it stays after the grace
	// (TestGraceOverDropsOnlyPrivateSubscriptions drops a plugin's).
	require.Equal(t, "news", lapsed.Notifications(t, 1)[0].Channel)
	// token_expired is sent once.
	renewed.NoNotification(t, 100*time.Millisecond)
}

func TestOriginIsChecked(t *testing.T) {
	h := heraldtest.Start(t, heraldtest.Options{})
	_, resp, err := heraldtest.DialURL(h.WSURL+"?token="+h.Token(t, "a"), http.Header{"Origin": {"http://evil.example"}})
	require.Error(t, err)
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
	c, _, err := heraldtest.DialURL(h.WSURL+"?token="+h.Token(t, "a"), http.Header{"Origin": {"http://localhost:8080"}})
	require.NoError(t, err)
	c.Close()
}
