package pluginhost

import (
	"bytes"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/require"
)

// A plugin's plain output is logged line by line; the last line, written
// without a newline before the plugin exits, is logged when the stream
// ends (Close), and once only.
func TestOutputWriterLogsTheLastPartialLineAtTheEnd(t *testing.T) {
	var out bytes.Buffer
	log := hclog.New(&hclog.LoggerOptions{Output: &out, Level: hclog.Info, DisableTime: true})
	w := &outputWriter{log: log, stream: "stdout"}
	_, err := w.Write([]byte("first\nsec"))
	require.NoError(t, err)
	_, err = w.Write([]byte("ond\nbye, no newline"))
	require.NoError(t, err)
	require.Equal(t, []string{"[INFO]  first: stream=stdout", "[INFO]  second: stream=stdout"}, lines(out.String()))

	require.NoError(t, w.Close())
	require.Equal(t, []string{"[INFO]  first: stream=stdout", "[INFO]  second: stream=stdout",
		"[INFO]  bye, no newline: stream=stdout"}, lines(out.String()))
	require.NoError(t, w.Close())
	require.Len(t, lines(out.String()), 3, "a second Close logs nothing more")

	// Output that still arrives after the end is logged at once, partial
	// lines included: nothing would flush them later.
	_, err = w.Write([]byte("late\nlater"))
	require.NoError(t, err)
	require.Equal(t, []string{"[INFO]  late: stream=stdout", "[INFO]  later: stream=stdout"}, lines(out.String())[3:])
}

// A stream that ended on a newline has nothing left to log at its end.
func TestOutputWriterCloseAfterAWholeLineLogsNothing(t *testing.T) {
	var out bytes.Buffer
	log := hclog.New(&hclog.LoggerOptions{Output: &out, Level: hclog.Info, DisableTime: true})
	w := &outputWriter{log: log, stream: "stderr"}
	_, err := w.Write([]byte("whole\r\n"))
	require.NoError(t, err)
	require.NoError(t, w.Close())
	require.Equal(t, []string{"[INFO]  whole: stream=stderr"}, lines(out.String()))
}

func lines(s string) []string { return strings.Split(strings.TrimRight(s, "\n"), "\n") }

// go-plugin's "plugin process exited" is an ERROR when herald kills the
// process; for a dry run (herald validate, a reload's check), which herald
// always ends itself, it is a debug line. Other lines keep their level.
func TestDryRunExitIsADebugLine(t *testing.T) {
	var out bytes.Buffer
	base := hclog.New(&hclog.LoggerOptions{Output: &out, Level: hclog.Info, DisableTime: true})
	for _, dry := range []bool{false, true} {
		out.Reset()
		l := newPluginLogger(base, "p", "/bin/p", 0)
		l.dryRun = dry
		l.Named("x").Error("plugin process exited", "plugin", "/bin/p", "error", "signal: killed")
		l.Error("something else")
		if dry {
			require.Equal(t, []string{"[ERROR] something else: plugin=p"}, lines(out.String()))
		} else {
			require.Equal(t, []string{`[ERROR] x: plugin process exited: plugin=p command=/bin/p error="signal: killed"`, "[ERROR] something else: plugin=p"}, lines(out.String()))
		}
	}
}
