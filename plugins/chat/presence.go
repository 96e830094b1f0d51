package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/heraldhq/herald/sdk"
)

// Presence. A user is online while they have at least one connection on
// any node (tabs count once). When their first connection anywhere opens,
// is_online goes to the channel of each group they belong to,
// chat:group:<g>, one per group; when their last one anywhere closes,
// is_offline, the same way. Every subscriber of a group's channel gets it,
// on whichever node (see README).
//
// Each chat process knows only its own node's connections (the host tells
// it, and replays them after a Reset). What is shared is one record per
// online user, online/<user> (store.go): the ids of the processes that hold
// a connection of the user. Every change of a record is a compare-and-set
// on its revision, so exactly one process makes each transition: the one
// whose Create makes the record announces is_online; the one that removes
// the last process announces is_offline, and that removal is an Update at
// the revision it read, to a tombstone (a record naming no process), then
// a Delete of the tombstone. Not a Delete at once: deleting a key that is
// already gone succeeds (sdk.State), so two processes that read the same
// revision would both take their Delete for the win.
//
// A tombstone means offline, already announced, to every reader: a process
// whose user connects writes over it at its revision and announces
// is_online as for a new record; one that finds it otherwise deletes it at
// its revision, silently. That is how a tombstone whose writer died before
// its Delete goes: a survivor's reap queues the users of tombstones too.
//
// A process that dies cannot remove its entries. Each process keeps a
// liveness record, procs/<pid>, with a TTL (liveness_ttl) that it renews
// every third of it. When one expires, every other process sees it through
// its Watch and removes the dead process's entries from the records that
// hold them, with the same compare-and-set: users left with no process are
// announced offline, once. A process that finds its own record expired
// (it could not renew in time) takes a new id and writes its users again,
// so that entries the others reaped come back under a live id.
//
// The host's events only change this process's view of its connections;
// the records are brought in line afterwards by the workers (work.go), each
// user's in order on one worker. An announcement goes to the groups the
// user belonged to when the winning write landed: the announcer first lets
// its mirrors (memberships included) catch up to that write (caughtUp).
// After a Reset the work waits until the replay of the host's connections
// settles, so that a replay in progress is never taken for users who left.

// HandleEvent implements sdk.EventHandler.
func (c *Chat) HandleEvent(_ context.Context, _ sdk.Host, ev sdk.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.work == nil {
		return // draining, or never configured
	}
	if ev.Kind == sdk.Reset {
		c.conns, c.byUser = map[string]*conn{}, map[string]set{}
		c.resyncing = true
		c.work.setPaused(true)
		c.armSettle()
		return
	}
	if c.resyncing && !ev.Replay {
		c.finishResync()
	}
	c.apply(ev)
	if c.resyncing {
		c.armSettle()
	}
}

// startResync makes the worker wait for the replay of the host's
// connections that follows a plugin's start.
func (c *Chat) startResync() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.resyncing = true
	c.work.setPaused(true)
	c.armSettle()
}

// armSettle (re)starts the timer that ends a replay; c.mu is held.
func (c *Chat) armSettle() {
	if c.settleT != nil {
		c.settleT.Stop()
	}
	c.resyncGen++
	gen := c.resyncGen
	c.settleT = time.AfterFunc(c.settle, func() { c.settled(gen) })
}

func (c *Chat) settled(gen int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || !c.resyncing || gen != c.resyncGen {
		return
	}
	c.finishResync()
}

// finishResync ends a replay: every user this process held an entry for,
// and every user of the replay, is reconciled, and dead processes are
// reaped; c.mu is held.
func (c *Chat) finishResync() {
	c.resyncing = false
	if c.settleT != nil {
		c.settleT.Stop()
	}
	// Those who left while the events were missed first, then the others
	// (each worker keeps that order for its share of the users).
	left := set{}
	for u := range c.mine {
		if _, still := c.byUser[u]; !still {
			left.add(u)
		}
	}
	c.work.sync(sorted(left)...)
	c.work.sync(sorted(keysOf(c.byUser))...)
	c.work.reapDead()
	c.work.setPaused(false)
}

