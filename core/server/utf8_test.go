package server

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/heraldhq/herald/core/pluginhost"
	"github.com/heraldhq/herald/core/rpc"
	"github.com/stretchr/testify/require"
)

// A body that is not UTF-8 would reach every subscriber in a WebSocket
// text frame, which their clients must fail on; it is refused whole.
func TestPublishRefusesBytesThatAreNotUTF8(t *testing.T) {
	srv := testServer(t, 100)
	for _, body := range []string{
		`{"channel":"u","event":"e","object_type":"t","object":{"bad":"` + "\xff\xfe" + `"}}`,
		`{"channel":"u","event":"` + "\xc3" + `","object_type":"t","object":{}}`,
		`{"notifications":[{"channel":"u","event":"e","object_type":"t","object":1},{"channel":"u","event":"e","object_type":"t","object":"` + "\xed\xa0\x80" + `"}]}`,
	} {
		status, reply := srv.publishBody(t.Context(), time.Now(), "k", "", []byte(body))
		require.Equal(t, http.StatusBadRequest, status, "%s", reply)
		require.Contains(t, string(reply), "not valid UTF-8")
	}
	status, reply := srv.publishBody(t.Context(), time.Now(), "k", "", []byte(`{"channel":"u","event":"e","object_type":"t","object":{"ok":"é"}}`))
	require.Equal(t, http.StatusOK, status, "%s", reply)
	var got struct{ Results []publishResult }
	require.NoError(t, json.Unmarshal(reply, &got))
	require.Equal(t, uint64(1), got.Results[0].Seq, "a refused body published nothing")
}

func TestEmitRefusesAnObjectThatIsNotUTF8(t *testing.T) {
	srv := testServer(t, 100)
	_, err := srv.Emit(t.Context(), "p", []pluginhost.Notification{
		{Channel: "p:a", Event: "e", ObjectType: "t", Object: json.RawMessage(`{"a":1}`)},
		{Channel: "p:a", Event: "e", ObjectType: "t", Object: json.RawMessage("{\"a\":\"\xff\"}")},
	})
	var re *rpc.Error
	require.ErrorAs(t, err, &re)
	require.Equal(t, rpc.CodeInvalidParams, re.Code)
	require.Contains(t, re.Message, "notification 1: object is not valid UTF-8")
	res, err := srv.Emit(t.Context(), "p", []pluginhost.Notification{{Channel: "p:a", Event: "e", ObjectType: "t", Object: json.RawMessage(`{"a":"é"}`)}})
	require.NoError(t, err)
	require.Equal(t, uint64(1), res[0].Seq, "a refused emit published nothing")
}

func TestInvalidUTF8At(t *testing.T) {
	for in, want := range map[string]int{"": 0, "abc": 3, "a\xffb": 1, "é\xc3": 2, "\xed\xa0\x80": 0} {
		require.Equal(t, want, invalidUTF8At([]byte(in)), "%q", in)
	}
}

// A plugin's emit to a channel that is no channel name says what is wrong
// with it, as subscribe's refusals do.
func TestEmitSaysWhatIsWrongWithAChannel(t *testing.T) {
	srv := testServer(t, 100)
	for ch, want := range map[string]string{
		"p:a b":   "has byte 0x20 at 3; only printable ASCII without spaces is allowed",
		"p:":      "ends at its prefix",
		"":        "channel name is empty",
		"$server": `channel "$server" is Herald's own`,
	} {
		_, err := srv.Emit(t.Context(), "p", []pluginhost.Notification{{Channel: ch, Event: "e", ObjectType: "t", Object: json.RawMessage(`1`)}})
		var re *rpc.Error
		require.ErrorAs(t, err, &re, ch)
		require.Equal(t, rpc.CodeInvalidParams, re.Code, ch)
		require.Contains(t, re.Message, "notification 0: ", ch)
		require.Contains(t, re.Message, want, ch)
	}
}
