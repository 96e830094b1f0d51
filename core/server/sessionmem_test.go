package server

import (
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/heraldhq/herald/core/auth"
	"github.com/heraldhq/herald/core/config"
	"github.com/stretchr/testify/require"
)

// BenchmarkIdleSessionBytes reports the heap one idle connection's session
// keeps (B/session), as herald-bench's d19 holds them: authenticated by a
// token from the handshake's query string (the token a substring of the
// request line, as net/http reads it), one subscription, one call taken
// from the rate limit. The transport's Conn, gorilla's and the hub's
// membership are not in it (core/transport, core/hub). It prints a figure
// and asserts nothing.
func BenchmarkIdleSessionBytes(b *testing.B) {
	cfg := config.Defaults()
	cfg.Auth.TokenSecret = "bench-secret"
	srv := &Server{}
	srv.conf.Store(&cfg)
	tokens := auth.NewTokens(cfg.Auth.TokenSecret)
	const n = 10_000
	requestLines := make([]string, n)
	for i := range requestLines {
		tok, err := tokens.Mint("user-"+strconv.Itoa(i), time.Hour, nil)
		if err != nil {
			b.Fatal(err)
		}
		requestLines[i] = "GET /v1/ws?token=" + tok + " HTTP/1.1"
	}
	sessions := make([]*session, n)
	var perSession float64
	for b.Loop() {
		clear(sessions)
		lines := make([]string, n) // each handshake reads a request line of its own
		for i, l := range requestLines {
			lines[i] = string([]byte(l))
		}
		before := heapInUse()
		for i := range sessions {
			token := lines[i][len("GET /v1/ws?token=") : len(lines[i])-len(" HTTP/1.1")]
			id, err := tokens.Verify(token)
			if err != nil {
				b.Fatal(err)
			}
			s := newSession(srv, nil, newID())
			s.ident = id
			s.subs.add("user:" + strconv.Itoa(i))
			if err := s.rateLimit(); err != nil {
				b.Fatal(err)
			}
			sessions[i] = s
		}
		lines = nil // what the sessions keep of them stays reachable
		perSession = float64(heapInUse()-before) / n
	}
	runtime.KeepAlive(sessions)
	b.ReportMetric(perSession, "B/session")
}

func heapInUse() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// What a frame left to run after its reply (subscribe's activation of its
// hub.Joins) is not kept by the session once it ran: the connection may
// then stay idle for hours.
func TestAfterReplyIsForgottenOnceRun(t *testing.T) {
	cfg := config.Defaults()
	srv := &Server{}
	srv.conf.Store(&cfg)
	s := newSession(srv, nil, newID())
	ran := 0
	big := make([]byte, 1<<20)
	s.afterReply = append(s.afterReply, func() { ran += len(big) })
	s.runAfterReply()
	require.Equal(t, 1<<20, ran)
	for i, f := range s.afterReply[:cap(s.afterReply)] {
		require.Nil(t, f, "entry %d of the session's afterReply is still held", i)
	}
}
