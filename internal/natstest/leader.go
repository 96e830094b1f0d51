package natstest

import (
	"encoding/json"
	"time"

	"github.com/nats-io/nats.go"
)

// LeadStream makes the i-th server the leader of stream (a replicated one),
// asking the leader to step down in its favour until it is: a test that
// stops the other servers then knows which one is left leading.
func (c *Cluster) LeadStream(stream string, i int) {
	c.t.Helper()
	nc, err := nats.Connect(c.servers[i].URL())
	if err != nil {
		c.t.Fatalf("natstest: connect to server %d: %v", i, err)
	}
	defer nc.Close()
	want := nc.ConnectedServerName()
	stepDown, _ := json.Marshal(map[string]any{"placement": map[string]string{"preferred": want}})
	deadline := time.Now().Add(readyTimeout)
	for time.Now().Before(deadline) {
		var info struct {
			Cluster *struct {
				Leader string `json:"leader"`
			} `json:"cluster"`
		}
		m, err := nc.Request("$JS.API.STREAM.INFO."+stream, nil, 5*time.Second)
		if err == nil && json.Unmarshal(m.Data, &info) == nil && info.Cluster != nil {
			if info.Cluster.Leader == want {
				return
			}
			if info.Cluster.Leader != "" {
				_, _ = nc.Request("$JS.API.STREAM.LEADER.STEPDOWN."+stream, stepDown, 5*time.Second)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatalf("natstest: stream %s not led by server %d (%s) within %s", stream, i, want, readyTimeout)
}
