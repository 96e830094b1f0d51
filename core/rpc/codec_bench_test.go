package rpc_test

import (
	"testing"

	"github.com/heraldhq/herald/core/rpc"
)

// BenchmarkDecode measures the frames a client sends most: a subscribe
// request, and a batch of them.
func BenchmarkDecode(b *testing.B) {
	frames := map[string][]byte{
		"request": []byte(`{"jsonrpc":"2.0","id":2,"method":"subscribe","params":{"channels":["news","chat:group:2"],"since":{"news":{"seq":41,"epoch":"9f3a17c2"}}}}`),
		"batch":   []byte(`[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"subscribe","params":{"channel":"news"}},{"jsonrpc":"2.0","method":"chat.typing","params":{"room":"x"}}]`),
	}
	for name, frame := range frames {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(frame)))
			msgs := 0
			for b.Loop() {
				m, _ := rpc.Decode(frame)
				msgs += len(m)
			}
			b.ReportMetric(float64(msgs)/b.Elapsed().Seconds(), "messages/s")
		})
	}
}
