package broker_test

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/core/broker"
	"github.com/heraldhq/herald/core/broker/brokertest"
)

func TestMemoryBroker(t *testing.T) {
	brokertest.Run(t, func(t *testing.T, size int, ttl time.Duration) broker.Broker {
		return broker.NewMemory(broker.MemoryOptions{HistorySize: size, HistoryTTL: ttl})
	})
}

func TestMemorySweepKeepsSubscribedChannels(t *testing.T) {
	now := time.Unix(1000, 0)
	m := broker.NewMemory(broker.MemoryOptions{HistorySize: 0, HistoryTTL: time.Minute, Now: func() time.Time { return now }})
	_, err := m.Publish(t.Context(), []broker.Notification{{Channel: "kept"}, {Channel: "idle"}})
	require.NoError(t, err)
	pa, _ := m.Position(t.Context(), "kept")
	pb, _ := m.Position(t.Context(), "idle")
	now = now.Add(2 * time.Minute)
	require.Equal(t, 1, m.Sweep(now, func(ch string) bool { return ch == "kept" }))
	qa, _ := m.Position(t.Context(), "kept")
	qb, _ := m.Position(t.Context(), "idle")
	require.Equal(t, pa, qa)
	require.NotEqual(t, pb.Epoch, qb.Epoch, "a forgotten channel starts a new epoch")
	require.Equal(t, uint64(0), qb.Seq)
}

func BenchmarkEncode(b *testing.B) {
	n := broker.Notification{Channel: "chat:group:2", Event: "new", ObjectType: "message",
		Object: []byte(`{"id":8,"user_id":72,"group_id":2,"serial":8,"text":"hello world ;)","deleted_at":null,"edited_at":null,"created_at":"2018-10-15T17:54:41Z"}`)}
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = broker.Encode(buf[:0], &n, "01JABCDEFGHJKMNPQRSTVWXYZ0", 8, 1539625681000)
	}
	b.SetBytes(int64(len(buf)))
}

type nopHandler struct{}

func (nopHandler) HandlePublication(*broker.Publication) {}

