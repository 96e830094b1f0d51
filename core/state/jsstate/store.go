package jsstate

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/core/state"
)

// Options name and bound one plugin's bucket. Zero values take the
// defaults.
type Options struct {
	// Bucket is the KV bucket (the host passes "herald_state_<plugin>").
	Bucket string
	// Replicas of the bucket's stream (default 1).
	Replicas int
	// MaxBytes bounds the bucket (state.max_bytes); JetStream counts each
	// stored message's subject and headers too. 0: unbounded.
	MaxBytes int64
	// MarkerTTL is how long the markers of deleted and expired keys stay
	// in the bucket, where watchers on every node see them (default 15m).
	MarkerTTL time.Duration
	// Timeout bounds one operation whose context allows longer, so that
	// an unreachable NATS is an error, never a hang (default 5s).
	Timeout time.Duration
}

const (
	defaultMarkerTTL = 15 * time.Minute
	defaultTimeout   = 5 * time.Second
)

// Store is one plugin's state in a JetStream KV bucket, shared by the
// plugin's processes on every node.
type Store struct {
	js   jetstream.JetStream
	nc   *nats.Conn
	kv   jetstream.KeyValue
	subj string // the subject prefix of the bucket's keys
	opts Options

	closed    chan struct{}
	closeOnce sync.Once
}

var _ state.Store = (*Store)(nil)

