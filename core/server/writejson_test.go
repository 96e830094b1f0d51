package server

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/heraldhq/herald/core/rpc"
	"github.com/stretchr/testify/require"
)

// A reply that cannot be encoded (error data that is not JSON) is a 500
// with a JSON error body, not the intended status with an empty body.
func TestWriteJSONAlwaysWritesAJSONBody(t *testing.T) {
	rec := httptest.NewRecorder()
	writeRPCError(rec, http.StatusForbidden, &rpc.Error{Code: rpc.CodeForbidden, Message: "no", Data: json.RawMessage(`{oops`)})
	require.Equal(t, http.StatusInternalServerError, rec.Code)
	var body struct{ Error rpc.Error }
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body), rec.Body.String())
	require.Equal(t, rpc.CodeInternal, body.Error.Code)
	require.Contains(t, body.Error.Message, "could not encode")

	rec = httptest.NewRecorder()
	writeRPCError(rec, http.StatusForbidden, &rpc.Error{Code: rpc.CodeForbidden, Message: "no", Data: json.RawMessage(`{"a":1}`)})
	require.Equal(t, http.StatusForbidden, rec.Code)
	require.JSONEq(t, `{"error":{"code":-32003,"message":"no","data":{"a":1}}}`, rec.Body.String())
}
