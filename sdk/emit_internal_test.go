package sdk

import (
	"errors"
	"testing"

	pluginpb "github.com/heraldhq/herald/sdk/proto"
	"github.com/stretchr/testify/require"
)

func testBatch(channels ...[]string) []*emitReq {
	var batch []*emitReq
	for _, chs := range channels {
		r := &emitReq{done: make(chan struct{}, 1)}
		for _, ch := range chs {
			r.add(&Notification{Channel: ch, Event: "e", ObjectType: "o"}, []byte("null"), 10)
		}
		batch = append(batch, r)
	}
	return batch
}

// The SDK asks for columnar acks; a host that predates them answers with one
// Published per notification. Both give each Emit its own results.
func TestDeliverTakesColumnarAndPublishedAcks(t *testing.T) {
	want := [][]Published{
		{{Channel: "a", Seq: 1, ID: "a1"}, {Channel: "b", Seq: 7, ID: "b7"}},
		{{Channel: "a", Seq: 2, ID: "a2"}},
	}
	for name, ack := range map[string]*pluginpb.EmitAck{
		"columnar": {Seqs: []uint64{1, 7, 2}, Ids: []string{"a1", "b7", "a2"}},
		"published": {Published: []*pluginpb.Published{
			{Channel: "a", Seq: 1, Id: "a1"}, {Channel: "b", Seq: 7, Id: "b7"}, {Channel: "a", Seq: 2, Id: "a2"}}},
	} {
		t.Run(name, func(t *testing.T) {
			batch := testBatch([]string{"a", "b"}, []string{"a"})
			deliver(batch, ack)
			for i, r := range batch {
				<-r.done
				require.NoError(t, r.err)
				require.Equal(t, want[i], r.pub)
			}
		})
	}
}

func TestDeliverRefusesAShortAck(t *testing.T) {
	batch := testBatch([]string{"a", "b"})
	deliver(batch, &pluginpb.EmitAck{Seqs: []uint64{1}, Ids: []string{"a1"}})
	<-batch[0].done
	require.ErrorContains(t, batch[0].err, "acknowledged 1 of 2")

	batch = testBatch([]string{"a"})
	deliver(batch, &pluginpb.EmitAck{Error: &pluginpb.Error{Code: CodeForbidden, Message: "no"}})
	<-batch[0].done
	var e *Error
	require.True(t, errors.As(batch[0].err, &e))
	require.Equal(t, CodeForbidden, e.Code)
}
