package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/heraldhq/herald/sdk"
)

// watch keeps the State's members/, online/ and procs/ mirrored in memory,
// through one Watch of the whole store: every change is applied to its
// mirror, and each mirror is reloaded whole (List) when the Watch is in
// place and whenever it may have missed changes (Reset). A Watch that fails
// is started again after watchRetry, until Drain. It runs on its own
// goroutine, owned by the plugin (c.wg).
//
// "In place" is the first call of f. sdk.State promises a Reset then, but
// a store that sends none until a change comes must not leave the mirrors
// unloaded: until f is first called, this process keeps renewing its
// liveness record (procs/<pid>, inside the watched store), a change the
// Watch then reports. Reloading inside f, on the Watch's goroutine, means
// every change after the List reaches f; a change both listed and then
// reported is applied twice harmlessly, as the mirrors keep each key's
// revision and ignore older ones.
func (c *Chat) watch() {
	defer c.wg.Done()
	first := true
	for c.ctx.Err() == nil {
		ctx, cancel := context.WithCancel(c.ctx)
		inPlace := make(chan struct{})
		c.wg.Add(1)
		go c.nudge(ctx, inPlace)
		loaded := false
		err := c.st.Watch(ctx, "", func(ch sdk.Change) {
			if ctx.Err() != nil {
				return
			}
			if !loaded || ch.Reset {
				if !loaded {
					close(inPlace)
				}
				if err := c.reload(ctx); err != nil {
					// Without the reload the mirrors would be wrong: end
					// this Watch; the next one starts with a reload.
					c.log.Warn("reloading the chat state failed", "error", err)
					cancel()
					return
				}
				if !loaded && first {
					first = false
					close(c.loaded)
				}
				loaded = true
				if ch.Reset {
					return
				}
			}
			c.changed(ch)
			c.seen(ch.Revision)
		})
		cancel()
		if c.ctx.Err() != nil {
			return
		}
		c.log.Warn("watching the chat state stopped; starting again", "error", err)
		select {
		case <-c.ctx.Done():
			return
		case <-time.After(watchRetry):
		}
	}
}

// catchUpWait bounds caughtUp: a Watch lags by a round trip, unless it is
// being reloaded.
const catchUpWait = 5 * time.Second

// nudgeEvery is how often nudge writes while it waits for a Watch's first
// call.
const nudgeEvery = 200 * time.Millisecond

// nudge renews this process's liveness record until the Watch reports
// something (inPlace) or ctx ends: see watch.
func (c *Chat) nudge(ctx context.Context, inPlace <-chan struct{}) {
	defer c.wg.Done()
	t := time.NewTicker(nudgeEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-inPlace:
			return
		case <-t.C:
			c.renew()
		}
	}
}

// reload lists every mirrored prefix and replaces the mirrors.
func (c *Chat) reload(ctx context.Context) error {
	for _, p := range []struct {
		prefix string
		load   func([]sdk.Entry)
	}{{keyProcs, c.loadProcs}, {keyMembers, c.loadMembers}, {keyOnline, c.loadPresence}} {
		es, err := c.st.List(ctx, p.prefix)
		if err != nil {
			return fmt.Errorf("list %s: %w", p.prefix, err)
		}
		p.load(es)
		for _, e := range es {
			c.seen(e.Revision)
		}
	}
	return nil
}

// seen records that the mirrors hold every change up to rev: the Watch
// reports the store's changes in the order of their revisions, which grow
// across the whole store.
func (c *Chat) seen(rev uint64) {
	c.seenMu.Lock()
	defer c.seenMu.Unlock()
	if rev > c.seenRev {
		c.seenRev = rev
		close(c.seenCh)
		c.seenCh = make(chan struct{})
	}
}

// caughtUp waits until the mirrors hold every change up to rev (a write
// this process just made), so that what it decides next from them (the
// groups an announcement goes to) is what the store held when that write
// landed; at most
// catchUpWait, after which the mirrors are used as they are.
func (c *Chat) caughtUp(ctx context.Context, rev uint64) {
	timeout := time.NewTimer(catchUpWait)
	defer timeout.Stop()
	for {
		c.seenMu.Lock()
		done, ch := c.seenRev >= rev, c.seenCh
		c.seenMu.Unlock()
		if done {
			return
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return
		case <-timeout.C:
			c.log.Debug("the state watch is late; announcing from the mirrors as they are", "revision", rev)
			return
		}
	}
}

// changed applies one change to its mirror.
func (c *Chat) changed(ch sdk.Change) {
	switch {
	case strings.HasPrefix(ch.Key, keyMembers):
		c.memberChanged(ch)
	case strings.HasPrefix(ch.Key, keyOnline):
		c.presenceChanged(ch)
	case strings.HasPrefix(ch.Key, keyProcs):
		c.procChanged(ch)
	}
}