// apply updates this node's view of its connections with ev and queues the
// work it causes; c.mu is held.
func (c *Chat) apply(ev sdk.Event) {
	switch ev.Kind {
	case sdk.Connected:
		if ev.UserID == "" || !validID(ev.UserID) {
			return // anonymous users have no presence
		}
		if _, known := c.conns[ev.ConnID]; known {
			return
		}
		nick, _ := ev.Claims["nick"].(string)
		c.conns[ev.ConnID] = &conn{user: ev.UserID, nick: nick, subs: set{}}
		if c.byUser[ev.UserID] == nil {
			c.byUser[ev.UserID] = set{}
			c.dirty(ev.UserID)
		}
		c.byUser[ev.UserID].add(ev.ConnID)

	case sdk.Disconnected:
		cn := c.conns[ev.ConnID]
		if cn == nil {
			return
		}
		delete(c.conns, ev.ConnID)
		delete(c.byUser[cn.user], ev.ConnID)
		if len(c.byUser[cn.user]) == 0 {
			delete(c.byUser, cn.user)
			c.dirty(cn.user)
		}

	case sdk.Subscribed:
		cn := c.conns[ev.ConnID]
		if cn == nil || !cn.subs.add(ev.Channel) {
			return
		}
		if g, ok := strings.CutPrefix(ev.Channel, prefixGroup); ok {
			c.cmu.Lock()
			member := c.memb.has(g, cn.user)
			c.cmu.Unlock()
			if !member {
				// Authorized on a membership this process's cache has
				// not seen (added through another node), or one removed
				// since: the State says which.
				c.work.checkSub(ev.ConnID, g, cn.user)
			}
		}

	case sdk.Unsubscribed:
		if cn := c.conns[ev.ConnID]; cn != nil {
			delete(cn.subs, ev.Channel)
		}
	}
}

// dirty queues a sync of user, unless a replay is being rebuilt (its end
// syncs every user, those who left first); c.mu is held.
func (c *Chat) dirty(user string) {
	if !c.resyncing {
		c.work.sync(user)
	}
}

// worker does one queue's presence work until Drain.
func (c *Chat) worker(q *workQueue) {
	defer c.wg.Done()
	for {
		j, ok := q.next()
		if !ok {
			return
		}
		switch j.kind {
		case jobSync:
			out, err := c.sync(c.ctx, j.user)
			if err != nil {
				if c.ctx.Err() != nil {
					return
				}
				c.log.Warn("updating presence failed; retrying at the next liveness renewal", "user", j.user, "error", err)
				c.mu.Lock()
				c.failed.add(j.user)
				c.mu.Unlock()
				continue
			}
			ctx, cancel := context.WithTimeout(c.ctx, emitTimeout)
			c.emit(ctx, out)
			cancel()
		case jobCheckSub:
			c.checkSub(j)
		case jobReap:
			c.reap()
		case jobRenew:
			c.renew()
		}
	}
}

