package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/heraldhq/herald/sdk"
	"github.com/heraldhq/herald/sdk/sdktest"
	"github.com/stretchr/testify/require"
)

// In-process tests of what the plugin shares through its State: several
// instances of the plugin on one State behave as the timelines processes
// of several Herald nodes on one JetStream bucket.

func startOn(t *testing.T, st *sdktest.State) *sdktest.Harness {
	return st.Start(t, New(), map[string]any{"data_dir": t.TempDir()})
}

// startOnFake starts a process on fs and waits for its watch of the grants
// to be in place.
func startOnFake(t *testing.T, fs *sdktest.MemState) *sdktest.Harness {
	p := New()
	p.stateOf = fs.Handle
	before := fs.Watching()
	h := sdktest.Start(t, p, map[string]any{"data_dir": t.TempDir()})
	require.Eventually(t, func() bool { return fs.Watching() > before }, sdktest.Timeout, 5e6, "the watch is in place")
	return h
}

func backendCall(t *testing.T, h *sdktest.Harness, method string, params map[string]any) string {
	t.Helper()
	res, err := h.Call(method, sdktest.Backend(), params)
	require.NoError(t, err)
	return string(res)
}

var (
	viewM5  = map[string]any{"network": "n1", "user": "u2", "message": "m5", "permission": "view_readers"}
	adminG5 = map[string]any{"network": "n1", "user": "u2", "group": "g5", "role": "admin"}
)

// A grant recorded through one node opens the channel on another; a revoke
// through that other closes it on the first.
func TestGrantsSharedAcrossNodes(t *testing.T) {
	st := sdktest.NewState()
	a, b := startOn(t, st), startOn(t, st)
	bob := sdk.Caller{ConnID: "c", UserID: "gu2", Claims: claims(map[string]net{"n1": {User: "u2"}})}
	refused, err := b.Authorize(bob, "message_readers:m5:n1")
	require.NoError(t, err)
	require.Len(t, refused, 1)

	require.JSONEq(t, `{"network":"n1","user":"u2","message":"m5","permission":"view_readers","granted":true}`, backendCall(t, a, "grant", viewM5))
	require.JSONEq(t, `{"network":"n1","user":"u2","message":"m5","permission":"view_readers","granted":false}`, backendCall(t, b, "grant", viewM5), "granted once, whichever node")
	refused, err = b.Authorize(bob, "message_readers:m5:n1")
	require.NoError(t, err)
	require.Empty(t, refused)

	require.JSONEq(t, `{"network":"n1","user":"u2","message":"m5","permission":"view_readers","revoked":true,"unsubscribed":0}`, backendCall(t, b, "revoke", viewM5))
	refused, err = a.Authorize(bob, "message_readers:m5:n1")
	require.NoError(t, err)
	require.Len(t, refused, 1)
}

// A revoke on node A drops, on node B, the subscriptions that stood on the
// grant, and only those.
func TestRevokeOnOneNodeDropsOnEvery(t *testing.T) {
	st := sdktest.NewState()
	a, b := startOn(t, st), startOn(t, st)
	bob := map[string]net{"n1": {User: "u2"}}
	carol := map[string]net{"n1": {User: "u2", Permissions: []string{"view_readers"}}} // holds it by her token
	backendCall(t, a, "grant", viewM5)
	backendCall(t, a, "grant", adminG5)
	for _, h := range []*sdktest.Harness{a, b} {
		connect(h, "b1", "gu2", bob)
		subscribe(h, "b1", "gu2", bob, "message_readers:m5:n1")
		subscribe(h, "b1", "gu2", bob, "group_admin_memberships:g5:n1")
		connect(h, "c1", "gu2", carol)
		subscribe(h, "c1", "gu2", carol, "message_readers:m5:n1")
	}

	require.JSONEq(t, `{"network":"n1","user":"u2","message":"m5","permission":"view_readers","revoked":true,"unsubscribed":1}`,
		backendCall(t, a, "revoke", viewM5), "a counts its own connections")
	require.Equal(t, []string{"group_admin_memberships:g5:n1"}, a.Subscriptions("b1"))
	require.Eventually(t, func() bool { return len(b.Subscriptions("b1")) == 1 }, sdktest.Timeout, 5e6, "b drops bob's subscription")
	require.Equal(t, []string{"group_admin_memberships:g5:n1"}, b.Subscriptions("b1"))
	require.Equal(t, []string{"message_readers:m5:n1"}, b.Subscriptions("c1"), "carol's token still allows it")

	backendCall(t, b, "revoke", adminG5)
	require.Eventually(t, func() bool { return len(a.Subscriptions("b1")) == 0 }, sdktest.Timeout, 5e6, "a drops bob's admin subscription")
	require.Empty(t, b.Subscriptions("b1"))
}

