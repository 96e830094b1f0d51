package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/heraldhq/herald/sdk"
	"github.com/heraldhq/herald/sdk/sdktest"
	"github.com/stretchr/testify/require"
)

// In-process tests over the real plugin protocol (sdktest); the
// integration tests run the binaries.

func start(t *testing.T) *sdktest.Harness {
	return sdktest.Start(t, New(), map[string]any{"data_dir": t.TempDir()})
}

func claims(networks map[string]net) map[string]any {
	b, _ := json.Marshal(networks)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return map[string]any{"networks": m}
}

func connect(h *sdktest.Harness, id, sub string, networks map[string]net) {
	h.Events(sdk.Event{Kind: sdk.Connected, ConnID: id, UserID: sub, Claims: claims(networks)})
}

func subscribe(h *sdktest.Harness, id, sub string, networks map[string]net, ch string) {
	h.Events(sdk.Event{Kind: sdk.Subscribed, ConnID: id, UserID: sub, Claims: claims(networks), Channel: ch})
}

func TestManifest(t *testing.T) {
	m := start(t).Manifest()
	require.Equal(t, "timelines", m.Name)
	require.Equal(t, prefixes(), m.Prefixes)
	require.Equal(t, prefixes(), m.ExpiryKeptPrefixes, "every timelines subscription outlives the token")
	require.True(t, m.Authorizes)
	require.True(t, m.WantsEvents)
	require.Equal(t, map[string]bool{"emit": true, "grant": true, "revoke": true}, m.Methods)
}

func TestConfigErrorsNameTheKey(t *testing.T) {
	for _, tc := range []struct {
		cfg  map[string]any
		want string
	}{
		{map[string]any{"data_dir": t.TempDir(), "max_emit_channels": 0}, "config.max_emit_channels: must be from 1"},
		{map[string]any{"data_dir": t.TempDir(), "max_emit_channels": 10001}, "config.max_emit_channels: must be from 1"},
		{map[string]any{"data_dir": t.TempDir(), "datadir": "x"}, "datadir"},
	} {
		_, err := sdktest.StartErr(t, New(), tc.cfg)
		require.ErrorContains(t, err, tc.want, "%v", tc.cfg)
	}
}

func TestEmitBoundByMaxEmitChannels(t *testing.T) {
	h := sdktest.Start(t, New(), map[string]any{"data_dir": t.TempDir(), "max_emit_channels": 2})
	p := json.RawMessage(`{"event":"create","message":"m1","author":"u1"}`)
	_, err := h.Call("emit", sdktest.Backend(), map[string]any{"channels": []string{"network_timeline:n1", "network_timeline:n2", "network_timeline:n3"}, "payload": p})
	require.ErrorContains(t, err, "at most 2 channels per emit")
	_, err = h.Call("emit", sdktest.Backend(), map[string]any{"channels": []string{"network_timeline:n1", "network_timeline:n2"}, "payload": p})
	require.NoError(t, err)
	require.Len(t, h.Emitted(), 2)
}

// A subscription authorized just before a revoke, whose event comes after
// it, is checked again and dropped; one that still stands is kept.
func TestLateSubscribedEventIsCheckedAgainstGrants(t *testing.T) {
	h := start(t)
	bob := map[string]net{"n1": {User: "u2"}}
	connect(h, "c1", "gu2", bob)
	_, err := h.Call("grant", sdktest.Backend(), map[string]any{"network": "n1", "user": "u2", "group": "g5", "role": "admin"})
	require.NoError(t, err)
	subscribe(h, "c1", "gu2", bob, "group_admin_memberships:g5:n1")
	subscribe(h, "c1", "gu2", bob, "message_readers:m5:n1") // no grant: the revoke came first
	subscribe(h, "c1", "gu2", bob, "network_timeline:n1")
	require.ElementsMatch(t, []string{"group_admin_memberships:g5:n1", "network_timeline:n1"}, h.Subscriptions("c1"))
}

func TestRevokeDropsOnlyTheSubscriptionsThatStoodOnTheGrant(t *testing.T) {
	h := start(t)
	bob := map[string]net{"n1": {User: "u2"}}
	carol := map[string]net{"n1": {User: "u2", Permissions: []string{"view_readers"}}} // u2 again, with the permission in her token
	_, err := h.Call("grant", sdktest.Backend(), map[string]any{"network": "n1", "user": "u2", "message": "m5", "permission": "view_readers"})
	require.NoError(t, err)
	for id, nets := range map[string]map[string]net{"b1": bob, "b2": bob, "c1": carol} {
		connect(h, id, "gu2", nets)
		subscribe(h, id, "gu2", nets, "message_readers:m5:n1")
	}
	res, err := h.Call("revoke", sdktest.Backend(), map[string]any{"network": "n1", "user": "u2", "message": "m5", "permission": "view_readers"})
	require.NoError(t, err)
	require.JSONEq(t, `{"network":"n1","user":"u2","message":"m5","permission":"view_readers","revoked":true,"unsubscribed":2}`, string(res))
	require.Empty(t, h.Subscriptions("b1"))
	require.Empty(t, h.Subscriptions("b2"))
	require.Equal(t, []string{"message_readers:m5:n1"}, h.Subscriptions("c1"))

	res, err = h.Call("revoke", sdktest.Backend(), map[string]any{"network": "n1", "user": "u2", "message": "m5", "permission": "view_readers"})
	require.NoError(t, err)
	require.JSONEq(t, `{"network":"n1","user":"u2","message":"m5","permission":"view_readers","revoked":false,"unsubscribed":0}`, string(res))
}

// Every bad key of the block is reported, each as its own line naming the
// key (the host shows each at its key's position), in a dry run as at a
// start: an unknown key, a range error and an earlier version's
// timelines.db in data_dir.
func TestConfigReportsEveryBadKeyAtItsKey(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "timelines.db"), []byte("old"), 0o600))
	p := New()
	p.stateOf = func(sdk.Host) (sdk.State, error) {
		t.Fatal("a dry run took the state")
		return nil, nil
	}
	err := p.Configure(context.Background(), nil, sdk.NewDryRunConfig(map[string]any{
		"max_emit_chanels": 3, "max_emit_channels": 0, "data_dir": dir}))
	var se *sdk.Error
	require.ErrorAs(t, err, &se)
	require.Equal(t, []string{
		`config.max_emit_chanels: unknown key; did you mean "max_emit_channels"?`,
		"config.max_emit_channels: must be from 1 to 10000, got 0",
		"config.data_dir: " + filepath.Join(dir, "timelines.db") + " holds the grants of an earlier timelines plugin, which this version does not read (it keeps them in Herald's plugin state): starting would forget them; record them again with grant and remove the file",
	}, strings.Split(se.Message, "\n"))
}
