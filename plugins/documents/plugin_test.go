package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/heraldhq/herald/sdk"
	"github.com/heraldhq/herald/sdk/sdktest"
	"github.com/stretchr/testify/require"
)

// filters counts the filters registered in every engine.
func (d *Documents) filters() (n int) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	for _, c := range d.colls {
		n += c.engine.Len()
	}
	return n
}

// TestRoomsLeaveNothingBehind subscribes connections to many rooms, then
// takes them out every way a subscriber leaves (unsubscribe, a core
// unsubscribe of the channel, a disconnect): once the last subscriber of a
// room is gone, nothing of it is left in memory, in the engines or in State.
func TestRoomsLeaveNothingBehind(t *testing.T) {
	d := New()
	h := sdktest.Start(t, d, map[string]any{"resume_window": "0s"})
	for _, c := range []string{"c1", "c2", "c3"} {
		h.Connect(c, "u"+c)
	}
	rooms := map[string]string{} // room -> a channel of it
	for i := range 30 {
		for _, c := range []string{"c1", "c2", "c3"} {
			res, err := h.Call("subscribe", h.Client(c), map[string]any{"index": "i", "collection": fmt.Sprintf("c%d", i%3),
				"body": map[string]any{"range": map[string]any{"n": map[string]any{"gte": i}}}, "users": []string{"all", "in", "none"}[i%3]})
			require.NoError(t, err)
			var r struct{ RoomID, Channel string }
			require.NoError(t, json.Unmarshal(res, &r))
			rooms[r.RoomID] = r.Channel
		}
	}
	require.Len(t, rooms, 30)
	require.Equal(t, 30, d.filters())
	require.Len(t, stateKeys(h.State(), roomPrefix), 30)
	require.Len(t, stateKeys(h.State(), memberPrefix), 90)

	// c1 unsubscribes from every room; c2's channels go by core unsubscribes.
	for room, ch := range rooms {
		_, err := h.Call("unsubscribe", h.Client("c1"), map[string]any{"roomId": room})
		require.NoError(t, err)
		h.Events(sdk.Event{Kind: sdk.Unsubscribed, ConnID: "c1", Channel: ch}) // the host's report of it
		h.Events(sdk.Event{Kind: sdk.Unsubscribed, ConnID: "c2", Channel: ch})
	}
	require.Equal(t, 30, d.filters(), "c3 is still in every room")
	// c3 disconnects: the host reports each channel, then the connection.
	var evs []sdk.Event
	for _, ch := range rooms {
		evs = append(evs, sdk.Event{Kind: sdk.Unsubscribed, ConnID: "c3", Channel: ch})
	}
	evs = append(evs, sdk.Event{Kind: sdk.Disconnected, ConnID: "c3"})
	h.Events(evs...)

	require.Equal(t, 0, d.filters())
	d.mu.RLock()
	require.Empty(t, d.rooms)
	require.Empty(t, d.channels)
	require.Empty(t, d.colls)
	require.Empty(t, d.conns)
	require.Empty(t, d.expectUnsub)
	require.Empty(t, d.records)
	d.mu.RUnlock()
	require.Empty(t, stateKeys(h.State(), roomPrefix))
	require.Empty(t, stateKeys(h.State(), memberPrefix))
}

// TestReplayRebuildsSubscribers: after a restart the host replays the
// subscriptions; known room channels get their subscribers back (counted),
// unknown ones are unsubscribed.
func TestReplayRebuildsSubscribers(t *testing.T) {
	h := sdktest.Start(t, New(), map[string]any{})
	h.Connect("c1", "alice")
	res, err := h.Call("subscribe", h.Client("c1"), map[string]any{"index": "i", "collection": "c"})
	require.NoError(t, err)
	var r struct{ RoomID, Channel string }
	require.NoError(t, json.Unmarshal(res, &r))

	h.Events(sdk.Event{Kind: sdk.Reset})
	res, err = h.Call("count", h.Client("c1"), map[string]any{"roomId": r.RoomID})
	require.NoError(t, err)
	require.JSONEq(t, `{"count":0}`, string(res), "a reset forgets the subscribers")

	h.Events(
		sdk.Event{Kind: sdk.Connected, ConnID: "c1", UserID: "alice", Replay: true},
		sdk.Event{Kind: sdk.Subscribed, ConnID: "c1", Channel: r.Channel, Replay: true},
		sdk.Event{Kind: sdk.Subscribed, ConnID: "c1", Channel: "documents:0000000000000000-0000000000000000", Replay: true},
	)
	res, err = h.Call("count", h.Client("c1"), map[string]any{"roomId": r.RoomID})
	require.NoError(t, err)
	require.JSONEq(t, `{"count":1}`, string(res))
	require.NotContains(t, h.Subscriptions("c1"), "documents:0000000000000000-0000000000000000")
	require.Contains(t, h.Subscriptions("c1"), r.Channel)
}