func (c *Chat) loadMembers(es []sdk.Entry) {
	mc := newMemberCache()
	for _, e := range es {
		var m membership
		if err := json.Unmarshal(e.Value, &m); err != nil {
			c.log.Warn("skipping a bad membership record", "key", e.Key, "error", err)
			continue
		}
		mc.put(e.Key, e.Revision, m)
	}
	c.cmu.Lock()
	old := c.memb
	c.memb = mc
	c.cmu.Unlock()
	// Memberships that went away while the watch was not looking may have
	// subscribers on this node.
	for key, r := range old.revs {
		if _, still := mc.revs[key]; !still && !r.gone {
			c.membershipGone(r.m)
		}
	}
}

func (c *Chat) memberChanged(ch sdk.Change) {
	if ch.Deleted {
		c.cmu.Lock()
		r, known := c.memb.revs[ch.Key]
		c.memb.deleted(ch.Key, ch.Revision, false)
		c.cmu.Unlock()
		if known {
			c.membershipGone(r.m)
		}
		return
	}
	var m membership
	if err := json.Unmarshal(ch.Value, &m); err != nil {
		c.log.Warn("skipping a bad membership record", "key", ch.Key, "error", err)
		return
	}
	c.cmu.Lock()
	c.memb.put(ch.Key, ch.Revision, m)
	c.cmu.Unlock()
}

// membershipGone queues a check of this node's connections of m.User that
// are subscribed to m.Group's channel: a participant removed through any
// node stops reading the group on every node.
func (c *Chat) membershipGone(m membership) {
	ch := prefixGroup + m.Group
	c.mu.Lock()
	defer c.mu.Unlock()
	for id := range c.byUser[m.User] {
		if _, ok := c.conns[id].subs[ch]; ok {
			c.work.checkSub(id, m.Group, m.User)
		}
	}
}

func (c *Chat) loadPresence(es []sdk.Entry) {
	pc := &presenceCache{recs: make(map[string]presenceRev, len(es))}
	for _, e := range es {
		if r := c.decodePresence(e.Key, e.Value); r != nil {
			pc.put(e.Key, e.Revision, r)
		}
	}
	c.cmu.Lock()
	c.presence = pc
	c.cmu.Unlock()
	c.work.reapDead() // a process may have died unseen
}

func (c *Chat) presenceChanged(ch sdk.Change) {
	if ch.Deleted {
		c.cmu.Lock()
		c.presence.deleted(ch.Key, ch.Revision, false)
		c.cmu.Unlock()
		return
	}
	r := c.decodePresence(ch.Key, ch.Value)
	if r == nil {
		return
	}
	c.cmu.Lock()
	c.presence.put(ch.Key, ch.Revision, r)
	_, unknown := c.unknownProc(r)
	c.cmu.Unlock()
	if unknown {
		c.work.reapDead() // it names a process that may have died unseen
	}
}

// unknownProc reports a process of r that the procs/ mirror does not hold;
// cmu is held.
func (c *Chat) unknownProc(r *presenceRecord) (string, bool) {
	for pid := range r.Procs {
		if _, ok := c.procs[pid]; !ok {
			return pid, true
		}
	}
	return "", false
}

func (c *Chat) decodePresence(key string, v []byte) *presenceRecord {
	var r presenceRecord
	if err := json.Unmarshal(v, &r); err != nil {
		c.log.Warn("skipping a bad presence record", "key", key, "error", err)
		return nil
	}
	return &r
}

func (c *Chat) loadProcs(es []sdk.Entry) {
	live := set{}
	for _, e := range es {
		live.add(strings.TrimPrefix(e.Key, keyProcs))
	}
	c.cmu.Lock()
	gone := set{}
	for pid := range c.procs {
		if _, ok := live[pid]; !ok {
			gone.add(pid)
		}
	}
	c.procs = live
	c.cmu.Unlock()
	for pid := range gone {
		c.procGone(pid)
	}
	c.work.reapDead()
}

func (c *Chat) procChanged(ch sdk.Change) {
	pid := strings.TrimPrefix(ch.Key, keyProcs)
	c.cmu.Lock()
	if ch.Deleted {
		delete(c.procs, pid)
	} else {
		c.procs.add(pid)
	}
	c.cmu.Unlock()
	if ch.Deleted {
		c.procGone(pid)
	}
}

// procGone: a liveness record expired. If it is this process's own (it
// could not renew in time, and the others may be reaping its entries), the
// worker renews at once, which takes a new id and writes its users again; another
// process's entries are reaped.
func (c *Chat) procGone(pid string) {
	c.mu.Lock()
	self := pid == c.pid
	if !self {
		c.dead[pid] = true
	}
	c.mu.Unlock()
	if self {
		c.work.renewNow()
		return
	}
	c.work.reapDead()
}
