package main_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/internal/heraldtest"
)

// A plugin whose State is full answers its call with -32005 (429 over
// HTTP), and the message names the key to raise, state.max_bytes: not a
// -32603 (500) that looks like a bug.
func TestFullStateIsALimitNamingItsKey(t *testing.T) {
	h := heraldtest.Start(t, heraldtest.Options{HCL: "state {\n  max_bytes = 65536\n}\n" +
		pluginBlock("documents", "plugins/documents", "")(t)})
	waitPlugin(t, h, "documents", func(p pluginStatus) bool { return p.State == "running" })
	body := strings.Repeat("x", 8<<10)
	for i := range 64 { // 64 documents of 8 KiB: well over 64 KiB
		status, raw := h.Do(t, http.MethodPost, "/v1/plugins/documents/create",
			map[string]any{"index": "i", "collection": "c", "_id": fmt.Sprintf("d%d", i), "body": map[string]any{"text": body}},
			heraldtest.APIKey, nil)
		if status == http.StatusOK {
			continue
		}
		require.Equal(t, http.StatusTooManyRequests, status, string(raw))
		var answer struct {
			Error struct {
				Code    int
				Message string
			}
		}
		require.NoError(t, json.Unmarshal(raw, &answer), string(raw))
		require.Equal(t, -32005, answer.Error.Code, string(raw))
		require.Contains(t, answer.Error.Message, "the plugin's State is full (state.max_bytes)")
		require.Contains(t, answer.Error.Message, "raise state.max_bytes in herald's config")
		return
	}
	t.Fatal("64 documents of 8 KiB fit in a State of 64 KiB")
}
