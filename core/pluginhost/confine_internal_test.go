package pluginhost

import (
	"testing"

	"github.com/heraldhq/herald/core/config"
	pluginpb "github.com/heraldhq/herald/sdk/proto"
)

// BenchmarkCheckEmit: what confinement adds to the event path, per batch of
// 100 notifications over 4 channels (own prefix, emit_channels exact and
// pattern). Reported per notification.
func BenchmarkCheckEmit(b *testing.B) {
	p := newPolicy(config.Plugin{Name: "p", EmitChannels: []string{"news", "alerts:*"}}, &pluginpb.Manifest{Prefixes: []string{"chat", "p"}})
	chans := []string{"chat:group:1", "news", "alerts:fire", "p:x"}
	ns := make([]Notification, 100)
	for i := range ns {
		ns[i].Channel = chans[i*len(chans)/len(ns)]
	}
	b.ResetTimer()
	for range b.N {
		if _, err := p.checkEmit(ns, owned, true); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(ns)), "ns/notification")
}

func TestCheckEmitRules(t *testing.T) {
	p := newPolicy(config.Plugin{Name: "p", EmitChannels: []string{"news", "alerts:*", "config", "co*"}}, &pluginpb.Manifest{Prefixes: []string{"p"}})
	for ch, want := range map[string]bool{
		"p:x": true, "p:": true, "p": false, "px:1": false,
		"news": true, "news:1": false, "alerts:a": true, "alerts:": true, "alerts": false,
		"config":  true, // listed by its exact name
		"$server": false, "colour": true,
	} {
		_, err := p.checkEmit([]Notification{{Channel: ch}}, owned, true)
		if (err == nil) != want {
			t.Errorf("%q: allowed %v, want %v", ch, err == nil, want)
		}
	}
	q := newPolicy(config.Plugin{Name: "q", EmitChannels: []string{"co*"}}, &pluginpb.Manifest{})
	if _, err := q.checkEmit([]Notification{{Channel: "config"}}, owned, true); err == nil {
		t.Error("a pattern reached the core's config channel")
	}
	// With open channels off, a listed open channel is refused (nobody
	// could subscribe to it); the core's config is not an open one.
	for ch, want := range map[string]bool{"p:x": true, "news": false, "alerts:a": true, "config": true, "colour": false} {
		_, err := p.checkEmit([]Notification{{Channel: ch}}, owned, false)
		if (err == nil) != want {
			t.Errorf("%q with open channels off: allowed %v, want %v", ch, err == nil, want)
		}
	}
	// emit_channels reach only namespaces some plugin owns: nobody could
	// subscribe to another.
	nobody := func(string) bool { return false }
	for ch, want := range map[string]bool{"p:x": true, "news": true, "alerts:a": false, "config": true} {
		_, err := p.checkEmit([]Notification{{Channel: ch}}, nobody, true)
		if (err == nil) != want {
			t.Errorf("%q with no other plugin: allowed %v, want %v", ch, err == nil, want)
		}
	}
}

// owned: every prefix is some plugin's.
func owned(string) bool { return true }
