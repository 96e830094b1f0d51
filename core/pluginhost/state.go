package pluginhost

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/heraldhq/herald/core/rpc"
	"github.com/heraldhq/herald/core/state"
	pluginpb "github.com/heraldhq/herald/sdk/proto"
)

// StateOpener opens a plugin's State store (sdk.State): a file on one
// node, a shared bucket in a cluster. The manager opens a plugin's store
// on its first State call, keeps it across the plugin's restarts, and
// closes it when the plugin is removed or the manager closes.
type StateOpener interface {
	OpenState(ctx context.Context, plugin string) (state.Store, error)
}

// ErrNoStateStore is what OpenState returns when the plugin can have no
// store (no state directory configured on one node).
var ErrNoStateStore = errors.New("no state store")

// stateListChunk bounds the entries of one StateList message; the
// message's bytes are bounded by the gRPC limit, values by MaxValueBytes.
const stateListChunk = 64

// stateStores are the plugins' open stores, by plugin name.
type stateStores struct {
	mu     sync.Mutex
	stores map[string]state.Store
}

// store returns the plugin's store, opening it on first use.
func (m *Manager) stateStore(ctx context.Context, plugin string) (state.Store, error) {
	if m.opts.State == nil {
		return nil, ErrNoStateStore
	}
	m.states.mu.Lock()
	defer m.states.mu.Unlock()
	if s := m.states.stores[plugin]; s != nil {
		return s, nil
	}
	s, err := m.opts.State.OpenState(ctx, plugin)
	if err != nil {
		return nil, err
	}
	if m.states.stores == nil {
		m.states.stores = map[string]state.Store{}
	}
	m.states.stores[plugin] = s
	return s, nil
}

// closeState closes the plugin's store, if open ("" : every store).
func (m *Manager) closeState(plugin string) error {
	m.states.mu.Lock()
	defer m.states.mu.Unlock()
	var errs []error
	for name, s := range m.states.stores {
		if plugin != "" && name != plugin {
			continue
		}
		if err := s.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close state of plugin %q: %w", name, err))
		}
		delete(m.states.stores, name)
	}
	return errors.Join(errs...)
}

// stateStatus maps a store error to the protocol's status.
func stateStatus(err error) (pluginpb.StateStatus, string) {
	switch {
	case err == nil:
		return pluginpb.StateStatus_STATE_OK, ""
	case errors.Is(err, state.ErrNotFound):
		return pluginpb.StateStatus_STATE_NOT_FOUND, err.Error()
	case errors.Is(err, state.ErrConflict):
		return pluginpb.StateStatus_STATE_CONFLICT, err.Error()
	case errors.As(err, new(*state.FullError)):
		// What to raise, in the config's words: the plugin's answer (and
		// its caller) carries this message.
		return pluginpb.StateStatus_STATE_TOO_LARGE, fmt.Sprintf("%s: %v; raise state.max_bytes in herald's config "+
			"(it bounds each plugin's State), or have the plugin delete entries", stateFull, err)
	case errors.Is(err, state.ErrTooLarge):
		return pluginpb.StateStatus_STATE_TOO_LARGE, err.Error()
	case errors.Is(err, ErrNoStateStore):
		return pluginpb.StateStatus_STATE_NO_STATE, err.Error()
	case errors.Is(err, errStateInvalid):
		return pluginpb.StateStatus_STATE_INVALID, err.Error()
	default:
		return pluginpb.StateStatus_STATE_UNAVAILABLE, err.Error()
	}
}

var errStateInvalid = errors.New("invalid")

// stateFull begins the message of a write refused because the plugin's
// State is full. Plugins pass it on in their answer (most as -32603, the
// code of any error they do not expect); a call's answer that carries it is
// -32005, limit exceeded (429 over HTTP), as the bound it names is.
const stateFull = "the plugin's State is full (state.max_bytes)"

// limitOfState turns an internal error that comes of a full State into
// -32005, its message kept. Other errors are returned as they are.
func limitOfState(e *rpc.Error) *rpc.Error {
	if e.Code == rpc.CodeInternal && strings.Contains(e.Message, stateFull) {
		c := *e
		c.Code = rpc.CodeLimitExceeded
		return &c
	}
	return e
}

func invalid(err error) error { return fmt.Errorf("%w: %v", errStateInvalid, err) }

func stateReply(e state.Entry, err error) *pluginpb.StateReply {
	st, msg := stateStatus(err)
	r := &pluginpb.StateReply{Status: st, Message: msg}
	if err == nil {
		r.Entry = &pluginpb.StateEntry{Key: e.Key, Value: e.Value, Revision: e.Revision}
	}
	return r
}

// StateGet implements the plugin's State.Get.
func (h *hostService) StateGet(ctx context.Context, r *pluginpb.StateGetRequest) (*pluginpb.StateReply, error) {
	if err := state.ValidKey(r.GetKey()); err != nil {
		return stateReply(state.Entry{}, invalid(err)), nil
	}
	s, err := h.m.stateStore(ctx, h.plugin)
	if err != nil {
		return stateReply(state.Entry{}, err), nil
	}
	e, err := s.Get(ctx, r.GetKey())
	h.m.met.stateOps.WithLabelValues(h.plugin, "get").Inc()
	return stateReply(e, err), nil
}

