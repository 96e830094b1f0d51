package server

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/heraldhq/herald/core/broker"
	"github.com/heraldhq/herald/core/config"
	"github.com/heraldhq/herald/core/pluginhost"
	"github.com/stretchr/testify/require"
)

func testServer(t *testing.T, outboxLimit int) *Server {
	t.Helper()
	cfg := config.Defaults()
	cfg.Auth.TokenSecret, cfg.Auth.APIKeys = "s", []string{"k"}
	cfg.Delivery.OutboxLimit = outboxLimit
	s, err := New(Options{Config: &cfg})
	require.NoError(t, err)
	return s
}

func emit(t *testing.T, s *Server, ch string, n int) {
	t.Helper()
	ns := make([]pluginhost.Notification, n)
	for i := range ns {
		ns[i] = pluginhost.Notification{Channel: ch, Event: "e", ObjectType: "o", Object: json.RawMessage(`{"i":` + strconv.Itoa(i) + `}`)}
	}
	_, err := s.Emit(context.Background(), "p", ns)
	require.NoError(t, err)
}

func next(t *testing.T, f pluginhost.Follower) []pluginhost.FollowedNotification {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ns, err := f.Next(ctx)
	require.NoError(t, err)
	return ns
}

func TestFollowJoinsHistoryToLive(t *testing.T) {
	s := testServer(t, 100)
	ctx := context.Background()
	emit(t, s, "p:a", 3)

	f, err := s.Follow(ctx, "p:a", &pluginhost.Position{Seq: 1}, 1<<20) // "" epoch: the current one
	require.NoError(t, err)
	pos, rec := f.Start()
	require.True(t, rec)
	require.Equal(t, uint64(1), pos.Seq)
	emit(t, s, "p:a", 1)
	var seqs []uint64
	for len(seqs) < 3 {
		for _, n := range next(t, f) {
			seqs = append(seqs, n.Seq)
			require.Equal(t, "e", n.Event)
			require.Equal(t, "o", n.ObjectType)
			require.NotEmpty(t, n.ID)
			require.NotZero(t, n.Timestamp)
		}
	}
	require.Equal(t, []uint64{2, 3, 4}, seqs, "replay then live: no gap, no duplicate")
	require.Equal(t, int64(1), s.hub.Subscriptions())
	f.Close()
	f.Close()
	require.Equal(t, int64(0), s.hub.Subscriptions(), "closed: out of the hub")
	_, err = f.Next(ctx)
	require.ErrorIs(t, err, errFollowClosed)

	// Not bridgeable: the current position, not recovered, live from there.
	f, err = s.Follow(ctx, "p:a", &pluginhost.Position{Seq: 1, Epoch: "other"}, 1<<20)
	require.NoError(t, err)
	pos, rec = f.Start()
	require.False(t, rec)
	require.Equal(t, uint64(4), pos.Seq)
	f.Close()
}

// A follower that does not read is ended at its bound, in notifications or
// in bytes, and leaves the hub; it never grows.
func TestFollowerBounded(t *testing.T) {
	for _, tc := range []struct {
		name            string
		limit, maxBytes int
	}{
		{"items", 5, 1 << 20},
		{"bytes", 1000, 600},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := testServer(t, tc.limit)
			f, err := s.Follow(context.Background(), "p:a", nil, tc.maxBytes)
			require.NoError(t, err)
			emit(t, s, "p:a", 20)
			_, err = f.Next(context.Background())
			require.ErrorIs(t, err, pluginhost.ErrFollowerSlow)
			deadline := time.Now().Add(10 * time.Second)
			for s.hub.Subscriptions() != 0 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			require.Equal(t, int64(0), s.hub.Subscriptions(), "the slow follower left the hub")
			f.(*follower).mu.Lock()
			require.Nil(t, f.(*follower).queue)
			f.(*follower).mu.Unlock()
			f.Close()
		})
	}
}

// presence counts connections: a plugin's follow of the channel is none.
func TestFollowerNotInPresence(t *testing.T) {
	s := testServer(t, 100)
	f, err := s.Follow(context.Background(), "p:a", nil, 1<<20)
	require.NoError(t, err)
	defer f.Close()
	info, err := s.Presence(context.Background(), "p:a")
	require.NoError(t, err)
	require.Equal(t, 0, info.Count)
	require.Empty(t, info.Users)
}

// A follower told that the channel's stream restarted (a NATS channel
// whose history aged out while followed: seq 1 again in a new epoch) gets
// what was queued before, then an error: never the new run's seqs as if
// they continued the old one.
func TestFollowerEndsWhenTheStreamRestarts(t *testing.T) {
	s := testServer(t, 100)
	ctx := context.Background()
	f, err := s.Follow(ctx, "p:a", nil, 1<<20)
	require.NoError(t, err)
	defer f.Close()
	emit(t, s, "p:a", 2)
	s.hub.RunChanged("p:a", broker.Position{Seq: 0, Epoch: "next"})
	emit(t, s, "p:a", 1) // not the follow's: it was told to end
	var seqs []uint64
	for _, n := range next(t, f) {
		seqs = append(seqs, n.Seq)
	}
	require.Equal(t, []uint64{1, 2}, seqs, "what came before the restart")
	_, err = f.Next(ctx)
	require.ErrorIs(t, err, errFollowRestarted)
	require.ErrorContains(t, err, `epoch "next"`)
}
