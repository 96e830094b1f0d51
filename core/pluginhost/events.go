package pluginhost

import (
	"context"
	"strings"
	"time"

	pluginpb "github.com/heraldhq/herald/sdk/proto"
)

// Lifecycle events go to a plugin through a bounded queue per process and
// one sender goroutine that delivers them in order, in batches. A batch the
// plugin fails to take (an error, or no answer within limits.call_timeout)
// is retried, in order, with backoff, for up to limits.call_timeout; past
// that the plugin has really missed events. Notify never blocks: when the
// queue is full the event is dropped and counted. Either way the sender then
// discards what is queued and sends a Reset followed by a replay of the
// current connections (retried until it is taken), so the plugin's view
// converges on the truth instead of silently drifting. The same Reset +
// replay is the first thing a (re)started plugin receives.
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
	needResync, started := true, false // a (re)started plugin first gets the replay
	pause := eventRetryMin
	for {
		if needResync {
			i.discardQueued() // the replay is newer than anything queued
			if !i.resync(ctx) {
				if ctx.Err() != nil || i.crashed() {
					return // stopping, or dead: the next process gets its own replay
				}
				if !sleepCtx(ctx, pause) {
					return
				}
				pause = min(2*pause, eventRetryMax)
				continue
			}
			if started { // a repair, not the replay every start begins with
				i.m.met.resyncs.WithLabelValues(i.name).Inc()
			}
			needResync, started, pause = false, true, eventRetryMin
		}
		var first *pluginpb.Event
		select {
		case <-i.stopEv:
			return
		case <-i.overflow:
			needResync = true
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
		if !i.deliver(ctx, batch) {
			needResync = true
		}
	}
}

// Retrying a delivery: the pause between attempts doubles from
// eventRetryMin to eventRetryMax.
const (
	eventRetryMin = 50 * time.Millisecond
	eventRetryMax = 2 * time.Second
)

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
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

// deliver sends one batch, retrying it in order (later events wait behind
// it) while the failures last less than CallTimeout (limits.call_timeout).
// It reports false when it gave up: the plugin then really missed events and
// must be resynced. A plugin that stops or dies meanwhile counts as
// delivered: the next process gets its own replay.
func (i *instance) deliver(ctx context.Context, batch *pluginpb.EventBatch) bool {
	var giveUp time.Time
	pause := eventRetryMin
	for {
		err := i.deliverOnce(ctx, batch)
		if err == nil || ctx.Err() != nil || i.crashed() {
			return true
		}
		now := time.Now()
		if giveUp.IsZero() {
			giveUp = now.Add(i.m.opts.CallTimeout)
		}
		if now.After(giveUp) {
			i.log.Warn("delivering lifecycle events failed for too long: the plugin gets a resync (reset and replay)",
				"events", len(batch.Events), "error", err)
			return false
		}
		i.log.Warn("delivering lifecycle events failed: retrying", "events", len(batch.Events), "retry_in", pause, "error", err)
		if !sleepCtx(ctx, pause) {
			return true
		}
		pause = min(2*pause, eventRetryMax)
	}
}

func (i *instance) deliverOnce(ctx context.Context, batch *pluginpb.EventBatch) error {
	cctx, cancel := context.WithTimeout(ctx, i.m.opts.CallTimeout)
	defer cancel()
	_, err := i.rpc.Events(cctx, batch)
	return err
}

// resync sends Reset and the current connections and their subscriptions to
// the plugin's channels, in batches. It reports false when a batch could not
// be delivered: the whole resync is then tried again.
func (i *instance) resync(ctx context.Context) bool {
	batch := &pluginpb.EventBatch{Events: []*pluginpb.Event{{Kind: pluginpb.EventKind_EVENT_KIND_RESET, Replay: true}}}
	flush := func() bool {
		if len(batch.Events) == 0 {
			return true
		}
		if err := i.deliverOnce(ctx, batch); err != nil {
			if ctx.Err() == nil && !i.crashed() {
				i.log.Warn("resync of lifecycle events failed: retrying", "error", err)
			}
			return false
		}
		batch = &pluginpb.EventBatch{}
		return true
	}
	for _, c := range i.m.opts.Core.Connections() {
		claims := []byte(c.Claims) // sent as the token has them, not re-encoded
		batch.Events = append(batch.Events, &pluginpb.Event{Kind: pluginpb.EventKind_EVENT_KIND_CONNECTED,
			ConnId: c.ConnID, UserId: c.UserID, ClaimsJson: claims, Volatile: c.Volatile, Replay: true})
		for _, ch := range c.Channels {
			if i.ownsChannel(ch) {
				batch.Events = append(batch.Events, &pluginpb.Event{Kind: pluginpb.EventKind_EVENT_KIND_SUBSCRIBED,
					ConnId: c.ConnID, UserId: c.UserID, ClaimsJson: claims, Channel: ch, Volatile: c.Volatile, Replay: true})
			}
		}
		if len(batch.Events) >= eventBatchMax && !flush() {
			return false
		}
	}
	return flush()
}