// Open binds to the plugin's bucket, creating it (or updating its replicas
// and bound) as Options say. The connection stays the caller's.
func Open(ctx context.Context, js jetstream.JetStream, opts Options) (*Store, error) {
	if opts.Bucket == "" {
		return nil, errors.New("open state bucket: no bucket name")
	}
	if opts.Replicas <= 0 {
		opts.Replicas = 1
	}
	if opts.MarkerTTL <= 0 {
		opts.MarkerTTL = defaultMarkerTTL
	}
	if opts.Timeout <= 0 {
		opts.Timeout = defaultTimeout
	}
	s := &Store{js: js, nc: js.Conn(), opts: opts, subj: "$KV." + opts.Bucket + ".", closed: make(chan struct{})}
	if err := s.connected(); err != nil {
		return nil, fmt.Errorf("open state bucket %s: %w", opts.Bucket, err)
	}
	octx, cancel := s.opContext(ctx)
	defer cancel()
	kv, err := js.CreateOrUpdateKeyValue(octx, jetstream.KeyValueConfig{
		Bucket:         opts.Bucket,
		History:        1,
		Replicas:       opts.Replicas,
		MaxBytes:       opts.MaxBytes,
		Storage:        jetstream.FileStorage,
		LimitMarkerTTL: opts.MarkerTTL,
	})
	if errors.Is(err, jetstream.ErrLimitMarkerTTLNotSupported) {
		return nil, fmt.Errorf("open state bucket %s: per-key TTLs need nats-server 2.11 or later: %w", opts.Bucket, err)
	}
	if err != nil {
		return nil, fmt.Errorf("open state bucket %s: %w", opts.Bucket, s.classify(octx, err))
	}
	s.kv = kv
	// A bucket just created on several servers answers reads only once its
	// leader is elected: wait for that (within the same bound), so that a
	// plugin's first calls do not meet "no responders".
	for {
		_, err := kv.Get(octx, probeKey)
		if err == nil || errors.Is(err, jetstream.ErrKeyNotFound) {
			return s, nil
		}
		if !errors.Is(err, nats.ErrNoResponders) && !errors.Is(err, jetstream.ErrNoStreamResponse) {
			return nil, fmt.Errorf("open state bucket %s: first read: %w", opts.Bucket, s.classify(octx, err))
		}
		select {
		case <-octx.Done():
			return nil, fmt.Errorf("open state bucket %s: no server answers for it yet: %w", opts.Bucket, state.ErrUnavailable)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// probeKey is read by Open to learn that the bucket answers. Reading it
// changes nothing; a plugin key that happens to encode the same is
// harmless (it is only read).
const probeKey = "_herald_open_probe"

// Close ends the store's watches (with state.ErrClosed). The bucket and its
// data stay; the connection is the caller's. Closing twice is harmless.
func (s *Store) Close() error {
	s.closeOnce.Do(func() { close(s.closed) })
	return nil
}

func (s *Store) isClosed() bool {
	select {
	case <-s.closed:
		return true
	default:
		return false
	}
}

// opContext bounds one operation by Options.Timeout.
func (s *Store) opContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.opts.Timeout)
}

// connected fails fast while the connection is down, instead of leaving a
// request in the reconnect buffer until its timeout.
func (s *Store) connected() error {
	if st := s.nc.Status(); st != nats.CONNECTED {
		return fmt.Errorf("nats connection %s: %w", st, state.ErrUnavailable)
	}
	return nil
}

// begin checks that an operation may start and bounds it.
func (s *Store) begin(ctx context.Context) (context.Context, context.CancelFunc, error) {
	if s.isClosed() {
		return nil, nil, state.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	if err := s.connected(); err != nil {
		return nil, nil, err
	}
	octx, cancel := s.opContext(ctx)
	return octx, cancel, nil
}

// Get returns the key's live entry.
func (s *Store) Get(ctx context.Context, key string) (state.Entry, error) {
	octx, cancel, err := s.begin(ctx)
	if err != nil {
		return state.Entry{}, fmt.Errorf("state get %q: %w", key, err)
	}
	defer cancel()
	e, err := s.get(octx, key)
	if err != nil {
		return state.Entry{}, fmt.Errorf("state get %q: %w", key, err)
	}
	return e, nil
}

func (s *Store) get(ctx context.Context, key string) (state.Entry, error) {
	e, err := s.kv.Get(ctx, encodeKey(key))
	if err != nil {
		return state.Entry{}, s.classify(ctx, err)
	}
	return state.Entry{Key: key, Value: e.Value(), Revision: e.Revision()}, nil
}

// Put writes the key whatever it holds.
func (s *Store) Put(ctx context.Context, key string, value []byte, ttl time.Duration) (uint64, error) {
	octx, cancel, err := s.beginWrite(ctx, value, ttl)
	if err != nil {
		return 0, fmt.Errorf("state put %q: %w", key, err)
	}
	defer cancel()
	rev, err := s.publish(octx, key, value, ttl)
	if err != nil {
		return 0, fmt.Errorf("state put %q: %w", key, err)
	}
	return rev, nil
}

// Create writes the key only if it does not exist, was deleted or expired.
func (s *Store) Create(ctx context.Context, key string, value []byte, ttl time.Duration) (uint64, error) {
	octx, cancel, err := s.beginWrite(ctx, value, ttl)
	if err != nil {
		return 0, fmt.Errorf("state create %q: %w", key, err)
	}
	defer cancel()
	var opts []jetstream.KVCreateOpt
	if ttl > 0 {
		opts = append(opts, jetstream.KeyTTL(wholeSeconds(ttl)))
	}
	rev, err := s.kv.Create(octx, encodeKey(key), value, opts...)
	if err != nil {
		return 0, fmt.Errorf("state create %q: %w", key, s.classify(octx, err))
	}
	return rev, nil
}

// Update writes the key only if it is live at revision rev. A delete or
// an expiry leaves a marker with a revision of its own; the Get first makes
// sure that a caller holding that revision (from a Deleted change) gets
// ErrNotFound, as from the bbolt store, not a write.
func (s *Store) Update(ctx context.Context, key string, value []byte, rev uint64, ttl time.Duration) (uint64, error) {
	octx, cancel, err := s.beginWrite(ctx, value, ttl)
	if err != nil {
		return 0, fmt.Errorf("state update %q: %w", key, err)
	}
	defer cancel()
	cur, err := s.get(octx, key)
	if err != nil {
		return 0, fmt.Errorf("state update %q: %w", key, err)
	}
	if cur.Revision != rev {
		return 0, fmt.Errorf("state update %q at %d: now at %d: %w", key, rev, cur.Revision, state.ErrConflict)
	}
	n, err := s.publish(octx, key, value, ttl, jetstream.WithExpectLastSequencePerSubject(rev))
	if errors.Is(err, state.ErrConflict) {
		err = s.conflictOrGone(octx, key, err)
	}
	if err != nil {
		return 0, fmt.Errorf("state update %q: %w", key, err)
	}
	return n, nil
}

// Delete removes the key (a purge: the bucket keeps only a marker, for
// MarkerTTL); rev > 0: only if it is live at that revision.
func (s *Store) Delete(ctx context.Context, key string, rev uint64) error {
	octx, cancel, err := s.begin(ctx)
	if err != nil {
		return fmt.Errorf("state delete %q: %w", key, err)
	}
	defer cancel()
	// A missing key is left alone: no marker, no change for watchers.
	cur, err := s.get(octx, key)
	if errors.Is(err, state.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("state delete %q: %w", key, err)
	}
	opts := []jetstream.KVDeleteOpt{jetstream.PurgeTTL(s.opts.MarkerTTL)}
	if rev > 0 {
		if cur.Revision != rev {
			return fmt.Errorf("state delete %q at %d: now at %d: %w", key, rev, cur.Revision, state.ErrConflict)
		}
		opts = append(opts, jetstream.LastRevision(rev))
	}
	err = s.classify(octx, s.kv.Purge(octx, encodeKey(key), opts...))
	if errors.Is(err, state.ErrConflict) {
		err = s.conflictOrGone(octx, key, err)
		if errors.Is(err, state.ErrNotFound) {
			return nil
		}
	}
	if err != nil {
		return fmt.Errorf("state delete %q: %w", key, err)
	}
	return nil
}

// conflictOrGone tells a key that moved on from one that is gone after a
// compare-and-set failed.
func (s *Store) conflictOrGone(ctx context.Context, key string, conflict error) error {
	_, err := s.get(ctx, key)
	if err == nil {
		return conflict
	}
	return err
}

func (s *Store) beginWrite(ctx context.Context, value []byte, ttl time.Duration) (context.Context, context.CancelFunc, error) {
	if len(value) > state.MaxValueBytes {
		return nil, nil, fmt.Errorf("value of %d bytes, over %d: %w", len(value), state.MaxValueBytes, state.ErrTooLarge)
	}
	if err := state.ValidTTL(ttl); err != nil {
		return nil, nil, err
	}
	return s.begin(ctx)
}

// publish writes the key's message; the KV API has no TTL on Put and
// Update, so it is the same message they send with a TTL header.
func (s *Store) publish(ctx context.Context, key string, value []byte, ttl time.Duration, opts ...jetstream.PublishOpt) (uint64, error) {
	if ttl > 0 {
		opts = append(opts, jetstream.WithMsgTTL(wholeSeconds(ttl)))
	}
	ack, err := s.js.PublishMsg(ctx, &nats.Msg{Subject: s.subj + encodeKey(key), Data: value}, opts...)
	if err != nil {
		return 0, s.classify(ctx, err)
	}
	return ack.Sequence, nil
}

// wholeSeconds rounds a TTL up: JetStream keeps whole seconds and a key
// must not expire early.
func wholeSeconds(ttl time.Duration) time.Duration {
	if r := ttl % time.Second; r != 0 {
		ttl += time.Second - r
	}
	return ttl
}

// List returns the live entries under prefix, in key order: one ordered
// consumer delivers the last message of every key under the prefix.
func (s *Store) List(ctx context.Context, prefix string) ([]state.Entry, error) {
	if err := state.ValidPrefix(prefix); err != nil {
		return nil, err
	}
	octx, cancel, err := s.begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("state list %q: %w", prefix, err)
	}
	defer cancel()
	for attempt := 1; ; attempt++ {
		out, err := s.listOnce(octx, prefix)
		if err != nil || len(out) > 0 || attempt == listAttempts {
			return out, err
		}
		// The watch ends at once when its consumer says nothing is pending,
		// and on a replicated bucket a consumer made right after writes
		// has said so with keys there (seen in CI on three servers): an
		// empty answer is checked against the stream's own count of the
		// prefix's subjects, and read again if that says there are some.
		// Deleted keys keep a subject (their marker), so a prefix of only
		// deleted keys costs the extra reads and still answers empty.
		if n, err := s.subjects(octx, prefix); err != nil || n == 0 {
			return out, nil
		}
	}
}

// listAttempts bounds List's reads of an empty answer (see List).
const listAttempts = 3

// subjects counts the subjects of prefix's keys in the bucket's stream, as
// its leader knows them.
func (s *Store) subjects(ctx context.Context, prefix string) (int, error) {
	st, err := s.js.Stream(ctx, "KV_"+s.opts.Bucket)
	if err != nil {
		return 0, err
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(s.subj+encodePrefix(prefix)))
	if err != nil {
		return 0, err
	}
	return len(info.State.Subjects), nil
}

// listOnce is one read of prefix's keys through a watch: every key's last
// value, until the watch says the initial values are all in.
func (s *Store) listOnce(octx context.Context, prefix string) ([]state.Entry, error) {
	w, err := s.kv.Watch(octx, encodePrefix(prefix), jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("state list %q: %w", prefix, s.classify(octx, err))
	}
	defer stopWatcher(w)
	var out []state.Entry
	for {
		select {
		case <-octx.Done():
			return nil, fmt.Errorf("state list %q: %w", prefix, s.classify(octx, octx.Err()))
		case e, ok := <-w.Updates():
			if !ok {
				return nil, fmt.Errorf("state list %q: the consumer closed: %w", prefix, state.ErrUnavailable)
			}
			if e == nil { // every key's last message is in
				sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
				return out, nil
			}
			key, err := decodeKey(e.Key())
			if err != nil {
				continue // not written through a Store
			}
			out = append(out, state.Entry{Key: key, Value: e.Value(), Revision: e.Revision()})
		}
	}
}

// stopWatcher stops a KV watcher and drains it: its callback blocks on a
// full channel, and the channel closes once the subscription has ended.
func stopWatcher(w jetstream.KeyWatcher) {
	_ = w.Stop()
	timer := time.NewTimer(defaultTimeout)
	defer timer.Stop()
	for {
		select {
		case _, ok := <-w.Updates():
			if !ok {
				return
			}
		case <-timer.C:
			return
		}
	}
}

// wrongLastSequence is JetStream's compare-and-set failure (10071, or
// 10164 on replicated streams).
func wrongLastSequence(err error) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	return apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant
}

