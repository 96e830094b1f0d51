package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

const recorderOut = `goos: linux
BenchmarkCheckEmit-2   	  300000	       318.8 ns/op	         3.188 ns/notification
BenchmarkEmit/workers=512/per=1-2         	  300000	      3951 ns/op	         1.420 host-cpu-µs/n	        39.72 n/batch	    253122 notifications/s	         2.438 plugin-cpu-µs/n
BenchmarkEmit/workers=8/per=100-2         	  300000	      1907 ns/op	         1.235 host-cpu-µs/n	       106.6 n/batch	    524350 notifications/s	         1.229 plugin-cpu-µs/n
PASS
`

func TestMetricValue(t *testing.T) {
	text := "# TYPE herald_plugin_emit_batches_total counter\nherald_plugin_emit_batches_total{plugin=\"emitterx\"} 9\nherald_plugin_emit_batches_total{plugin=\"emitter\"} 1234\n"
	v, err := metricValue(text, `herald_plugin_emit_batches_total{plugin="emitter"}`)
	require.NoError(t, err)
	require.Equal(t, 1234.0, v)
	_, err = metricValue(text, `herald_plugin_emit_batches_total{plugin="other"}`)
	require.Error(t, err)
}

func TestReadRecorder(t *testing.T) {
	p := filepath.Join(t.TempDir(), "recorder.txt")
	require.NoError(t, os.WriteFile(p, []byte(recorderOut), 0o600))
	r, err := readRecorder(p)
	require.NoError(t, err)
	require.Equal(t, map[string]recorderFigure{
		"512/1": {perS: 253122, hostCPU: 1.420, pluginCPU: 2.438, perBatch: 39.72},
		"8/100": {perS: 524350, hostCPU: 1.235, pluginCPU: 1.229, perBatch: 106.6},
	}, r)
}

// The ratio is printed only where it compares like with like: the
// recorder's shape, as fast as possible, one client per channel.
func TestTableRatioOnlyLikeWithLike(t *testing.T) {
	dir := t.TempDir()
	rec := filepath.Join(dir, "recorder.txt")
	require.NoError(t, os.WriteFile(rec, []byte(recorderOut), 0o600))
	res := filepath.Join(dir, "results.jsonl")
	require.NoError(t, os.WriteFile(res, []byte(
		`{"scenario":"single","clients":100,"channels":100,"workers":512,"per":1,"rate":0,"delivered_per_s":126561,"herald_cpu_us_per_n":7.858,"plugin_cpu_us_per_n":3,"n_per_batch":12.25,"warmup":300000,"warmup_herald_cpu_us_per_n":9.5,"warmup_plugin_cpu_us_per_n":3.25}
{"scenario":"paced","clients":100,"channels":100,"workers":512,"per":1,"rate":20000,"delivered_per_s":20000}
{"scenario":"fanout","clients":1000,"channels":100,"workers":8,"per":100,"rate":0,"delivered_per_s":300000}
not json
`), 0o600))
	var out bytes.Buffer
	require.NoError(t, printTable(&out, res, rec))
	lines := bytes.Split(bytes.TrimSpace(out.Bytes()), []byte("\n"))
	require.Len(t, lines, 4)
	require.Contains(t, string(lines[1]), " 0.50 ")
	require.Contains(t, string(lines[1]), " 0.36 ") // (1.420+2.438)/(7.858+3)
	require.Contains(t, string(lines[1]), " 12.2 (39.7) ", "the batch sizes of both sides, side by side")
	require.Regexp(t, ` 300000 +9\.50\+3\.25 `, string(lines[1]), "what the warm-up cost, beside the run")
	require.NotContains(t, string(lines[2]), " 0.08 ")
	require.NotContains(t, string(lines[3]), " 0.57 ")
}
