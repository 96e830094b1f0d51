package sdktest

import (
	"context"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/sdk"
	pluginpb "github.com/heraldhq/herald/sdk/proto"
)

// State is an in-memory store that answers a plugin's State calls
// (sdk.State) the way Herald's does: revisions, compare-and-set, TTL
// expiry and watches. Every Harness has its own; share one between several
// harnesses (State.Start) to run a plugin as its processes on several
// nodes of a cluster would, on one shared store.
type State struct {
	mu       sync.Mutex
	rev      uint64
	entries  map[string]*stateItem
	watchers map[*stateWatcher]struct{}
}

type stateItem struct {
	value []byte
	rev   uint64
	timer *time.Timer // TTL expiry, nil without
}

type stateWatcher struct {
	prefix string
	ch     chan *pluginpb.StateChange
}

// stateWatchQueue bounds a watcher's pending changes; past it the watcher
// gets a reload, as a real store's watch that fell behind does.
const stateWatchQueue = 1024

// NewState returns an empty store.
func NewState() *State {
	return &State{entries: map[string]*stateItem{}, watchers: map[*stateWatcher]struct{}{}}
}

// Start serves p like the package's Start, with s as its State.
func (s *State) Start(t testing.TB, p sdk.Plugin, cfg map[string]any, opts ...Option) *Harness {
	t.Helper()
	h, err := startWith(t, p, cfg, s, opts)
	if err != nil {
		t.Fatalf("sdktest: %v", err)
	}
	return h
}

// Entries returns a copy of what the store holds, by key.
func (s *State) Entries() map[string][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string][]byte, len(s.entries))
	for k, it := range s.entries {
		out[k] = append([]byte(nil), it.value...)
	}
	return out
}

// notifyLocked sends a change to the watchers of its key.
func (s *State) notifyLocked(c *pluginpb.StateChange) {
	for w := range s.watchers {
		if !strings.HasPrefix(c.GetEntry().GetKey(), w.prefix) {
			continue
		}
		select {
		case w.ch <- c:
		default:
			// Behind: drop what it has and tell it to reload.
			for len(w.ch) > 0 {
				<-w.ch
			}
			w.ch <- &pluginpb.StateChange{Entry: &pluginpb.StateEntry{}, Reload: true}
		}
	}
}

// setLocked writes key and tells the watchers.
func (s *State) setLocked(key string, value []byte, ttl time.Duration) uint64 {
	s.rev++
	if old := s.entries[key]; old != nil && old.timer != nil {
		old.timer.Stop()
	}
	it := &stateItem{value: append([]byte(nil), value...), rev: s.rev}
	if ttl > 0 {
		rev := s.rev
		it.timer = time.AfterFunc(ttl, func() { s.expire(key, rev) })
	}
	s.entries[key] = it
	s.notifyLocked(&pluginpb.StateChange{Entry: &pluginpb.StateEntry{Key: key, Value: it.value, Revision: it.rev}})
	return it.rev
}

func (s *State) deleteLocked(key string) {
	it := s.entries[key]
	if it == nil {
		return
	}
	if it.timer != nil {
		it.timer.Stop()
	}
	delete(s.entries, key)
	s.rev++
	s.notifyLocked(&pluginpb.StateChange{Entry: &pluginpb.StateEntry{Key: key, Revision: s.rev}, Deleted: true})
}

func (s *State) expire(key string, rev uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if it := s.entries[key]; it != nil && it.rev == rev {
		s.deleteLocked(key)
	}
}

func stateStatus(st pluginpb.StateStatus, msg string) *pluginpb.StateReply {
	return &pluginpb.StateReply{Status: st, Message: msg}
}

