package jsstate_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/core/state"
	"github.com/heraldhq/herald/core/state/jsstate"
	"github.com/heraldhq/herald/core/state/statetest"
)

// While NATS is down every operation fails at once with ErrUnavailable;
// once it is back the data is there and a watch got a Reset.
func TestNATSRestart(t *testing.T) {
	n := runNATS(t)
	js := n.connect(t)
	opts := jsstate.Options{Bucket: "herald_state_restart"}
	s := open(t, js, opts)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	rev, err := s.Put(ctx, "k", []byte("v"), 0)
	require.NoError(t, err)
	w := statetest.Watch(t, s, "")

	n.stop()
	require.Eventually(t, func() bool { return js.Conn().IsReconnecting() }, 30*time.Second, 10*time.Millisecond)
	_, err = s.Get(ctx, "k")
	require.ErrorIs(t, err, state.ErrUnavailable)
	_, err = s.Put(ctx, "k", nil, 0)
	require.ErrorIs(t, err, state.ErrUnavailable)
	_, err = s.Create(ctx, "n", nil, 0)
	require.ErrorIs(t, err, state.ErrUnavailable)
	_, err = s.Update(ctx, "k", nil, rev, 0)
	require.ErrorIs(t, err, state.ErrUnavailable)
	require.ErrorIs(t, s.Delete(ctx, "k", 0), state.ErrUnavailable)
	_, err = s.List(ctx, "")
	require.ErrorIs(t, err, state.ErrUnavailable)
	_, err = jsstate.Open(ctx, js, opts)
	require.ErrorIs(t, err, state.ErrUnavailable)
	require.NoError(t, ctx.Err(), "failures are fast, not timeouts")

	n.start()
	c := w.Next(t)
	require.True(t, c.Reset, "a watch whose connection came back gets a Reset: %+v", c)
	e, err := s.Get(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, state.Entry{Key: "k", Value: []byte("v"), Revision: rev}, e, "data survives a nats-server restart")
	rev2, err := s.Put(ctx, "k2", []byte("after"), 0)
	require.NoError(t, err)
	c = w.Next(t)
	require.Equal(t, state.Change{Entry: state.Entry{Key: "k2", Value: []byte("after"), Revision: rev2}}, c, "the watch goes on after the Reset")
}

// A watch whose connection is closed for good ends with ErrUnavailable.
func TestWatchEndsWhenTheConnectionCloses(t *testing.T) {
	n := runNATS(t)
	js := n.connect(t)
	s := open(t, js, jsstate.Options{Bucket: "herald_state_closing"})
	done := make(chan error, 1)
	go func() { done <- s.Watch(context.Background(), "", func(state.Change) {}) }()
	// Let the watch start; either way it must end with an error.
	_, err := s.Put(context.Background(), "k", nil, 0)
	require.NoError(t, err)
	js.Conn().Close()
	select {
	case err := <-done:
		require.Error(t, err)
		require.ErrorIs(t, err, state.ErrUnavailable)
	case <-time.After(30 * time.Second):
		require.FailNow(t, "watch outlived its connection")
	}
}

// Two buckets on one server keep their keys apart, and the store's keys
// are what a plain KV client sees, escaped.
func TestBucketLayout(t *testing.T) {
	n := runNATS(t)
	js := n.connect(t)
	a := open(t, js, jsstate.Options{Bucket: "herald_state_a"})
	b := open(t, js, jsstate.Options{Bucket: "herald_state_b"})
	ctx := context.Background()
	_, err := a.Put(ctx, "x/y:z", []byte("a"), 0)
	require.NoError(t, err)
	_, err = b.Get(ctx, "x/y:z")
	require.ErrorIs(t, err, state.ErrNotFound)

	kv, err := js.KeyValue(ctx, "herald_state_a")
	require.NoError(t, err)
	e, err := kv.Get(ctx, "x.y/3Az")
	require.NoError(t, err)
	require.Equal(t, "a", string(e.Value()))
	st, err := kv.Status(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(1), st.History())
	require.NotZero(t, st.(*jetstream.KeyValueBucketStatus).LimitMarkerTTL())
}

// A NATS server without JetStream answers, but cannot keep state: Open
// says unavailable, at once.
func TestOpenWithoutJetStream(t *testing.T) {
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	require.NoError(t, err)
	go srv.Start()
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	require.True(t, srv.ReadyForConnections(30*time.Second))
	nc, err := nats.Connect(srv.ClientURL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = jsstate.Open(ctx, js, jsstate.Options{Bucket: "herald_state_nojs"})
	require.ErrorIs(t, err, state.ErrUnavailable)
}

// Nodes starting together all open the one bucket, whoever creates it.
func TestConcurrentOpenOfANewBucket(t *testing.T) {
	n := runNATS(t)
	opts := jsstate.Options{Bucket: "herald_state_together", MaxBytes: 1 << 20}
	jss := []jetstream.JetStream{n.connect(t), n.connect(t), n.connect(t), n.connect(t)}
	errs := make(chan error, len(jss))
	for _, js := range jss {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			s, err := jsstate.Open(ctx, js, opts)
			if err == nil {
				_ = s.Close()
			}
			errs <- err
		}()
	}
	for range jss {
		require.NoError(t, <-errs)
	}
}
