package main

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/heraldtest"
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) { heraldtest.Main(m) }

// The whole bench on a real herald with the real emitter plugin, small:
// every emitted notification reaches every client of its channel, with a
// latency, in both emit shapes, paced or not, with both readers.
func TestEveryEmitIsDelivered(t *testing.T) {
	emitter := heraldtest.Binary(t, "internal/testplugins/emitter")
	h := heraldtest.Start(t, heraldtest.Options{HCL: fmt.Sprintf("plugin \"emitter\" {\n  command = %q\n}\n", emitter)})
	// Ready once the plugin is up (its prefix is known only then).
	for i := 0; ; i++ {
		if status, _ := h.Do(t, http.MethodGet, "/readyz", nil, "", nil); status == http.StatusOK {
			break
		}
		require.Less(t, i, 600, "herald not ready:\n%s", h.Logs())
		time.Sleep(100 * time.Millisecond)
	}
	for _, c := range []struct {
		name            string
		workers, per    int
		rate            float64
		clients, chans  int
		reader          string
		wantPerEmission int64
		warmup          int
	}{
		{"single", 16, 1, 0, 4, 4, "epoll", 1, 0},
		{"batched", 2, 50, 0, 4, 4, "gorilla", 1, 0},
		{"paced-fanout", 4, 1, 5000, 6, 3, "epoll", 2, 0},
		// The warm-up's 5,000 are delivered too but left out of the figures:
		// counted, its frames alone would outnumber the run's notifications.
		{"warmed", 16, 1, 0, 4, 4, "epoll", 1, 5000},
		{"warmed-gorilla", 16, 1, 0, 4, 4, "gorilla", 1, 5000},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.reader == "epoll" && defaultReader != "epoll" {
				t.Skip("the epoll reader is Linux only")
			}
			const count = 1000
			s, err := measure(options{
				url: h.URL, key: heraldtest.APIKey, secret: heraldtest.Secret, pid: h.Pid(), name: c.name,
				clients: c.clients, channels: c.chans, count: count, warmup: c.warmup, workers: c.workers, per: c.per, rate: c.rate,
				connect: time.Minute, drain: time.Minute, reader: c.reader,
			})
			require.NoError(t, err)
			require.EqualValues(t, count, s.Emitted)
			require.Equal(t, count*c.wantPerEmission, s.Expected)
			require.Equal(t, s.Expected, s.Delivered)
			require.Positive(t, s.P50ms)
			require.LessOrEqual(t, s.P50ms, s.MaxMs)
			require.Positive(t, s.Frames)
			require.LessOrEqual(t, s.Frames, s.Delivered, "a frame holds at least one notification of the run")
			require.Equal(t, c.warmup, s.Warmup)
			if c.warmup > 0 {
				require.Positive(t, s.WarmupHeraldCPUus+s.WarmupPluginCPUus, "the warm-up's CPU is measured")
			}
			// A batch holds whole Emit calls, and the batches are herald's
			// count of them (herald_plugin_emit_batches_total).
			require.GreaterOrEqual(t, s.PerBatch, float64(c.per))
			require.LessOrEqual(t, s.PerBatch, float64(count))
		})
	}
}