// classify maps NATS errors to the state errors callers branch on, keeping
// NATS's text.
func (s *Store) classify(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	var apiErr *jetstream.APIError
	isAPI := errors.As(err, &apiErr)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return state.ErrNotFound
	case wrongLastSequence(err) || errors.Is(err, jetstream.ErrKeyExists):
		return fmt.Errorf("%w (%v)", state.ErrConflict, err)
	case errors.Is(err, nats.ErrMaxPayload):
		return fmt.Errorf("%w: the NATS server's max_payload is below the message (raise it to 2MB): %v", state.ErrTooLarge, err)
	case isAPI && (apiErr.ErrorCode == jsErrStoreFailed || apiErr.ErrorCode == jsErrMessageTooLarge) && tooLarge(apiErr.Description):
		if s.opts.MaxBytes > 0 && strings.Contains(strings.ToLower(apiErr.Description), "maximum bytes") {
			return &state.FullError{Max: s.opts.MaxBytes, Why: err.Error()} // the bucket is full
		}
		return fmt.Errorf("%w: %v", state.ErrTooLarge, err)
	case ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded):
		return err // the caller gave up
	case errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, nats.ErrTimeout),
		errors.Is(err, nats.ErrNoResponders),
		errors.Is(err, jetstream.ErrNoStreamResponse),
		errors.Is(err, nats.ErrConnectionClosed),
		errors.Is(err, nats.ErrConnectionReconnecting),
		errors.Is(err, nats.ErrConnectionDraining),
		errors.Is(err, nats.ErrDisconnected),
		errors.Is(err, jetstream.ErrJetStreamNotEnabled),
		isAPI && apiErr.Code == 503:
		return fmt.Errorf("%w: %w", state.ErrUnavailable, err)
	}
	return err
}

// JetStream error codes that say a write did not fit.
const (
	jsErrStoreFailed     = 10077 // "maximum bytes exceeded" and others
	jsErrMessageTooLarge = 10054 // "message size exceeds maximum allowed"
)

func tooLarge(description string) bool {
	d := strings.ToLower(description)
	for _, s := range []string{"maximum bytes", "exceeds maximum", "maximum messages"} {
		if strings.Contains(d, s) {
			return true
		}
	}
	return false
}
