package transport

import (
	"os"
	"testing"
)

// floorReaderMain, set on Linux (floor_linux_test.go), is the reader
// process BenchmarkFanOutFloor starts from this test binary: a helper
// process, not a test, so it runs here rather than as a test that every
// other run would report as skipped.
var floorReaderMain func(spec string)

func TestMain(m *testing.M) {
	if spec := os.Getenv("HERALD_FLOOR_READER"); spec != "" && floorReaderMain != nil {
		floorReaderMain(spec)
		os.Exit(0)
	}
	os.Exit(m.Run())
}