// A grant whose EID is too long to be written out in its key (hashed): its
// revoke cannot be read back by the other nodes, which then check every
// grant-based subscription they hold.
func TestRevokeOfAHashedGrantDropsOnEvery(t *testing.T) {
	st := sdktest.NewState()
	a, b := startOn(t, st), startOn(t, st)
	long := strings.Repeat("é", 100) // 200 bytes, 600 escaped
	g := map[string]any{"network": "n1", "user": "u2", "message": long, "permission": "view_readers"}
	backendCall(t, a, "grant", g)
	bob := map[string]net{"n1": {User: "u2"}}
	connect(b, "b1", "gu2", bob)
	subscribe(b, "b1", "gu2", bob, "message_readers:"+long+":n1")
	require.Len(t, b.Subscriptions("b1"), 1)
	backendCall(t, a, "revoke", g)
	require.Eventually(t, func() bool { return len(b.Subscriptions("b1")) == 0 }, sdktest.Timeout, 5e6)
}

// When the watch says changes may have been missed (Reset), every
// grant-based subscription of the node is checked again: a revoke the
// watch never reported still drops.
func TestWatchResetChecksEverySubscription(t *testing.T) {
	fs := sdktest.NewMemState()
	a := startOnFake(t, fs)
	backendCall(t, a, "grant", viewM5)
	bob := map[string]net{"n1": {User: "u2"}}
	connect(a, "b1", "gu2", bob)
	subscribe(a, "b1", "gu2", bob, "message_readers:m5:n1")
	fs.WriteUnseen(grant{Network: "n1", User: "u2", Right: rightViewReaders, Object: "m5"}.key(), nil, true)
	require.Len(t, a.Subscriptions("b1"), 1, "nothing reported: still subscribed")
	fs.ResetWatchers()
	require.Eventually(t, func() bool { return len(a.Subscriptions("b1")) == 0 }, sdktest.Timeout, 5e6)
}

func TestGrantKeys(t *testing.T) {
	for _, g := range []grant{
		{Network: "n1", User: "u2", Right: rightViewReaders, Object: "m5"},
		{Network: "a/b", User: "%41", Right: rightAdmin, Object: "g.~é"},
	} {
		k := g.key()
		require.True(t, strings.HasPrefix(k, "grants/"+g.Right+"/"), k)
		require.Len(t, strings.Split(k, "/"), 5, k)
		for i := 0; i < len(k); i++ {
			require.True(t, k[i] > ' ' && k[i] < 0x7f, k)
		}
		back, ok := grantOfKey(k)
		require.True(t, ok, k)
		require.Equal(t, g, back)
	}
	require.Equal(t, "grants/admin/a%2Fb/%2541/g%2E%7E%C3%A9", grant{Network: "a/b", User: "%41", Right: rightAdmin, Object: "g.~é"}.key())
	long := grant{Network: "n1", User: "u2", Right: rightViewReaders, Object: strings.Repeat("x", 300)}
	seg := strings.Split(long.key(), "/")[4]
	require.Len(t, seg, 65)
	require.True(t, strings.HasPrefix(seg, "~"))
	_, ok := grantOfKey(long.key())
	require.False(t, ok)
	for _, k := range []string{"grants/x/n/u/o", "grants/admin/n/u", "other/admin/n/u/o", "grants/admin/n/u/%4"} {
		_, ok := grantOfKey(k)
		require.False(t, ok, k)
	}
}

