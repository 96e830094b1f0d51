package main

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestIntegrationDocumentAPI(t *testing.T) {
	s := startStack(t, t.TempDir(), "30s")
	c := s.dial("alice")
	where := map[string]any{"index": "foo", "collection": "bar"}
	with := func(kv ...any) map[string]any {
		m := map[string]any{"index": "foo", "collection": "bar"}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	before := time.Now().UnixMilli()

	// create with an _id: {_id, _source, _meta}, author the caller.
	res := call(t, c, "create", with("_id", "d1", "body", map[string]any{"some": "document content", "n": 1}))
	require.Equal(t, "d1", res["_id"])
	require.Equal(t, map[string]any{"some": "document content", "n": 1.0}, res["_source"])
	meta := res["_meta"].(map[string]any)
	require.ElementsMatch(t, []string{"author", "createdAt", "updatedAt", "updater", "active", "deletedAt"}, keys(meta))
	require.Equal(t, "alice", meta["author"])
	require.GreaterOrEqual(t, meta["createdAt"].(float64), float64(before))
	require.Nil(t, meta["updatedAt"])
	require.Nil(t, meta["updater"])
	require.Equal(t, true, meta["active"])
	require.Nil(t, meta["deletedAt"])

	// create without _id: one is made up. Kuzzle's refresh "wait_for" is
	// taken: every write is visible before its answer.
	res = call(t, c, "create", with("body", map[string]any{"n": 2}, "refresh", "wait_for"))
	gen, _ := res["_id"].(string)
	require.NotEmpty(t, gen)

	// create on an existing _id: -32602, status 409.
	e := c.CallErr(t, "documents.create", with("_id", "d1", "body", map[string]any{}))
	require.Equal(t, -32602, e.Code)
	require.Contains(t, string(e.Data), `"status":409`)

	// get.
	res = call(t, c, "get", with("_id", "d1"))
	require.Equal(t, "d1", res["_id"])
	require.Equal(t, "document content", res["_source"].(map[string]any)["some"])
	e = c.CallErr(t, "documents.get", with("_id", "nope"))
	require.Equal(t, -32602, e.Code)
	require.Contains(t, string(e.Data), `"status":404`)

	// update merges, and sets updatedAt/updater.
	bob := s.dial("bob")
	res = call(t, bob, "update", with("_id", "d1", "body", map[string]any{"n": 5, "extra": map[string]any{"a": 1}}))
	require.Equal(t, map[string]any{"some": "document content", "n": 5.0, "extra": map[string]any{"a": 1.0}}, res["_source"])
	meta = res["_meta"].(map[string]any)
	require.Equal(t, "alice", meta["author"])
	require.Equal(t, "bob", meta["updater"])
	require.NotNil(t, meta["updatedAt"])
	res = call(t, c, "update", with("_id", "d1", "body", map[string]any{"extra": map[string]any{"b": 2}}))
	require.Equal(t, map[string]any{"a": 1.0, "b": 2.0}, res["_source"].(map[string]any)["extra"], "objects merge")

	// replace: the whole content.
	res = call(t, c, "replace", with("_id", "d1", "body", map[string]any{"only": true}))
	require.Equal(t, map[string]any{"only": true}, res["_source"])
	e = c.CallErr(t, "documents.replace", with("_id", "nope", "body", map[string]any{}))
	require.Contains(t, string(e.Data), `"status":404`)

	// createOrReplace says what it did.
	res = call(t, c, "createOrReplace", with("_id", "d3", "body", map[string]any{"n": 3}))
	require.Equal(t, true, res["created"])
	res = call(t, c, "createOrReplace", with("_id", "d3", "body", map[string]any{"n": 4}))
	require.Equal(t, false, res["created"])
	require.Equal(t, map[string]any{"n": 4.0}, res["_source"])

	// count: all, and through a filter.
	require.Equal(t, 3.0, call(t, c, "count", where)["count"])
	require.Equal(t, 1.0, call(t, c, "count", with("body", map[string]any{"range": map[string]any{"n": map[string]any{"gte": 3}}}))["count"])
	require.Equal(t, 1.0, call(t, c, "count", with("body", map[string]any{"ids": map[string]any{"values": []string{"d1"}}}))["count"])

	// delete.
	res = call(t, c, "delete", with("_id", "d3"))
	require.Equal(t, map[string]any{"_id": "d3"}, res)
	require.Equal(t, 2.0, call(t, c, "count", where)["count"])
	e = c.CallErr(t, "documents.delete", with("_id", "d3"))
	require.Contains(t, string(e.Data), `"status":404`)

	// Through the backend route: author null.
	st, b := s.backend("create", with("_id", "h1", "body", map[string]any{"x": 1}))
	require.Equal(t, http.StatusOK, st, "%s", b)
	var hres map[string]any
	require.NoError(t, json.Unmarshal(b, &hres))
	require.Nil(t, hres["_meta"].(map[string]any)["author"])
	st, b = s.backend("get", with("_id", "h1"))
	require.Equal(t, http.StatusOK, st, "%s", b)
}

func TestIntegrationBadParams(t *testing.T) {
	s := startStack(t, t.TempDir(), "30s")
	c := s.dial("alice")
	for _, tc := range []struct {
		method string
		params map[string]any
		field  string
	}{
		{"subscribe", map[string]any{"index": "i", "collection": "c", "body": map[string]any{"and": []any{map[string]any{"equals": map[string]any{"a": 1}}, map[string]any{"range": map[string]any{"age": map[string]any{"gte": 9, "lt": 3}}}}}}, "body.and[1].range.age"},
		{"subscribe", map[string]any{"index": "i", "collection": "c", "body": map[string]any{"equal": map[string]any{"a": 1}}}, "body"},
		{"subscribe", map[string]any{"index": "i", "collection": "c", "scope": "sideways"}, "scope"},
		{"subscribe", map[string]any{"index": "i", "collection": "c", "state": "soon"}, "state"},
		{"subscribe", map[string]any{"index": "i", "collection": "c", "users": "some"}, "users"},
		{"subscribe", map[string]any{"index": "i", "collection": "c", "volatile": "x"}, "volatile"},
		{"subscribe", map[string]any{"index": "i", "collection": "c", "filters": map[string]any{}}, "filters"},
		{"subscribe", map[string]any{"collection": "c"}, "index"},
		{"subscribe", map[string]any{"index": "i"}, "collection"},
		{"join", map[string]any{"roomId": "i", "scope": "x"}, "scope"},
		{"create", map[string]any{"index": "i", "collection": "c", "body": []int{1}}, "body"},
		{"create", map[string]any{"index": "i", "collection": "c"}, "body"},
		{"create", map[string]any{"index": "i", "collection": "c", "body": map[string]any{"_id": "x"}}, "body._id"},
		{"create", map[string]any{"index": "i", "collection": "c", "_id": 3, "body": map[string]any{}}, "_id"},
		{"update", map[string]any{"index": "i", "collection": "c", "body": map[string]any{}}, "_id"},
		{"count", map[string]any{"index": "i", "collection": "c", "body": map[string]any{"range": map[string]any{"n": map[string]any{"gt": "x"}}}}, "body.range.n.gt"},
		{"publish", map[string]any{"index": "i", "collection": "c", "body": "x"}, "body"},
		{"create", map[string]any{"index": "i", "collection": "c", "body": map[string]any{}, "refresh": "now"}, "refresh"},
		// Wrong types are named as the caller wrote them (no Go names of
		// the structs the params decode into).
		{"subscribe", map[string]any{"index": 5, "collection": "c"}, "index"},
		{"subscribe", map[string]any{"index": "i", "collection": "c", "scope": true}, "scope"},
		{"subscribe", map[string]any{"index": "i", "collection": "c", "users": 5}, "users"},
		{"subscribe", map[string]any{"index": "i", "collection": "c", "since": 5}, "since"},
		{"create", map[string]any{"index": "i", "collection": 5, "body": map[string]any{}}, "collection"},
		{"subscribe", map[string]any{"index": "", "collection": "c"}, "index"},
		// A filter is an object: a number, a boolean or an array is refused
		// rather than read as no filter.
		{"subscribe", map[string]any{"index": "i", "collection": "c", "body": 5}, "body"},
		{"subscribe", map[string]any{"index": "i", "collection": "c", "body": true}, "body"},
		{"subscribe", map[string]any{"index": "i", "collection": "c", "body": []any{}}, "body"},
		{"count", map[string]any{"index": "i", "collection": "c", "body": 5}, "body"},
	} {
		e := c.CallErr(t, "documents."+tc.method, tc.params)
		require.Equal(t, -32602, e.Code, "%s %v: %v", tc.method, tc.params, e)
		var data map[string]any
		require.NoError(t, json.Unmarshal(e.Data, &data), "%s %v: %v", tc.method, tc.params, e)
		if tc.field == "body" {
			require.Contains(t, []any{"body", "body.equal"}, data["field"], "%v", e)
		} else {
			require.Equal(t, tc.field, data["field"], "%s %v: %v", tc.method, tc.params, e)
		}
		require.Contains(t, e.Message, "params."+tc.field, "%v", e)
		require.NotContains(t, e.Message, "where.", "%v", e)
		require.NotContains(t, e.Message, "options.", "%v", e)
	}

	// validate answers rather than fails.
	res := call(t, c, "validate", map[string]any{"body": map[string]any{"range": map[string]any{"n": map[string]any{"gt": 5, "lt": 1}}}})
	require.Equal(t, false, res["valid"])
	require.Contains(t, res["details"].([]any)[0], "body.range.n")
	res = call(t, c, "validate", map[string]any{"body": map[string]any{"equals": map[string]any{"a": 1}}})
	require.Equal(t, true, res["valid"])
	res = call(t, c, "validate", map[string]any{"body": 5})
	require.Equal(t, false, res["valid"])
	res = call(t, c, "validate", map[string]any{})
	require.Equal(t, true, res["valid"], "no filter: every document")
}

func TestIntegrationBackendRouteRules(t *testing.T) {
	s := startStack(t, t.TempDir(), "30s")
	c := s.dial("alice")
	_, ch := sub(t, c, map[string]any{"index": "foo", "collection": "bar", "body": map[string]any{}})

	for _, m := range []string{"subscribe", "join", "unsubscribe"} {
		st, b := s.backend(m, map[string]any{"index": "foo", "collection": "bar", "roomId": "x"})
		require.Equal(t, http.StatusBadRequest, st, "%s: %s", m, b)
		require.Contains(t, string(b), "HTTP cannot receive notifications", m)
	}

	// publish and the document API work there, with protocol http.
	st, b := s.backend("publish", map[string]any{"index": "foo", "collection": "bar", "body": map[string]any{"foo": "bar"}, "volatile": map[string]any{"v": 1}})
	require.Equal(t, http.StatusOK, st, "%s", b)
	require.JSONEq(t, `{"published":true}`, string(b))
	n, o := next(t, c)
	require.Equal(t, ch, n.Channel)
	require.Equal(t, "publish", n.Event)
	require.Equal(t, "document", n.ObjectType)
	require.Equal(t, "http", o["protocol"])
	require.Equal(t, "realtime", o["controller"])
	require.Equal(t, map[string]any{"v": 1.0}, o["volatile"])
	r := o["result"].(map[string]any)
	require.Nil(t, r["_id"])
	require.Nil(t, r["_meta"].(map[string]any)["author"])

	st, b = s.backend("create", map[string]any{"index": "foo", "collection": "bar", "_id": "x", "body": map[string]any{"a": 1}})
	require.Equal(t, http.StatusOK, st, "%s", b)
	_, o = next(t, c)
	require.Equal(t, "http", o["protocol"])
	require.Equal(t, "create", o["action"])

	// Kuzzle's 404 and 409 are the route's HTTP statuses too.
	st, b = s.backend("create", map[string]any{"index": "foo", "collection": "bar", "_id": "x", "body": map[string]any{"a": 2}})
	require.Equal(t, http.StatusConflict, st, "%s", b)
	require.Contains(t, string(b), `"status":409`)
	st, b = s.backend("get", map[string]any{"index": "foo", "collection": "bar", "_id": "nope"})
	require.Equal(t, http.StatusNotFound, st, "%s", b)
	require.Contains(t, string(b), `"code":-32602`)

	// Clients cannot subscribe to room channels directly.
	e := c.CallErr(t, "subscribe", map[string]any{"channel": ch + "x"})
	require.Equal(t, -32003, e.Code, "%v", e)
}