// sync makes user's online/ record agree with this process: an entry for
// this process while it holds a connection of the user, none otherwise,
// and none for processes known dead; a tombstone it finds is written over
// (the user came back) or deleted. It returns the announcement it won, if
// any.
func (c *Chat) sync(ctx context.Context, user string) ([]sdk.Notification, error) {
	key := onlineKey(user)
	for ctx.Err() == nil {
		c.mu.Lock()
		if c.resyncing {
			// The view is being rebuilt from a replay; its end syncs
			// every user again.
			c.mu.Unlock()
			return nil, nil
		}
		pid := c.pid
		want, nick := len(c.byUser[user]) > 0, c.someNick(user)
		dead := make(map[string]bool, len(c.dead))
		for p := range c.dead {
			dead[p] = true
		}
		c.mu.Unlock()

		e, err := c.st.Get(ctx, key)
		if isNotFound(err) {
			if !want {
				c.setMine(user, false)
				return nil, nil
			}
			out, landed, err := c.comeOnline(ctx, user, key, pid, nick, func(v []byte) (uint64, error) {
				return c.st.Create(ctx, key, v)
			})
			if !landed && err == nil {
				continue // another process made the user online first
			}
			return out, err
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", key, err)
		}
		rec := c.decodePresence(key, e.Value)
		if rec != nil && len(rec.Procs) == 0 {
			// A tombstone: the user is offline, and the process that
			// wrote it won that announcement.
			if want {
				// Back online: made as a new record is.
				out, landed, err := c.comeOnline(ctx, user, key, pid, nick, func(v []byte) (uint64, error) {
					return c.st.Update(ctx, key, v, e.Revision)
				})
				if !landed && err == nil {
					continue
				}
				return out, err
			}
			// Its writer deletes it after writing it; one that died in
			// between left it, and whoever comes by deletes it, silently.
			err := c.st.Delete(ctx, key, e.Revision)
			if isConflict(err) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("delete the tombstone %s: %w", key, err)
			}
			c.written(user, key, e.Revision, nil, false)
			return nil, nil
		}
		if rec == nil {
			rec = &presenceRecord{User: user} // unreadable: rewritten below
		}
		if rec.Procs == nil {
			rec.Procs = map[string]procPresence{}
		}
		changed := rec.User != user
		rec.User = user
		for p := range rec.Procs {
			if dead[p] {
				delete(rec.Procs, p)
				changed = true
			}
		}
		// (An entry written by an earlier version may carry a "listening"
		// flag; it is ignored, and dropped whenever the record is written.)
		_, has := rec.Procs[pid]
		switch {
		case want && !has:
			rec.Procs[pid] = procPresence{}
			changed = true
		case !want && has:
			delete(rec.Procs, pid)
			changed = true
		}
		if !changed {
			c.setMine(user, want)
			return nil, nil
		}
		if len(rec.Procs) == 0 {
			// The user's last process is gone. The announcement goes to
			// the process whose Update turns the record into a tombstone:
			// at the revision read, it lands for one process only. (A
			// Delete at that revision would not tell: deleting a key that
			// another process has just deleted succeeds.)
			tomb := &presenceRecord{User: user, Procs: map[string]procPresence{}}
			trev, err := c.st.Update(ctx, key, mustJSON(tomb), e.Revision)
			if isConflict(err) || isNotFound(err) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("write the tombstone %s: %w", key, err)
			}
			c.written(user, key, trev, tomb, false)
			c.dropTombstone(ctx, user, key, trev)
			obj, err := c.offlineObject(ctx, user, rec.Object)
			if err != nil {
				return nil, err
			}
			c.caughtUp(ctx, trev)
			return c.presenceNotes(user, "is_offline", obj), nil
		}
		rev, err := c.st.Update(ctx, key, mustJSON(rec), e.Revision)
		if isConflict(err) || isNotFound(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("update %s: %w", key, err)
		}
		c.written(user, key, rev, rec, want)
		return nil, nil
	}
	return nil, ctx.Err()
}

// comeOnline makes user's record name only this process, with write (a
// Create of the missing key, or an Update of a tombstone at its revision),
// and returns is_online if the write landed. landed is false, without an
// error, when another process wrote first.
func (c *Chat) comeOnline(ctx context.Context, user, key, pid, nick string,
	write func([]byte) (uint64, error)) (out []sdk.Notification, landed bool, err error) {
	obj, err := c.userObject(ctx, user, nick)
	if err != nil {
		return nil, false, err
	}
	rec := &presenceRecord{User: user, Procs: map[string]procPresence{pid: {}}, Object: obj}
	rev, err := write(mustJSON(rec))
	if isConflict(err) || isNotFound(err) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("write %s: %w", key, err)
	}
	c.written(user, key, rev, rec, true)
	// The groups the user was in when the record was made hear of it,
	// also one joined through another node a moment before.
	c.caughtUp(ctx, rev)
	return c.presenceNotes(user, "is_online", obj), true, nil
}