// StateWrite implements the plugin's State.Put, Create and Update.
func (h *hostService) StateWrite(ctx context.Context, r *pluginpb.StateWriteRequest) (*pluginpb.StateReply, error) {
	key := r.GetKey()
	if err := state.ValidKey(key); err != nil {
		return stateReply(state.Entry{}, invalid(err)), nil
	}
	if len(r.GetValue()) > state.MaxValueBytes {
		return stateReply(state.Entry{}, fmt.Errorf("%w: value of %q is %d bytes, over %d", state.ErrTooLarge, key, len(r.GetValue()), state.MaxValueBytes)), nil
	}
	ttl := time.Duration(r.GetTtlMs()) * time.Millisecond
	if ttl < 0 || (ttl > 0 && ttl < time.Second) {
		return stateReply(state.Entry{}, invalid(fmt.Errorf("ttl %v of %q: at least 1s, or 0 for none", ttl, key))), nil
	}
	s, err := h.m.stateStore(ctx, h.plugin)
	if err != nil {
		return stateReply(state.Entry{}, err), nil
	}
	var rev uint64
	op := "put"
	switch r.GetMode() {
	case pluginpb.StateWriteRequest_CREATE:
		op = "create"
		rev, err = s.Create(ctx, key, r.GetValue(), ttl)
	case pluginpb.StateWriteRequest_UPDATE:
		op = "update"
		rev, err = s.Update(ctx, key, r.GetValue(), r.GetRevision(), ttl)
	default:
		rev, err = s.Put(ctx, key, r.GetValue(), ttl)
	}
	h.m.met.stateOps.WithLabelValues(h.plugin, op).Inc()
	if errors.Is(err, state.ErrConflict) {
		h.m.met.stateConflicts.WithLabelValues(h.plugin).Inc()
	}
	return stateReply(state.Entry{Key: key, Revision: rev}, err), nil
}

// StateDelete implements the plugin's State.Delete.
func (h *hostService) StateDelete(ctx context.Context, r *pluginpb.StateDeleteRequest) (*pluginpb.StateReply, error) {
	if err := state.ValidKey(r.GetKey()); err != nil {
		return stateReply(state.Entry{}, invalid(err)), nil
	}
	s, err := h.m.stateStore(ctx, h.plugin)
	if err != nil {
		return stateReply(state.Entry{}, err), nil
	}
	err = s.Delete(ctx, r.GetKey(), r.GetRevision())
	h.m.met.stateOps.WithLabelValues(h.plugin, "delete").Inc()
	if errors.Is(err, state.ErrConflict) {
		h.m.met.stateConflicts.WithLabelValues(h.plugin).Inc()
	}
	return stateReply(state.Entry{Key: r.GetKey()}, err), nil
}

// StateList implements the plugin's State.List, in chunks.
func (h *hostService) StateList(r *pluginpb.StateListRequest, stream pluginpb.Host_StateListServer) error {
	ctx := stream.Context()
	fail := func(err error) error {
		st, msg := stateStatus(err)
		return stream.Send(&pluginpb.StateListChunk{Status: st, Message: msg})
	}
	if err := state.ValidPrefix(r.GetPrefix()); err != nil {
		return fail(invalid(err))
	}
	s, err := h.m.stateStore(ctx, h.plugin)
	if err != nil {
		return fail(err)
	}
	entries, err := s.List(ctx, r.GetPrefix())
	h.m.met.stateOps.WithLabelValues(h.plugin, "list").Inc()
	if err != nil {
		return fail(err)
	}
	chunk := &pluginpb.StateListChunk{}
	size := 0
	for _, e := range entries {
		n := len(e.Key) + len(e.Value) + 32
		if len(chunk.Entries) > 0 && (len(chunk.Entries) >= stateListChunk || size+n > h.m.opts.MaxMessageBytes/2) {
			if err := stream.Send(chunk); err != nil {
				return err
			}
			chunk, size = &pluginpb.StateListChunk{}, 0
		}
		chunk.Entries = append(chunk.Entries, &pluginpb.StateEntry{Key: e.Key, Value: e.Value, Revision: e.Revision})
		size += n
	}
	// The last chunk (possibly empty) ends the list.
	return stream.Send(chunk)
}

// StateWatch implements the plugin's State.Watch: the store's changes, in
// order, sent as they come. A plugin that does not read them fast enough
// makes the store's watch fall behind, which it reports with a reset.
func (h *hostService) StateWatch(r *pluginpb.StateWatchRequest, stream pluginpb.Host_StateWatchServer) error {
	ctx := stream.Context()
	fail := func(err error) error {
		st, msg := stateStatus(err)
		return stream.Send(&pluginpb.StateChange{Status: st, Message: msg})
	}
	if err := state.ValidPrefix(r.GetPrefix()); err != nil {
		return fail(invalid(err))
	}
	s, err := h.m.stateStore(ctx, h.plugin)
	if err != nil {
		return fail(err)
	}
	h.m.met.stateOps.WithLabelValues(h.plugin, "watch").Inc()
	var sendErr error
	err = s.Watch(ctx, r.GetPrefix(), func(c state.Change) {
		if sendErr != nil {
			return
		}
		sendErr = stream.Send(&pluginpb.StateChange{
			Entry:   &pluginpb.StateEntry{Key: c.Key, Value: c.Value, Revision: c.Revision},
			Deleted: c.Deleted, Reload: c.Reset,
		})
	})
	if sendErr != nil || ctx.Err() != nil {
		return sendErr
	}
	return fail(err)
}
