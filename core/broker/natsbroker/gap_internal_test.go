package natsbroker

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/core/broker"
	"github.com/heraldhq/herald/internal/natstest"
)

type takeRecorder struct {
	mu     sync.Mutex
	events []string
}

func (r *takeRecorder) HandlePublication(p *broker.Publication) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, fmt.Sprintf("pub %d", p.Seq))
}

func (r *takeRecorder) RunChanged(channel string, pos broker.Position) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, fmt.Sprintf("run %s %d %s", channel, pos.Seq, pos.Epoch))
}

// A publication that does not follow the last one handed over in its run
// (those between aged out before this node read them) is told as a run
// change first, so that subscribers learn where the stream goes on; the
// ones that follow it are handed over as usual.
func TestTakeTellsAGapInsideARun(t *testing.T) {
	srv := natstest.Start(t)
	nc, err := nats.Connect(srv.URL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	b, err := New(context.Background(), nc, Options{HistorySize: 10, HistoryTTL: time.Hour, Stream: "GAP", SubjectPrefix: "gap"})
	require.NoError(t, err)
	t.Cleanup(func() { b.Close() })
	rec := &takeRecorder{}
	b.SetHandler(rec)

	w := &watch{channel: "c", hasBase: true, sseq: 3, last: 2, epoch: "E"}
	b.take(w, &stored{channel: "c", sseq: 4, seq: 3, epoch: "E"})
	b.take(w, &stored{channel: "c", sseq: 9, seq: 6, epoch: "E"})
	b.take(w, &stored{channel: "c", sseq: 10, seq: 7, epoch: "E"})
	require.Equal(t, []string{"pub 3", "run c 5 E", "pub 6", "pub 7"}, rec.events)
}
