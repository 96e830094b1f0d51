package logtext_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/internal/logtext"
)

// JSON logs show durations as the text logs do ("200ms"), from the root
// logger and from its named and With subloggers, at every level; a sink
// (the admin page's) still gets every warning.
func TestJSONLogsWriteDurationsAsText(t *testing.T) {
	var buf bytes.Buffer
	log := logtext.NewIntercept(&hclog.LoggerOptions{Name: "herald", Level: hclog.Trace, JSONFormat: true, Output: &buf})
	sink := &countSink{}
	log.RegisterSink(sink)

	log.Info("root", "backoff", 200*time.Millisecond, "n", 3)
	sub := log.Named("pluginhost").With("window", 3*time.Second)
	sub.Warn("sub", "backoff", time.Minute)
	sub.Named("plugin").Log(hclog.Error, "deeper", "wait", 1500*time.Microsecond)
	log.ResetNamed("other").Trace("reset", "d", time.Duration(0))

	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &m), l)
		lines = append(lines, m)
	}
	require.Len(t, lines, 4, buf.String())
	require.Equal(t, "200ms", lines[0]["backoff"])
	require.Equal(t, float64(3), lines[0]["n"], "other values keep their JSON type")
	require.Equal(t, "herald", lines[0]["@module"])
	require.Equal(t, "1m0s", lines[1]["backoff"])
	require.Equal(t, "3s", lines[1]["window"])
	require.Equal(t, "herald.pluginhost", lines[1]["@module"])
	require.Equal(t, "1.5ms", lines[2]["wait"])
	require.Equal(t, "3s", lines[2]["window"])
	require.Equal(t, "0s", lines[3]["d"])
	require.Equal(t, 2, sink.warnings, "the sink sees the warning and the error")
}

type countSink struct{ warnings int }

func (s *countSink) Accept(_ string, level hclog.Level, _ string, _ ...any) {
	if level >= hclog.Warn {
		s.warnings++
	}
}

// The plugins' logger (plain, not intercepting) does the same.
func TestPlainLoggerWritesDurationsAsText(t *testing.T) {
	var buf bytes.Buffer
	log := logtext.New(&hclog.LoggerOptions{Name: "chat", JSONFormat: true, Output: &buf})
	log.Warn("watch ended", "retry_in", time.Second)
	log.Named("x").With("ttl", 2*time.Second).Info("y")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	require.Len(t, lines, 2)
	var m map[string]any
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &m))
	require.Equal(t, "1s", m["retry_in"])
	require.Equal(t, "chat", m["@module"])
	require.NoError(t, json.Unmarshal([]byte(lines[1]), &m))
	require.Equal(t, "2s", m["ttl"])
	require.Equal(t, "chat.x", m["@module"])
}
