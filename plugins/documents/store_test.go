package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/require"

	pluginpb "github.com/heraldhq/herald/sdk/proto"
	"github.com/heraldhq/herald/sdk/sdktest"
)

// TestSegKeys: every name becomes a valid key segment, one to one; long
// names are hashed.
func TestSegKeys(t *testing.T) {
	for _, tc := range []struct{ in, out string }{
		{"items", "items"},
		{"My_Items-2", "My_Items-2"},
		{"a.b", "a=2Eb"},
		{"a/b c", "a=2Fb=20c"},
		{"=", "=3D"},
		{"é", "=C3=A9"},
		{"x\x00", "x=00"},
	} {
		require.Equal(t, tc.out, seg(tc.in), "seg(%q)", tc.in)
	}
	long := strings.Repeat("é", 100) // 200 bytes, 600 escaped
	require.True(t, strings.HasPrefix(seg(long), "=="))
	require.Len(t, seg(long), 66)
	require.NotEqual(t, seg(long), seg(long+"x"))
	// 255 escaped bytes stay escaped; one more is hashed.
	require.Equal(t, strings.Repeat("=2E", 85), seg(strings.Repeat(".", 85)))
	require.True(t, strings.HasPrefix(seg(strings.Repeat(".", 86)), "=="))

	for _, name := range []string{"i", "a/b", strings.Repeat("x", 256), strings.Repeat("\xff", 256), "..", " "} {
		k := docKey(name, name, strings.Repeat(name, 2))
		require.NoError(t, checkKey(k), "key of %q", name)
		require.NoError(t, checkKey(memberKey("0123456789abcdef", name)))
	}
}

// TestStoreEachInIDOrder: a collection's documents come in _id byte order,
// whatever their keys (escaped, hashed), and a delete's leftover marker
// reads as absent and is overwritten by a create.
func TestStoreEachInIDOrder(t *testing.T) {
	st := newMemState()
	s := stateStore{st: st, log: hclog.NewNullLogger()}
	ctx := context.Background()
	ids := []string{"b", "a", "é", strings.Repeat("z", 400), "A", "a.b", "-"}
	for _, id := range ids {
		require.NoError(t, s.Create(ctx, "i", "c", &Doc{ID: id, Source: json.RawMessage(`{}`)}))
	}
	require.NoError(t, s.Create(ctx, "i", "other", &Doc{ID: "x", Source: json.RawMessage(`{}`)}))
	var got []string
	require.NoError(t, s.Each(ctx, "i", "c", func(d *Doc) bool { got = append(got, d.ID); return true }))
	require.Equal(t, []string{"-", "A", "a", "a.b", "b", strings.Repeat("z", 400), "é"}, got)

	// A delete that claimed "a" and died before deleting it.
	_, rev, err := s.Get(ctx, "i", "c", "a")
	require.NoError(t, err)
	marker, _ := json.Marshal(Doc{ID: "a", Deleting: true})
	_, err = st.Update(ctx, docKey("i", "c", "a"), marker, rev)
	require.NoError(t, err)
	d, _, err := s.Get(ctx, "i", "c", "a")
	require.NoError(t, err)
	require.Nil(t, d)
	n := 0
	require.NoError(t, s.Each(ctx, "i", "c", func(*Doc) bool { n++; return true }))
	require.Equal(t, len(ids)-1, n)
	require.NoError(t, s.Create(ctx, "i", "c", &Doc{ID: "a", Source: json.RawMessage(`{"again":1}`)}))
	d, _, err = s.Get(ctx, "i", "c", "a")
	require.NoError(t, err)
	require.JSONEq(t, `{"again":1}`, string(d.Source))
	require.ErrorIs(t, s.Create(ctx, "i", "c", &Doc{ID: "a", Source: json.RawMessage(`{}`)}), errChanged)
}

// newMemState is the State the tests' processes share: sdktest.MemState on
// a clock that stands still, so that a TTL ends only when a test says so
// (Expire), and with the plugin's own key rule (checkKey) beside the host's.
func newMemState() *sdktest.MemState {
	st := sdktest.NewMemState()
	still := time.Unix(1_700_000_000, 0)
	st.SetClock(func() time.Time { return still })
	st.SetKeyCheck(checkKey)
	return st
}

// checkKey is stricter than sdk.State, on purpose: the plugin's keys keep
// to the bytes every key-value store takes (keys.go).
func checkKey(key string) error {
	for i := 0; i < len(key); i++ {
		if c := key[i]; !plainByte(c) && c != '=' && c != '/' {
			return fmt.Errorf("key %q: byte %q outside [A-Za-z0-9_=/-]", key, c)
		}
	}
	return pluginpb.ValidStateKey(key)
}