// stateKeys lists the keys of a harness's State under prefix.
func stateKeys(st *sdktest.State, prefix string) []string {
	var out []string
	for k := range st.Entries() {
		if strings.HasPrefix(k, prefix) {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// TestConfigure: data_dir (the old documents.db's) still loads, for the
// configs written before; a dry run touches no State; a process announces
// itself in State.
func TestConfigure(t *testing.T) {
	_, err := sdktest.StartErr(t, New(), map[string]any{"data_dir": "data/documents"})
	require.NoError(t, err)
	_, err = sdktest.StartErr(t, New(), map[string]any{"liveness_ttl": "1s"})
	require.ErrorContains(t, err, "config.liveness_ttl: must be between 3s and 1h")

	d := New()
	d.stateOf = func(sdk.Host) (sdk.State, error) { t.Fatal("a dry run asked for State"); return nil, nil }
	require.NoError(t, d.Configure(context.Background(), &fakeHost{}, sdk.NewDryRunConfig(map[string]any{"resume_window": "1s"})))
	require.NoError(t, d.Drain(context.Background()))

	d = New()
	h := sdktest.Start(t, d, map[string]any{})
	require.Equal(t, []string{nodeKey(d.node)}, stateKeys(h.State(), nodePrefix))
}

// TestMaxRoomsHoldsUnderConcurrentSubscribes: subscribes that would each
// create a room, arriving together (a client pipelining them on one
// WebSocket), create no more than max_rooms: the others are -32005, and
// State holds max_rooms rooms.
func TestMaxRoomsHoldsUnderConcurrentSubscribes(t *testing.T) {
	const callers = 16
	h := sdktest.Start(t, New(), map[string]any{"max_rooms": 1})
	h.Connect("c1", "alice")
	errs := make(chan error, callers)
	start := make(chan struct{})
	for i := range callers {
		go func() {
			<-start
			_, err := h.Call("subscribe", h.Client("c1"), map[string]any{"index": "i", "collection": "c",
				"body": map[string]any{"equals": map[string]any{"n": i}}})
			errs <- err
		}()
	}
	close(start)
	ok := 0
	for range callers {
		err := <-errs
		if err == nil {
			ok++
			continue
		}
		var se *sdk.Error
		require.ErrorAs(t, err, &se)
		require.Equal(t, sdk.CodeLimitExceeded, se.Code, se.Message)
	}
	require.Equal(t, 1, ok, "max_rooms = 1: one subscribe creates the room, the others are refused")
	require.Len(t, stateKeys(h.State(), roomPrefix), 1)
}

// Every bad key of the block is reported, each as its own line naming the
// key (the host shows each at its key's position), in a dry run as at a
// start: three range errors and an earlier version's documents.db in
// data_dir.
func TestConfigReportsEveryBadKeyAtItsKey(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "documents.db"), []byte("old"), 0o600))
	d := New()
	d.stateOf = func(sdk.Host) (sdk.State, error) { t.Fatal("a dry run asked for State"); return nil, nil }
	err := d.Configure(context.Background(), &fakeHost{}, sdk.NewDryRunConfig(map[string]any{
		"resume_window": "25h", "max_rooms": 0, "liveness_ttl": "1s", "data_dir": dir}))
	var se *sdk.Error
	require.ErrorAs(t, err, &se)
	require.Equal(t, []string{
		"config.resume_window: must be between 0s and 24h, got 25h0m0s",
		"config.max_rooms: must be at least 1, got 0",
		"config.liveness_ttl: must be between 3s and 1h, got 1s",
		"config.data_dir: " + filepath.Join(dir, "documents.db") + " holds the documents and rooms of an earlier documents plugin, which this version does not read (it keeps them in Herald's plugin state): move the file away to start with an empty store",
	}, strings.Split(se.Message, "\n"))
}
