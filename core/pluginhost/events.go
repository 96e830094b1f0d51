package pluginhost

import (
	"context"
	"encoding/json"
	"strings"

	pluginpb "github.com/heraldhq/herald/sdk/proto"
)

// Lifecycle events go to a plugin through a bounded queue per process and
// one sender goroutine that delivers them in order, in batches. Notify never
// blocks: when the queue is full the event is dropped and counted, and the
// sender then discards what is queued and sends a Reset followed by a replay
// of the current connections, so the plugin's view converges on the truth
// instead of silently drifting. The same Reset + replay is the first thing a
// (re)started plugin receives.
const (
	eventQueueDepth = 8192
	eventBatchMax   = 256
)

var kindPB = map[EventKind]pluginpb.EventKind{
	Connected:    pluginpb.EventKind_EVENT_KIND_CONNECTED,
	Disconnected: pluginpb.EventKind_EVENT_KIND_DISCONNECTED,
	Subscribed:   pluginpb.EventKind_EVENT_KIND_SUBSCRIBED,
	Unsubscribed: pluginpb.EventKind_EVENT_KIND_UNSUBSCRIBED,
}

func claimsJSON(c map[string]any) []byte {
	if c == nil {
		return nil
	}
	b, _ := json.Marshal(c)
	return b
}

// wants says whether this instance should learn of ev: connection events go
// to every plugin that handles events, subscription events to the owner of
// the channel only.
func (i *instance) wants(ev Event) bool {
	if !i.manifest.GetWantsEvents() {
		return false
	}
	if ev.Kind == Subscribed || ev.Kind == Unsubscribed {
		return i.ownsChannel(ev.Channel)
	}
	return true
}

func (i *instance) ownsChannel(ch string) bool {
	prefix, _, ok := strings.Cut(ch, ":")
	if !ok {
		return false
	}
	for _, p := range i.manifest.GetPrefixes() {
		if p == prefix {
			return true
		}
	}
	return false
}

// enqueue is Notify's non-blocking half.
func (i *instance) enqueue(ev *pluginpb.Event) {
	select {
	case i.events <- ev:
	default:
		i.m.met.eventsDropped.WithLabelValues(i.name).Inc()
		select {
		case i.overflow <- struct{}{}:
		default:
		}
	}
}

// startEvents starts the sender; it must run after the instance is visible
// to Notify, so that nothing between the replay's snapshot and live events
// is lost (an event may arrive twice: plugins handle them idempotently).
func (i *instance) startEvents() {
	if !i.manifest.GetWantsEvents() {
		return
	}
	i.hostMu.Lock()
	i.evStarted = true
	i.hostMu.Unlock()
	go i.sendEvents() // ends on stopEv (kill)
}

func (i *instance) sendEvents() {
	defer close(i.evDone)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { // ends with sendEvents: cancels in-flight deliveries on stop
		select {
		case <-i.stopEv:
			cancel()
		case <-ctx.Done():
		}
	}()
	i.resync(ctx)
	for {
		var first *pluginpb.Event
		select {
		case <-i.stopEv:
			return
		case <-i.overflow:
			i.discardQueued()
			i.resync(ctx)
			continue
		case first = <-i.events:
		}
		batch := &pluginpb.EventBatch{Events: []*pluginpb.Event{first}}
	fill:
		for len(batch.Events) < eventBatchMax {
			select {
			case ev := <-i.events:
				batch.Events = append(batch.Events, ev)
			default:
				break fill
			}
		}
		i.deliver(ctx, batch)
	}
}

func (i *instance) discardQueued() {
	for {
		select {
		case <-i.events:
		default:
			return
		}
	}
}

func (i *instance) deliver(ctx context.Context, batch *pluginpb.EventBatch) {
	cctx, cancel := context.WithTimeout(ctx, i.m.opts.CallTimeout)
	defer cancel()
	if _, err := i.rpc.Events(cctx, batch); err != nil && ctx.Err() == nil && !i.crashed() {
		i.log.Warn("delivering lifecycle events failed", "events", len(batch.Events), "error", err)
	}
}

// resync sends Reset and the current connections and their subscriptions to
// the plugin's channels, in batches.
func (i *instance) resync(ctx context.Context) {
	batch := &pluginpb.EventBatch{Events: []*pluginpb.Event{{Kind: pluginpb.EventKind_EVENT_KIND_RESET, Replay: true}}}
	flush := func() {
		if len(batch.Events) > 0 {
			i.deliver(ctx, batch)
			batch = &pluginpb.EventBatch{}
		}
	}
	for _, c := range i.m.opts.Core.Connections() {
		claims := claimsJSON(c.Claims)
		batch.Events = append(batch.Events, &pluginpb.Event{Kind: pluginpb.EventKind_EVENT_KIND_CONNECTED,
			ConnId: c.ConnID, UserId: c.UserID, ClaimsJson: claims, Volatile: c.Volatile, Replay: true})
		for _, ch := range c.Channels {
			if i.ownsChannel(ch) {
				batch.Events = append(batch.Events, &pluginpb.Event{Kind: pluginpb.EventKind_EVENT_KIND_SUBSCRIBED,
					ConnId: c.ConnID, UserId: c.UserID, ClaimsJson: claims, Channel: ch, Volatile: c.Volatile, Replay: true})
			}
		}
		if len(batch.Events) >= eventBatchMax {
			flush()
		}
	}
	flush()
}
