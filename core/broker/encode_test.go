package broker_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/core/broker"
)

// EncodedLen is Encode's length exactly when nothing needs escaping, and
// Encode's output is the same however its buffer starts.
func TestEncodedLen(t *testing.T) {
	for _, tc := range []struct {
		n       broker.Notification
		seq     uint64
		ts      int64
		escapes bool
	}{
		{n: broker.Notification{Channel: "c", Event: "e", ObjectType: "t", Object: []byte(`{"a":1}`)}, seq: 1, ts: 1539625681000},
		{n: broker.Notification{Channel: "chat:group:2", Event: "new", ObjectType: "message", ObjectName: "m", Object: []byte(`[1,2]`)}, seq: 9, ts: 10},
		{n: broker.Notification{Channel: "c", Event: "e", ObjectType: "t"}, seq: 18446744073709551615, ts: 0},
		{n: broker.Notification{Channel: "c", Event: "e", ObjectType: "t", Object: []byte(`null`)}, seq: 10, ts: -1539625681000},
		{n: broker.Notification{Channel: "c", Event: "é\"\n<", ObjectType: "t", Object: []byte(`1`)}, seq: 100, ts: 99, escapes: true},
	} {
		id := "01JABCDEFGHJKMNPQRSTVWXYZ0"
		out := broker.Encode(nil, &tc.n, id, tc.seq, tc.ts)
		require.True(t, json.Valid(out), "%s", out)
		if tc.escapes {
			require.Greater(t, len(out), broker.EncodedLen(&tc.n, id, tc.seq, tc.ts), "%s", out)
		} else {
			require.Equal(t, len(out), broker.EncodedLen(&tc.n, id, tc.seq, tc.ts), "%s", out)
		}
		require.Equal(t, string(out), string(broker.Encode(make([]byte, 0, 4), &tc.n, id, tc.seq, tc.ts)))
		prefix := []byte("prefix")
		require.Equal(t, "prefix"+string(out), string(broker.Encode(prefix, &tc.n, id, tc.seq, tc.ts)))
	}
}

// A publication's bytes are allocated once at their size: the history's
// byte bound counts their capacity, which a grown buffer doubled.
func TestMemoryPublishDataIsSized(t *testing.T) {
	m := broker.NewMemory(broker.MemoryOptions{HistorySize: 10})
	pubs, err := m.Publish(t.Context(), []broker.Notification{
		{Channel: "bench-1234", Event: "tick", ObjectType: "bench", Object: []byte(`{"sent_ns":1763920000000000000,"n":12345}`)},
		{Channel: "chat:group:2", Event: "new", ObjectType: "message", ObjectName: "m", Object: []byte(`{"id":8,"user_id":72,"group_id":2,"serial":8,"text":"hello world ;)","deleted_at":null,"edited_at":null,"created_at":"2018-10-15T17:54:41Z"}`)},
	})
	require.NoError(t, err)
	for _, p := range pubs {
		require.Equal(t, len(p.Data), cap(p.Data), "%s", p.Data)
		require.Contains(t, string(p.Data), `{"id":"`+p.ID+`","channel":"`+p.Channel+`"`)
	}
}
