package broker_test

import (
	"testing"
	"time"

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
	pa, _ := m.Position(t.Context(), "kept")
	pb, _ := m.Position(t.Context(), "idle")
	now = now.Add(2 * time.Minute)
	require.Equal(t, 1, m.Sweep(now, func(ch string) bool { return ch == "kept" }))
	qa, _ := m.Position(t.Context(), "kept")
	qb, _ := m.Position(t.Context(), "idle")
	require.Equal(t, pa.Epoch, qa.Epoch)
	require.NotEqual(t, pb.Epoch, qb.Epoch, "a forgotten channel starts a new epoch")
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
