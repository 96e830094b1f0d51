package natstest_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/internal/natstest"
)

// A restarted server is on the same URL with the same streams, and a
// client reconnects to it by itself.
func TestRestartKeepsPortAndStore(t *testing.T) {
	s := natstest.Start(t)
	nc, err := nats.Connect(s.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(10*time.Millisecond))
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx := context.Background()
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}})
	require.NoError(t, err)
	_, err = js.Publish(ctx, "s.1", []byte("kept"))
	require.NoError(t, err)

	url := s.URL()
	s.Restart()
	require.Equal(t, url, s.URL())
	require.Eventually(t, nc.IsConnected, 30*time.Second, 10*time.Millisecond)
	var msg *jetstream.RawStreamMsg
	require.Eventually(t, func() bool {
		st, err := js.Stream(ctx, "S")
		if err != nil {
			return false
		}
		msg, err = st.GetLastMsgForSubject(ctx, "s.1")
		return err == nil
	}, 30*time.Second, 10*time.Millisecond)
	require.Equal(t, "kept", string(msg.Data))
}

// A cluster places a three-replica stream, and keeps it through a
// server's restart.
func TestClusterPlacesReplicas(t *testing.T) {
	c := natstest.StartCluster(t, 3)
	nc, err := nats.Connect(c.URLs())
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx := context.Background()
	// The JetStream API answers once the servers have elected their meta
	// leader, which a loaded machine can take longer than one request's
	// timeout to do: asked again until it is placed (the same config is
	// answered with the stream already there).
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "R", Subjects: []string{"r.>"}, Replicas: 3})
		assert.NoError(ct, err, "the stream is placed")
	}, 60*time.Second, 100*time.Millisecond)

	c.Server(1).Restart()
	c.WaitReady()
	require.Eventually(t, func() bool {
		_, err := js.Publish(ctx, "r.1", []byte("x"))
		return err == nil
	}, 30*time.Second, 10*time.Millisecond)
}