// BenchmarkMemoryPublish is one notification published to one of many
// channels with full history rings: the hot path of scenario c.
func BenchmarkMemoryPublish(b *testing.B) {
	m := broker.NewMemory(broker.MemoryOptions{HistorySize: 100, HistoryTTL: time.Hour})
	m.SetHandler(nopHandler{})
	names := make([]string, 1000)
	for i := range names {
		names[i] = "user:" + strconv.Itoa(i)
	}
	obj := []byte(`{"id":8,"user_id":72,"group_id":2,"serial":8,"text":"hello world ;)"}`)
	ctx := context.Background()
	ns := make([]broker.Notification, 1)
	i := 0
	b.ReportAllocs()
	start := cpuTime()
	for b.Loop() {
		ns[0] = broker.Notification{Channel: names[i%len(names)], Event: "new", ObjectType: "message", Object: obj}
		if _, err := m.Publish(ctx, ns); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64((cpuTime()-start).Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// BenchmarkMemoryPublishBatch is the plugin path's publish: one emit
// batch (per notifications) per Publish, to 100 channels in turn with full
// history rings. Reported per notification.
func BenchmarkMemoryPublishBatch(b *testing.B) {
	for _, per := range []int{1, 40, 100} {
		b.Run("per="+strconv.Itoa(per), func(b *testing.B) {
			m := broker.NewMemory(broker.MemoryOptions{HistorySize: 100, HistoryTTL: time.Hour})
			m.SetHandler(nopHandler{})
			names := make([]string, 100)
			for i := range names {
				names[i] = "emitter:" + strconv.Itoa(i)
			}
			obj := []byte(`{"emit_ns":1795843200000000000}`)
			ctx := context.Background()
			ns := make([]broker.Notification, per)
			i := 0
			b.ReportAllocs()
			start := cpuTime()
			for b.Loop() {
				for k := range ns {
					ns[k] = broker.Notification{Channel: names[i%len(names)], Event: "tick", ObjectType: "emit", Object: obj}
					i++
				}
				if _, err := m.Publish(ctx, ns); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64((cpuTime()-start).Nanoseconds())/float64(b.N*per), "cpu-ns/n")
		})
	}
}

// cpuTime is the process's CPU time: on a shared machine, a figure less
// moved by other processes than the elapsed time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// A sweep that forgets a channel between a publish's lookup and its lock
// must not leave that publish in the forgotten stream.
func TestMemoryPublishAfterSweepForgotItsChannel(t *testing.T) {
	now := time.Unix(1000, 0)
	m := broker.NewMemory(broker.MemoryOptions{HistorySize: 10, HistoryTTL: time.Minute, Now: func() time.Time { return now }})
	ctx := t.Context()
	_, err := m.Publish(ctx, []broker.Notification{{Channel: "c"}})
	require.NoError(t, err)
	old, _ := m.Position(ctx, "c")
	now = now.Add(2 * time.Minute)
	once := true
	m.SetAfterLookup(func() {
		if once {
			once = false
			require.Equal(t, 1, m.Sweep(now, nil))
		}
	})
	pubs, err := m.Publish(ctx, []broker.Notification{{Channel: "c"}})
	require.NoError(t, err)
	cur, _ := m.Position(ctx, "c")
	require.NotEqual(t, old.Epoch, cur.Epoch)
	require.Equal(t, uint64(1), pubs[0].Seq, "the publish opens the new epoch")
	require.Equal(t, uint64(1), cur.Seq)
	got, _, err := m.History(ctx, "c", broker.Position{Epoch: cur.Epoch})
	require.NoError(t, err)
	require.Len(t, got, 1)
	require.Equal(t, pubs[0].ID, got[0].ID)
}

// Asking for the position or history of channels that never had a
// publication (what a subscribe does) keeps no state for them.
func TestMemoryNeverPublishedChannelsCostNothing(t *testing.T) {
	m := broker.NewMemory(broker.MemoryOptions{HistorySize: 10, HistoryTTL: time.Minute})
	ctx := t.Context()
	positions := map[string]broker.Position{}
	for i := 0; i < 20000; i++ {
		name := "churn:" + strconv.Itoa(i)
		pos, err := m.Position(ctx, name)
		require.NoError(t, err)
		_, _, err = m.History(ctx, name, broker.Position{Seq: 3, Epoch: "x"})
		require.ErrorIs(t, err, broker.ErrUnrecoverable)
		if i < 10 {
			positions[name] = pos
		}
	}
	require.Zero(t, m.Stats().Channels)
	require.Zero(t, m.Stats().Bytes)

	// The position given out before the first publication stays valid:
	// a client resuming from it gets that publication.
	for name, pos := range positions {
		require.Zero(t, pos.Seq)
		pubs, err := m.Publish(ctx, []broker.Notification{{Channel: name}})
		require.NoError(t, err)
		got, cur, err := m.History(ctx, name, pos)
		require.NoError(t, err, name)
		require.Equal(t, pos.Epoch, cur.Epoch)
		require.Equal(t, []*broker.Publication{pubs[0]}, got)
	}
	require.Equal(t, int64(len(positions)), m.Stats().Channels)
}

func TestMemoryMaxBytesDropsLeastRecentlyPublished(t *testing.T) {
	now := time.Unix(1000, 0)
	m := broker.NewMemory(broker.MemoryOptions{HistorySize: 100, HistoryTTL: time.Hour, MaxBytes: 96 << 10,
		Now: func() time.Time { return now }})
	ctx := t.Context()
	obj := []byte(`"` + strings.Repeat("x", 1000) + `"`)
	pub := func(ch string, count int) broker.Position {
		before, _ := m.Position(ctx, ch)
		for i := 0; i < count; i++ {
			now = now.Add(time.Millisecond)
			_, err := m.Publish(ctx, []broker.Notification{{Channel: ch, Object: obj}})
			require.NoError(t, err)
		}
		return before
	}
	// 3 channels of about 25 kB each fit.
	a, b, c := pub("a", 20), pub("b", 20), pub("c", 20)
	st := m.Stats()
	require.Zero(t, st.EvictedStreams)
	require.LessOrEqual(t, st.Bytes, st.MaxBytes)
	_, _, err := m.History(ctx, "a", a)
	require.NoError(t, err)

	// "a" is published again, so "b" is now the least recently published:
	// the fourth channel pushes it out.
	pub("a", 1)
	d := pub("d", 20)
	st = m.Stats()
	require.Equal(t, int64(1), st.EvictedStreams)
	require.Positive(t, st.EvictedBytes)
	require.LessOrEqual(t, st.Bytes, st.MaxBytes)

	_, cur, err := m.History(ctx, "b", b)
	require.ErrorIs(t, err, broker.ErrUnrecoverable, "b lost its history")
	require.NotEqual(t, b.Epoch, cur.Epoch, "and so its epoch")
	require.Equal(t, uint64(20), cur.Seq, "its seq goes on")
	for ch, pos := range map[string]broker.Position{"a": a, "c": c, "d": d} {
		_, _, err := m.History(ctx, ch, pos)
		require.NoError(t, err, ch)
	}
	// b starts again in its new epoch.
	pub("b", 1)
	got, _, err := m.History(ctx, "b", cur)
	require.NoError(t, err)
	require.Len(t, got, 1)
	require.Equal(t, uint64(21), got[0].Seq)
}

// MaxBytes bounds the channels' own state too: publishing once to ever new
// channels (a plugin emitting to distinct channels of its namespace) keeps
// the broker under its bound, forgetting evicted channels whole unless they
// are kept (they have subscribers), whose seq then goes on.
func TestMemoryMaxBytesBoundsTheChannelsToo(t *testing.T) {
	const maxBytes = 64 << 10
	m := broker.NewMemory(broker.MemoryOptions{HistorySize: 10, HistoryTTL: time.Hour, MaxBytes: maxBytes})
	m.SetKeep(func(ch string) bool { return ch == "kept" })
	ctx := t.Context()
	for i := range 20000 {
		_, err := m.Publish(ctx, []broker.Notification{{Channel: "many:" + strconv.Itoa(i), Object: []byte(`1`)}})
		require.NoError(t, err)
		if i%1000 == 0 {
			_, err := m.Publish(ctx, []broker.Notification{{Channel: "kept", Object: []byte(`1`)}})
			require.NoError(t, err)
		}
		require.LessOrEqual(t, m.Stats().Bytes, int64(maxBytes)+1024, "at publish %d", i)
	}
	st := m.Stats()
	require.Less(t, st.Channels, int64(maxBytes/192), "the channels forgotten with their history")
	pos, err := m.Position(ctx, "kept")
	require.NoError(t, err)
	require.Equal(t, uint64(20), pos.Seq, "a kept channel's seq goes on")
}

// Over the budget, history that expired anyway is dropped before any live
// history: the expired channel keeps its epoch (nothing a client could
// resume was lost).
func TestMemoryMaxBytesDropsExpiredFirst(t *testing.T) {
	now := time.Unix(1000, 0)
	m := broker.NewMemory(broker.MemoryOptions{HistorySize: 100, HistoryTTL: time.Minute, MaxBytes: 96 << 10,
		Now: func() time.Time { return now }})
	ctx := t.Context()
	obj := []byte(`"` + strings.Repeat("x", 1000) + `"`)
	for i := 0; i < 40; i++ {
		_, err := m.Publish(ctx, []broker.Notification{{Channel: "old", Object: obj}})
		require.NoError(t, err)
	}
	old, _ := m.Position(ctx, "old")
	now = now.Add(2 * time.Minute)
	for i := 0; i < 60; i++ {
		_, err := m.Publish(ctx, []broker.Notification{{Channel: "new", Object: obj}})
		require.NoError(t, err)
	}
	st := m.Stats()
	require.Zero(t, st.EvictedStreams)
	require.LessOrEqual(t, st.Bytes, st.MaxBytes)
	_, cur, err := m.History(ctx, "old", old)
	require.NoError(t, err, "a client that had all of old is still in step")
	require.Equal(t, old, cur)
}

// Each publication's ID is the id in its Data, a ULID whose time is the
// notification's timestamp, and ids grow from one notification to the
// next, within a publish and across publishes.
func TestMemoryPublishIDs(t *testing.T) {
	now := time.UnixMilli(1795843200123)
	m := broker.NewMemory(broker.MemoryOptions{HistorySize: 10, Now: func() time.Time { return now }})
	var last ulid.ULID
	for round := range 3 {
		pubs, err := m.Publish(t.Context(), []broker.Notification{
			{Channel: "a", Event: "e", ObjectType: "t"}, {Channel: "b", Event: "e", ObjectType: "t"}, {Channel: "a", Event: "e", ObjectType: "t"},
		})
		require.NoError(t, err)
		for _, p := range pubs {
			var d struct {
				ID        string `json:"id"`
				Timestamp int64  `json:"timestamp"`
			}
			require.NoError(t, json.Unmarshal(p.Data, &d))
			require.Equal(t, d.ID, p.ID)
			require.Equal(t, now.UnixMilli(), d.Timestamp)
			id, err := ulid.ParseStrict(p.ID)
			require.NoError(t, err)
			require.Equal(t, uint64(now.UnixMilli()), id.Time())
			require.Negative(t, last.Compare(id), "round %d: %s after %s", round, id, last)
			last = id
		}
		if round == 1 {
			now = now.Add(time.Millisecond)
		}
	}
}

// TestMemoryPublishAllocations: a publish to channels that have state
// allocates the result slice and, per notification, its Publication and
// its bytes, together; the id and the channel name are read from the
// bytes.
func TestMemoryPublishAllocations(t *testing.T) {
	m := broker.NewMemory(broker.MemoryOptions{HistorySize: 4, HistoryTTL: time.Hour})
	m.SetHandler(nopHandler{})
	ns := make([]broker.Notification, 10)
	for i := range ns {
		ns[i] = broker.Notification{Channel: "user-" + strconv.Itoa(i), Event: "tick", ObjectType: "bench", Object: json.RawMessage(`{"n":1}`)}
	}
	for range 5 { // rings full: no growth below
		_, err := m.Publish(t.Context(), ns)
		require.NoError(t, err)
	}
	allocs := testing.AllocsPerRun(50, func() {
		if _, err := m.Publish(context.Background(), ns); err != nil {
			t.Fatal(err)
		}
	})
	require.LessOrEqual(t, allocs, float64(1+len(ns)))
}

// TestMemoryPublicationNamesItsChannel: the Publication's Channel and ID
// are what they were before they were read from its bytes, for a name
// that is escaped in them too.
func TestMemoryPublicationNamesItsChannel(t *testing.T) {
	m := broker.NewMemory(broker.MemoryOptions{HistorySize: 4})
	ns := []broker.Notification{
		{Channel: "plain", Event: "e", ObjectType: "t"},
		{Channel: `a<b>&"c\d`, Event: "e", ObjectType: "t"},
	}
	pubs, err := m.Publish(t.Context(), ns)
	require.NoError(t, err)
	for i, p := range pubs {
		require.Equal(t, ns[i].Channel, p.Channel)
		var got struct{ ID, Channel string }
		require.NoError(t, json.Unmarshal(p.Data, &got))
		require.Equal(t, got.ID, p.ID)
		require.Equal(t, ns[i].Channel, got.Channel)
		_, err := ulid.ParseStrict(p.ID)
		require.NoError(t, err)
	}
	// A later publish to the channel finds it by name (the map's key is
	// its own copy).
	pubs, err = m.Publish(t.Context(), ns[:1])
	require.NoError(t, err)
	require.Equal(t, uint64(2), pubs[0].Seq)
}

// Publications of every size, across the sizes that share an allocation
// with their Publication and beyond: Data is the notification, exactly
// as long as its capacity (what history.max_bytes counts).
func TestMemoryPublicationSizes(t *testing.T) {
	m := broker.NewMemory(broker.MemoryOptions{HistorySize: 2})
	for size := 0; size <= 1100; size++ {
		obj := json.RawMessage(`"` + strings.Repeat("x", size) + `"`)
		pubs, err := m.Publish(t.Context(), []broker.Notification{{Channel: "c", Event: "e", ObjectType: "t", Object: obj}})
		require.NoError(t, err)
		p := pubs[0]
		require.Equal(t, len(p.Data), cap(p.Data))
		want := broker.Encode(nil, &broker.Notification{Channel: "c", Event: "e", ObjectType: "t", Object: obj}, p.ID, p.Seq, 0)
		var got, ref map[string]any
		require.NoError(t, json.Unmarshal(p.Data, &got))
		require.NoError(t, json.Unmarshal(want, &ref))
		delete(got, "timestamp")
		delete(ref, "timestamp")
		require.Equal(t, ref, got)
		require.Equal(t, "c", p.Channel)
	}
}
