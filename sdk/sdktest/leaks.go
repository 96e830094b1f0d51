package sdktest

import (
	"runtime"
	"strings"
	"testing"
	"time"
)

// knownLeaks are goroutines go-plugin itself leaves behind in its in-process
// test mode (its stdio relays read pipes it never closes there); a real
// plugin process exits and takes them along.
var knownLeaks = []string{"go-plugin.copyChan"}

// CheckGoroutines fails the test if, at its end, more goroutines run than
// at this call (after waiting up to 5 s for them to end), printing the
// leaked stacks. Call it first in a test.
func CheckGoroutines(t testing.TB) {
	t.Helper()
	before := countGoroutines()
	t.Cleanup(func() {
		// One snapshot decides and is what is printed: a goroutine that
		// lives for an instant (a timer's, another test's ending) must
		// last the whole wait to count as a leak.
		deadline := time.Now().Add(5 * time.Second)
		now := goroutines()
		for len(now) > before && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
			now = goroutines()
		}
		if len(now) > before {
			t.Errorf("%d goroutines leaked:\n%s", len(now)-before, strings.Join(now, "\n\n"))
		}
	})
}

func countGoroutines() int { return len(goroutines()) }

func goroutines() []string {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
next:
	for _, g := range strings.Split(string(buf), "\n\n") {
		for _, k := range knownLeaks {
			if strings.Contains(g, k) {
				continue next
			}
		}
		out = append(out, g)
	}
	return out
}