func (s *State) get(key string) *pluginpb.StateReply {
	if err := pluginpb.ValidStateKey(key); err != nil {
		return stateStatus(pluginpb.StateStatus_STATE_INVALID, err.Error())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	it := s.entries[key]
	if it == nil {
		return stateStatus(pluginpb.StateStatus_STATE_NOT_FOUND, "no such key")
	}
	return &pluginpb.StateReply{Entry: &pluginpb.StateEntry{Key: key, Value: append([]byte(nil), it.value...), Revision: it.rev}}
}

func (s *State) write(r *pluginpb.StateWriteRequest) *pluginpb.StateReply {
	key := r.GetKey()
	if err := pluginpb.ValidStateKey(key); err != nil {
		return stateStatus(pluginpb.StateStatus_STATE_INVALID, err.Error())
	}
	if len(r.GetValue()) > sdk.MaxStateValue {
		return stateStatus(pluginpb.StateStatus_STATE_TOO_LARGE, "value over MaxStateValue")
	}
	ttl := time.Duration(r.GetTtlMs()) * time.Millisecond
	if ttl < 0 || (ttl > 0 && ttl < time.Second) {
		return stateStatus(pluginpb.StateStatus_STATE_INVALID, "ttl under one second")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	it := s.entries[key]
	switch r.GetMode() {
	case pluginpb.StateWriteRequest_CREATE:
		if it != nil {
			return stateStatus(pluginpb.StateStatus_STATE_CONFLICT, "key exists")
		}
	case pluginpb.StateWriteRequest_UPDATE:
		if it == nil {
			return stateStatus(pluginpb.StateStatus_STATE_NOT_FOUND, "no such key")
		}
		if it.rev != r.GetRevision() {
			return stateStatus(pluginpb.StateStatus_STATE_CONFLICT, "revision moved on")
		}
	}
	rev := s.setLocked(key, r.GetValue(), ttl)
	return &pluginpb.StateReply{Entry: &pluginpb.StateEntry{Key: key, Revision: rev}}
}

func (s *State) delete(r *pluginpb.StateDeleteRequest) *pluginpb.StateReply {
	if err := pluginpb.ValidStateKey(r.GetKey()); err != nil {
		return stateStatus(pluginpb.StateStatus_STATE_INVALID, err.Error())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	it := s.entries[r.GetKey()]
	if it != nil && r.GetRevision() > 0 && it.rev != r.GetRevision() {
		return stateStatus(pluginpb.StateStatus_STATE_CONFLICT, "revision moved on")
	}
	s.deleteLocked(r.GetKey())
	return &pluginpb.StateReply{Entry: &pluginpb.StateEntry{Key: r.GetKey()}}
}

func (s *State) list(prefix string) ([]*pluginpb.StateEntry, *pluginpb.StateListChunk) {
	if err := pluginpb.ValidStatePrefix(prefix); err != nil {
		return nil, &pluginpb.StateListChunk{Status: pluginpb.StateStatus_STATE_INVALID, Message: err.Error()}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*pluginpb.StateEntry
	for k, it := range s.entries {
		if strings.HasPrefix(k, prefix) {
			out = append(out, &pluginpb.StateEntry{Key: k, Value: append([]byte(nil), it.value...), Revision: it.rev})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

func (s *State) watch(ctx context.Context, prefix string, send func(*pluginpb.StateChange) error) error {
	if err := pluginpb.ValidStatePrefix(prefix); err != nil {
		return send(&pluginpb.StateChange{Status: pluginpb.StateStatus_STATE_INVALID, Message: err.Error()})
	}
	w := &stateWatcher{prefix: prefix, ch: make(chan *pluginpb.StateChange, stateWatchQueue)}
	s.mu.Lock()
	s.watchers[w] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.watchers, w)
		s.mu.Unlock()
	}()
	if err := send(&pluginpb.StateChange{Entry: &pluginpb.StateEntry{}, Reload: true}); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case c := <-w.ch:
			if err := send(c); err != nil {
				return err
			}
		}
	}
}

// The recorder's State RPCs answer from its State.

func (r *recorder) StateGet(_ context.Context, req *pluginpb.StateGetRequest) (*pluginpb.StateReply, error) {
	return r.state.get(req.GetKey()), nil
}

func (r *recorder) StateWrite(_ context.Context, req *pluginpb.StateWriteRequest) (*pluginpb.StateReply, error) {
	return r.state.write(req), nil
}

func (r *recorder) StateDelete(_ context.Context, req *pluginpb.StateDeleteRequest) (*pluginpb.StateReply, error) {
	return r.state.delete(req), nil
}

func (r *recorder) StateList(req *pluginpb.StateListRequest, stream pluginpb.Host_StateListServer) error {
	entries, fail := r.state.list(req.GetPrefix())
	if fail != nil {
		return stream.Send(fail)
	}
	for len(entries) > 64 {
		if err := stream.Send(&pluginpb.StateListChunk{Entries: entries[:64]}); err != nil {
			return err
		}
		entries = entries[64:]
	}
	return stream.Send(&pluginpb.StateListChunk{Entries: entries})
}

func (r *recorder) StateWatch(req *pluginpb.StateWatchRequest, stream pluginpb.Host_StateWatchServer) error {
	return r.state.watch(stream.Context(), req.GetPrefix(), stream.Send)
}

// State returns the store that answers the plugin's State calls.
func (h *Harness) State() *State { return h.rec.state }
