package server

import (
	"testing"

	"github.com/stretchr/testify/require"
)

type declares map[string]bool

func (d declares) Declares(plugin, method string) bool { return d[plugin+"."+method] }

func TestMetricLabelsAreBounded(t *testing.T) {
	m := newMetrics()
	m.setDeclarer(declares{"chat.send": true})
	for _, c := range []struct{ method, label string }{
		{"subscribe", "subscribe"}, {"chat.send", "chat.send"}, {"chat.invented", "other"},
		{"ghost.m", "other"}, {"nope", "other"}, {"", "other"},
	} {
		require.Equal(t, c.label, m.methodLabel(c.method), c.method)
	}
	require.Equal(t, "-32050", codeLabel(-32050))
	require.Equal(t, "other", codeLabel(-31999))
	require.Equal(t, "other", codeLabel(42))
}