// dropTombstone deletes the tombstone this process wrote at rev (and so
// announces is_offline for). A conflict means the user came back online
// meanwhile, their record written over it; any other failure leaves it to
// the next renewal's retry of user, which deletes it without announcing.
func (c *Chat) dropTombstone(ctx context.Context, user, key string, rev uint64) {
	err := c.st.Delete(ctx, key, rev)
	switch {
	case err == nil:
		c.written(user, key, rev, nil, false)
	case isConflict(err):
	default:
		if ctx.Err() == nil {
			c.log.Warn("deleting a presence tombstone failed; retrying at the next liveness renewal", "user", user, "error", err)
		}
		c.mu.Lock()
		c.failed.add(user)
		c.mu.Unlock()
	}
}

// written records a write of user's online/ record in the cache and in
// mine; rec nil is a delete at rev.
func (c *Chat) written(user, key string, rev uint64, rec *presenceRecord, mine bool) {
	c.cmu.Lock()
	if rec == nil {
		c.presence.deleted(key, rev, true)
	} else {
		c.presence.put(key, rev, rec)
	}
	c.cmu.Unlock()
	c.setMine(user, mine)
}

func (c *Chat) setMine(user string, mine bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if mine {
		c.mine.add(user)
	} else {
		delete(c.mine, user)
	}
}

// checkSub ends a connection's subscription to a group channel if its user
// is no participant (any more) by the State. A removeMember of this process
// in progress for the same membership does it itself.
func (c *Chat) checkSub(j job) {
	c.mu.Lock()
	cn := c.conns[j.conn]
	_, subscribed := cn.subsOf()[j.channel]
	subscribed = subscribed && cn.user == j.user
	removing := c.removing[memberKey(j.group, j.user)] > 0
	c.mu.Unlock()
	if !subscribed || removing {
		return
	}
	ok, err := c.isMember(c.ctx, j.group, j.user)
	if err != nil {
		c.log.Warn("checking a subscription's membership failed", "conn", j.conn, "channel", j.channel, "error", err)
		return
	}
	if ok {
		return
	}
	if err := c.host.Unsubscribe(c.ctx, j.conn, j.channel); err != nil {
		c.log.Warn("unsubscribing a removed participant failed", "conn", j.conn, "channel", j.channel, "error", err)
		return
	}
	c.mu.Lock()
	if cn := c.conns[j.conn]; cn != nil {
		delete(cn.subs, j.channel)
	}
	c.mu.Unlock()
}

func (cn *conn) subsOf() set {
	if cn == nil {
		return nil
	}
	return cn.subs
}

