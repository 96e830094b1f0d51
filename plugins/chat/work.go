package main

import (
	"context"
	"hash/fnv"
	"sync"
)

// presenceWorkers is how many goroutines do the presence work, each for
// its share of the users (by a hash of the id), so that a burst of
// connections (clients of a dead node reconnecting here) is not one State
// round trip after another; one user's work stays in order on one of them.
const presenceWorkers = 4

// workers are the queues of the presence work, one per worker goroutine.
type workers struct {
	qs []*workQueue
}

func newWorkers(n int) *workers {
	w := &workers{qs: make([]*workQueue, n)}
	for i := range w.qs {
		w.qs[i] = newWorkQueue()
	}
	return w
}

func (w *workers) shard(key string) *workQueue {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return w.qs[h.Sum32()%uint32(len(w.qs))]
}

// sync asks for each user's presence to be reconciled, in the order given
// per worker.
func (w *workers) sync(users ...string) {
	for _, u := range users {
		w.shard(u).sync(u)
	}
}

func (w *workers) checkSub(conn, group, user string) { w.shard(user).checkSub(conn, group, user) }
func (w *workers) reapDead()                         { w.qs[0].reapDead() }
func (w *workers) renewNow()                         { w.qs[0].renewNow() }

func (w *workers) setPaused(p bool) {
	for _, q := range w.qs {
		q.setPaused(p)
	}
}

// waitIdle waits until every queue is idle at once (a job of one may queue
// work on another), or ctx ends; it reports whether it found work.
func (w *workers) waitIdle(ctx context.Context) bool {
	found := false
	for ctx.Err() == nil {
		busy := false
		for _, q := range w.qs {
			if q.waitIdle(ctx) {
				busy = true
			}
		}
		if !busy {
			return found
		}
		found = true
	}
	return found
}

func (w *workers) close() {
	for _, q := range w.qs {
		q.close()
	}
}

// workQueue is one worker's share of the presence work, done by one
// goroutine (worker) in the order it was asked for, off the paths that must not wait
// for the State: the host's event delivery (which times out and resyncs a
// slow plugin) and the Watch callbacks (which must return quickly).
//
// A user's presence is reconciled, not replayed: a job says "make user u's
// online/ record agree with what this process holds now", so many events
// of one user while a job waits collapse into one job. The queue holds at
// most one job per user of this node, one per subscription to check, and
// one reap (and a renewal per expiry of this process's liveness record seen):
// it is bounded by what this node holds.
type workQueue struct {
	mu      sync.Mutex
	cond    *sync.Cond
	jobs    []job
	users   set // users with a sync job queued
	reap    bool
	paused  bool // a replay is being rebuilt: presence waits
	busy    bool
	closed  bool
	changed chan struct{} // closed and replaced when the queue empties or pauses
}

type jobKind int

const (
	jobSync jobKind = iota
	jobCheckSub
	jobReap
	jobRenew
)

type job struct {
	kind          jobKind
	user          string
	conn, channel string // jobCheckSub
	group         string // jobCheckSub
}

func newWorkQueue() *workQueue {
	q := &workQueue{users: set{}, changed: make(chan struct{})}
	q.cond = sync.NewCond(&q.mu)
	return q
}

// sync asks for user's presence to be reconciled.
func (q *workQueue) sync(users ...string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, u := range users {
		if q.users.add(u) {
			q.jobs = append(q.jobs, job{kind: jobSync, user: u})
		}
	}
	q.cond.Broadcast()
}

// checkSub asks for conn's subscription to a group channel to be checked
// against the State (and ended if the user is no participant).
func (q *workQueue) checkSub(conn, group, user string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.jobs = append(q.jobs, job{kind: jobCheckSub, conn: conn, channel: prefixGroup + group, group: group, user: user})
	q.cond.Broadcast()
}

// reapDead asks for the online/ records of dead processes to be cleaned.
func (q *workQueue) reapDead() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.reap {
		q.reap = true
		q.jobs = append(q.jobs, job{kind: jobReap})
	}
	q.cond.Broadcast()
}

// renewNow asks for the liveness record to be renewed at once (this
// process saw it expire).
func (q *workQueue) renewNow() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.jobs = append(q.jobs, job{kind: jobRenew})
	q.cond.Broadcast()
}

func (q *workQueue) setPaused(p bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.paused = p
	q.cond.Broadcast()
	q.signal()
}

// signal wakes waitIdle; q.mu is held.
func (q *workQueue) signal() {
	close(q.changed)
	q.changed = make(chan struct{})
}

// next blocks for the next job; ok is false once the queue is closed.
func (q *workQueue) next() (job, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.busy = false
	if len(q.jobs) == 0 || q.paused {
		q.signal()
	}
	for !q.closed && (len(q.jobs) == 0 || q.paused) {
		q.cond.Wait()
	}
	if q.closed {
		return job{}, false
	}
	j := q.jobs[0]
	q.jobs[0] = job{}
	q.jobs = q.jobs[1:]
	switch j.kind {
	case jobSync:
		delete(q.users, j.user)
	case jobReap:
		q.reap = false
	}
	q.busy = true
	return j, true
}

// waitIdle waits until nothing is queued or running (or the queue is
// paused, when nothing can run), or ctx ends. It reports whether it found
// work to wait for.
func (q *workQueue) waitIdle(ctx context.Context) bool {
	waited := false
	for {
		q.mu.Lock()
		idle := q.closed || q.paused || (len(q.jobs) == 0 && !q.busy)
		ch := q.changed
		q.mu.Unlock()
		if idle {
			return waited
		}
		waited = true
		select {
		case <-ch:
		case <-ctx.Done():
			return waited
		}
	}
}

func (q *workQueue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	q.cond.Broadcast()
	q.signal()
}
