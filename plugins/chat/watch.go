package main

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	"github.com/heraldhq/herald/sdk"
)

// watch keeps one prefix of the State mirrored in memory: load gets the
// whole prefix at each Reset (the first call of a Watch, and whenever it
// may have missed changes), change gets every change after that. A Watch
// that fails is started again after watchRetry, until Drain. It runs on
// its own goroutine, owned by the plugin (c.wg).
func (c *Chat) watch(prefix string, load func([]sdk.Entry), change func(sdk.Change)) {
	defer c.wg.Done()
	first := true
	for c.ctx.Err() == nil {
		ctx, cancel := context.WithCancel(c.ctx)
		err := c.st.Watch(ctx, prefix, func(ch sdk.Change) {
			if ctx.Err() != nil {
				return
			}
			if !ch.Reset {
				change(ch)
				return
			}
			es, err := c.st.List(ctx, prefix)
			if err != nil {
				// Without the reload the mirror would be wrong: end this
				// Watch; the next one starts with a Reset.
				c.log.Warn("reloading the chat state failed", "prefix", prefix, "error", err)
				cancel()
				return
			}
			load(es)
			if first {
				first = false
				c.loadedOne()
			}
		})
		cancel()
		if c.ctx.Err() != nil {
			return
		}
		c.log.Warn("watching the chat state stopped; starting again", "prefix", prefix, "error", err)
		select {
		case <-c.ctx.Done():
			return
		case <-time.After(watchRetry):
		}
	}
}

// loadedOne counts a prefix loaded; Configure waits for all of them.
func (c *Chat) loadedOne() {
	c.cmu.Lock()
	defer c.cmu.Unlock()
	if c.loadLeft--; c.loadLeft == 0 {
		close(c.loaded)
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