// reap finds the processes that the online/ records name but whose
// liveness records are gone, and queues the users they held: their sync
// removes the dead entries (announcing is_offline where none is left). It
// queues the users whose record is a tombstone too, as a tombstone's
// writer may have died before deleting it: their sync deletes it, without
// an announcement.
func (c *Chat) reap() {
	c.cmu.Lock()
	named, tombs := set{}, set{}
	for key, r := range c.presence.recs {
		switch {
		case r.gone:
		case len(r.rec.Procs) == 0:
			if onlineKey(r.rec.User) == key {
				tombs.add(r.rec.User)
			}
		default:
			for pid := range r.rec.Procs {
				if _, live := c.procs[pid]; !live {
					named.add(pid)
				}
			}
		}
	}
	c.cmu.Unlock()
	c.work.sync(sorted(tombs)...)

	c.mu.Lock()
	var check []string
	for pid := range named {
		if pid != c.pid && !c.dead[pid] {
			check = append(check, pid)
		}
	}
	c.mu.Unlock()
	// The mirrors of procs/ and online/ are fed by two watches: a new
	// process's entries may show before its liveness record. Only the
	// State itself says a process is gone.
	for _, pid := range check {
		_, err := c.st.Get(c.ctx, procKey(pid))
		switch {
		case isNotFound(err):
			c.mu.Lock()
			c.dead[pid] = true
			c.mu.Unlock()
		case err != nil:
			c.log.Warn("checking a chat process's liveness failed", "pid", pid, "error", err)
		}
	}

	c.mu.Lock()
	dead := make(map[string]bool, len(c.dead))
	for p := range c.dead {
		dead[p] = true
	}
	c.mu.Unlock()
	if len(dead) == 0 {
		return
	}
	users, held := set{}, set{}
	c.cmu.Lock()
	for _, r := range c.presence.recs {
		if r.gone {
			continue
		}
		for pid := range r.rec.Procs {
			if dead[pid] {
				users.add(r.rec.User)
				held.add(pid)
			}
		}
	}
	c.cmu.Unlock()
	// A dead process no record names any more is forgotten; should a late
	// record name it again, the next reap finds it gone again.
	c.mu.Lock()
	for p := range c.dead {
		if _, ok := held[p]; !ok {
			delete(c.dead, p)
		}
	}
	c.mu.Unlock()
	if len(users) > 0 {
		c.log.Info("reaping the presence of dead chat processes", "processes", len(held), "users", len(users))
		c.work.sync(sorted(users)...)
	}
}

// Liveness.

// randomPID names a process: 16 hex digits, a valid key segment.
func randomPID() string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("chat: no randomness for a process id: %v", err))
	}
	return hex.EncodeToString(b[:])
}

type procRecord struct {
	Started string `json:"started"`
}

// register writes a new liveness record under a new id and makes it this
// process's.
func (c *Chat) register(ctx context.Context) error {
	for i := 0; i < 3; i++ {
		pid := c.newPID()
		val := mustJSON(procRecord{Started: time.Now().UTC().Format(time.RFC3339)})
		rev, err := c.st.Create(ctx, procKey(pid), val, sdk.WithTTL(c.cfg.LivenessTTL))
		if isConflict(err) {
			continue // a process id drawn twice
		}
		if err != nil {
			return fmt.Errorf("registering the chat process in the state: %w", err)
		}
		c.mu.Lock()
		c.pid, c.procRev = pid, rev
		c.mu.Unlock()
		c.cmu.Lock()
		c.procs.add(pid)
		c.cmu.Unlock()
		return nil
	}
	return errors.New("registering the chat process in the state: no free process id")
}

// liveness renews this process's liveness record every third of
// liveness_ttl until Drain, and retries the presence work that failed.
func (c *Chat) liveness() {
	defer c.wg.Done()
	t := time.NewTicker(c.cfg.LivenessTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		c.renew()
	}
}

func (c *Chat) renew() {
	// The ticker and the worker (on seeing the record expire) both renew:
	// one at a time, so that neither takes the other's write for a loss.
	c.renewMu.Lock()
	defer c.renewMu.Unlock()
	c.mu.Lock()
	pid, rev := c.pid, c.procRev
	failed := c.failed
	c.failed = set{}
	c.mu.Unlock()
	c.work.sync(sorted(failed)...)

	val := mustJSON(procRecord{Started: time.Now().UTC().Format(time.RFC3339)})
	nrev, err := c.st.Update(c.ctx, procKey(pid), val, rev, sdk.WithTTL(c.cfg.LivenessTTL))
	switch {
	case err == nil:
		c.mu.Lock()
		if c.pid == pid {
			c.procRev = nrev
		}
		c.mu.Unlock()
	case isNotFound(err) || isConflict(err):
		c.reincarnate(pid)
	case c.ctx.Err() == nil:
		c.log.Warn("renewing the chat process's liveness failed", "pid", pid, "error", err)
	}
	c.checkProcs()
}