// A dry run checks the config and touches no state.
func TestDryRunTouchesNoState(t *testing.T) {
	p := New()
	p.stateOf = func(sdk.Host) (sdk.State, error) {
		t.Fatal("a dry run took the state")
		return nil, nil
	}
	require.NoError(t, p.Configure(context.Background(), nil, sdk.NewDryRunConfig(map[string]any{"data_dir": t.TempDir()})))
}

// Without a State the plugin does not start, and says why; next to an
// earlier version's timelines.db neither.
func TestConfigureNeedsStateAndRefusesAnOldDB(t *testing.T) {
	p := New()
	p.stateOf = func(sdk.Host) (sdk.State, error) { return nil, sdk.ErrNoState }
	_, err := sdktest.StartErr(t, p, map[string]any{"data_dir": t.TempDir()})
	require.ErrorContains(t, err, sdk.ErrNoState.Error())

	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "timelines.db"), []byte("old"), 0o600))
	_, err = sdktest.StartErr(t, New(), map[string]any{"data_dir": dir})
	require.ErrorContains(t, err, "earlier timelines plugin")
	h := sdktest.Start(t, New(), map[string]any{}) // data_dir is needed for nothing else
	backendCall(t, h, "grant", viewM5)
}

// While the state cannot be reached, grant and revoke fail with -32050
// (retry later), and a check that cannot read the grants drops nothing.
func TestStateUnavailable(t *testing.T) {
	fs := sdktest.NewMemState()
	a := startOnFake(t, fs)
	backendCall(t, a, "grant", viewM5)
	bob := map[string]net{"n1": {User: "u2"}}
	connect(a, "b1", "gu2", bob)
	subscribe(a, "b1", "gu2", bob, "message_readers:m5:n1")
	fs.SetDown(true)
	for _, m := range []string{"grant", "revoke"} {
		_, err := a.Call(m, sdktest.Backend(), adminG5)
		var e *sdk.Error
		require.ErrorAs(t, err, &e, m)
		require.Equal(t, sdk.CodePluginUnavailable, e.Code, m)
	}
	// Its Subscribed event is checked again, which cannot read the grant:
	// the subscription stays.
	subscribe(a, "b1", "gu2", bob, "group_admin_memberships:g5:n1")
	fs.SetDown(false)
	require.ElementsMatch(t, []string{"message_readers:m5:n1", "group_admin_memberships:g5:n1"}, a.Subscriptions("b1"))
}

// While the state cannot be reached, a subscribe that needs a recorded
// grant is refused with -32050 (retry later); the token's own rights work.
func TestSubscribeWhileStateUnavailable(t *testing.T) {
	fs := sdktest.NewMemState()
	a := startOnFake(t, fs)
	backendCall(t, a, "grant", viewM5)
	fs.SetDown(true)
	bob := sdk.Caller{ConnID: "c", UserID: "gu2", Claims: claims(map[string]net{"n1": {User: "u2"}})}
	refused, err := a.Authorize(bob, "message_readers:m5:n1", "network_timeline:n1")
	require.NoError(t, err)
	require.Len(t, refused, 1)
	require.Equal(t, "message_readers:m5:n1", refused[0].Channel)
	require.Equal(t, sdk.CodePluginUnavailable, refused[0].Code)
	require.Contains(t, refused[0].Reason, "retry later")
	fs.SetDown(false)
	refused, err = a.Authorize(bob, "message_readers:m5:n1")
	require.NoError(t, err)
	require.Empty(t, refused)
}
