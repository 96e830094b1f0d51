package natsbroker

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/core/broker"
	"github.com/heraldhq/herald/internal/natstest"
)

// The leader's answer (JSON, the headers as a block) reads as the direct
// get's does.
func TestLastOfLeaderReadsAsDirectGet(t *testing.T) {
	srv := natstest.Start(t)
	nc, err := nats.Connect(srv.URL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	b, err := New(context.Background(), nc, Options{HistorySize: 10, HistoryTTL: time.Hour, Stream: "LEADER", SubjectPrefix: "leader"})
	require.NoError(t, err)
	t.Cleanup(func() { b.Close() })
	ctx := context.Background()

	none, err := b.lastOfLeader(ctx, "a.b")
	require.NoError(t, err)
	require.Nil(t, none)

	ns := []broker.Notification{{Channel: "a.b", Event: "e", Object: []byte(`{"x":1}`), MsgID: "m1"}, {Channel: "a.b", Event: "e"}}
	_, err = b.Publish(ctx, ns)
	require.NoError(t, err)
	direct, err := b.lastOf(ctx, "a.b")
	require.NoError(t, err)
	leader, err := b.lastOfLeader(ctx, "a.b")
	require.NoError(t, err)
	require.WithinDuration(t, direct.storedAt, leader.storedAt, time.Microsecond)
	leader.storedAt = direct.storedAt
	require.Equal(t, direct, leader)
	require.Equal(t, uint64(2), leader.seq)
}