// checkProcs compares the mirror of procs/ with the State: a liveness
// record that expired without the Watch reporting it is handled as if it
// had. (One small List per renewal: there is one key per process.)
func (c *Chat) checkProcs() {
	es, err := c.st.List(c.ctx, keyProcs)
	if err != nil {
		return // the store is unreachable: the renewal said so
	}
	live := set{}
	for _, e := range es {
		live.add(strings.TrimPrefix(e.Key, keyProcs))
	}
	var gone []string
	c.cmu.Lock()
	for pid := range c.procs {
		if _, ok := live[pid]; !ok {
			gone = append(gone, pid)
			delete(c.procs, pid)
		}
	}
	c.cmu.Unlock()
	for _, pid := range gone {
		c.procGone(pid)
	}
}

// reincarnate: this process's liveness record expired, so the others may
// be removing its entries. It continues under a new id and writes every
// user it holds again; its entries under the old id are reaped like a
// dead process's.
func (c *Chat) reincarnate(old string) {
	if err := c.register(c.ctx); err != nil {
		if c.ctx.Err() == nil {
			c.log.Error("re-registering the chat process failed; retrying", "error", err)
		}
		return
	}
	c.mu.Lock()
	c.dead[old] = true
	users := keysOf(c.byUser)
	for u := range c.mine {
		users.add(u)
	}
	pid := c.pid
	c.mu.Unlock()
	c.log.Warn("this chat process's liveness record expired; continuing under a new id", "old", old, "pid", pid)
	c.work.sync(sorted(users)...)
}

// presenceNotes builds event (is_online or is_offline) about user for each
// group they belong to (from the cache): one on chat:group:<g> per group,
// which every subscriber of the group's channel gets.
func (c *Chat) presenceNotes(user, event string, obj json.RawMessage) []sdk.Notification {
	var out []sdk.Notification
	for _, g := range c.groupsOf(user) {
		out = append(out, sdk.Notification{Channel: prefixGroup + g, Event: event,
			ObjectType: "user", ObjectName: "user", Object: obj})
	}
	return out
}

// userRef is the user object built when no backend reported one.
type userRef struct {
	ID   any    `json:"id"`
	Nick string `json:"nick,omitempty"`
}

// userObject is the object of is_online: the user object a backend last
// reported through objectChanged, verbatim, or else {id, nick} with the
// nick from the token's "nick" claim (omitted without one).
func (c *Chat) userObject(ctx context.Context, user, nick string) (json.RawMessage, error) {
	e, err := c.st.Get(ctx, userKey(user))
	if err == nil {
		return e.Value, nil
	}
	if !isNotFound(err) {
		return nil, fmt.Errorf("read %s: %w", userKey(user), err)
	}
	b, _ := json.Marshal(userRef{ID: jsonID(user), Nick: nick})
	return b, nil
}

// offlineObject is the object of is_offline: the reported user object if
// any, else the one is_online announced.
func (c *Chat) offlineObject(ctx context.Context, user string, announced json.RawMessage) (json.RawMessage, error) {
	e, err := c.st.Get(ctx, userKey(user))
	if err == nil {
		return e.Value, nil
	}
	if !isNotFound(err) {
		return nil, fmt.Errorf("read %s: %w", userKey(user), err)
	}
	if len(announced) > 0 {
		return announced, nil
	}
	b, _ := json.Marshal(userRef{ID: jsonID(user)})
	return b, nil
}

// someNick is the nick claim of the user's first connection (by id) on
// this node; c.mu is held.
func (c *Chat) someNick(user string) string {
	for _, id := range sorted(c.byUser[user]) {
		if n := c.conns[id].nick; n != "" {
			return n
		}
	}
	return ""
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("chat: marshal %T: %v", v, err)) // only the plugin's own types
	}
	return b
}

func sorted(s set) []string {
	out := make([]string, 0, len(s))
	for k := range s {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func keysOf[V any](m map[string]V) set {
	s := make(set, len(m))
	for k := range m {
		s[k] = struct{}{}
	}
	return s
}
