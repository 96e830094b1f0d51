package natsbroker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/core/broker"
)

// Options configure the broker. Zero values take the documented defaults.
type Options struct {
	// Replicas is the stream's replica count (default 1; 3 on a 3-server
	// NATS cluster). A publish is answered once that many servers hold it.
	Replicas int
	// HistorySize is how many publications each channel keeps (history.size).
	// The stream keeps at least one per channel whatever it is, so that the
	// channel's seq survives; with 0, History recovers nothing.
	HistorySize int
	// HistoryTTL is how long a publication is kept (history.ttl; 0: no limit).
	HistoryTTL time.Duration
	// MaxBytes bounds the stream (0: no bound). A full stream refuses new
	// publications (ErrFull) rather than dropping channels' history.
	MaxBytes int64
	// Stream is the JetStream stream's name (default "HERALD").
	Stream string
	// SubjectPrefix starts every subject the broker uses (default "herald").
	SubjectPrefix string
	// DuplicateWindow is how long a Notification.MsgID is remembered
	// (default: HistoryTTL, else JetStream's default of two minutes).
	DuplicateWindow time.Duration
	// Logger receives what the broker has to say (default: none).
	Logger hclog.Logger

	// PublishTimeout bounds one publish attempt, and so how long Publish
	// can take while NATS does not answer (default 5s).
	PublishTimeout time.Duration
	// TailCheckDelay is how long after a Watch the broker reads the last
	// message of the channels watched meanwhile, to hand over what was
	// placed before the interest reached the stream (default 50ms).
	TailCheckDelay time.Duration
	// Dispatchers is the number of goroutines that hand live publications
	// to the Handler, sharded by channel (default 1, which keeps
	// acceptance order across channels; more trade it for parallel fan-out).
	Dispatchers int
	// LiveBuffer bounds the live publications received and not yet
	// dispatched (default 65536). Past it NATS drops them and the broker
	// reads them again from the stream.
	LiveBuffer int
	// CacheChannels bounds the channels whose last position the broker
	// remembers for publishing (default 100000).
	CacheChannels int
	// ReadyCache is how long a Ready answer is reused (default 1s).
	ReadyCache time.Duration
}

func (o *Options) defaults() error {
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.Replicas < 0 || o.Replicas > 5 {
		return fmt.Errorf("replicas %d: must be 1 to 5", o.Replicas)
	}
	if o.HistorySize < 0 {
		return fmt.Errorf("history size %d: must not be negative", o.HistorySize)
	}
	if o.HistoryTTL < 0 || o.MaxBytes < 0 || o.DuplicateWindow < 0 {
		return errors.New("history ttl, max bytes and duplicate window must not be negative")
	}
	if o.Stream == "" {
		o.Stream = "HERALD"
	}
	if strings.ContainsAny(o.Stream, ". *>\t\r\n/\\") {
		return fmt.Errorf("stream name %q: no spaces, '.', '*', '>', '/' or '\\'", o.Stream)
	}
	if o.SubjectPrefix == "" {
		o.SubjectPrefix = "herald"
	}
	for _, tok := range strings.Split(o.SubjectPrefix, ".") {
		if tok == "" || strings.ContainsAny(tok, " *>\t\r\n") {
			return fmt.Errorf("subject prefix %q: tokens must be non-empty, without spaces or wildcards", o.SubjectPrefix)
		}
	}
	if o.DuplicateWindow == 0 {
		o.DuplicateWindow = o.HistoryTTL
	}
	if o.HistoryTTL > 0 && o.DuplicateWindow > o.HistoryTTL {
		return fmt.Errorf("duplicate window %s: must not exceed the history ttl %s", o.DuplicateWindow, o.HistoryTTL)
	}
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	if o.PublishTimeout <= 0 {
		o.PublishTimeout = 5 * time.Second
	}
	if o.TailCheckDelay <= 0 {
		o.TailCheckDelay = 50 * time.Millisecond
	}
	if o.Dispatchers <= 0 {
		o.Dispatchers = 1
	}
	if o.LiveBuffer <= 0 {
		o.LiveBuffer = 65536
	}
	if o.CacheChannels <= 0 {
		o.CacheChannels = 100000
	}
	if o.ReadyCache <= 0 {
		o.ReadyCache = time.Second
	}
	return nil
}

// maxBatch is JetStream's default bound on an atomic batch
// (jetstream.limits.max_batch_size on the server).
const maxBatch = 1000

// ErrFull means the stream reached its MaxBytes: nothing was published.
// It wraps broker.ErrUnavailable (HTTP 503, -32050): the caller may retry
// once old history ages out, or the operator raises the bound.
var ErrFull = fmt.Errorf("%w: the NATS stream is full (history.max_bytes)", broker.ErrUnavailable)

// Broker is a broker.Broker on a NATS JetStream stream, shared by every
// herald node. See the package documentation for the design.
type Broker struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	opts Options
	log  hclog.Logger
	ids  *broker.IDSource // the publications' ids

	chPrefix   string // "<prefix>.ch."
	livePrefix string // "<prefix>.live."
	directGet  string // "$JS.API.DIRECT.GET.<stream>"
	runPrefix  string // "<prefix>.run."
	runsGet    string // "$JS.API.DIRECT.GET.<stream>_RUNS"

	base    atomic.Pointer[string] // the stream's epoch base
	handler atomic.Pointer[handlerBox]

	statesMu sync.Mutex
	states   map[string]*chanState

	resp respMux

	watchMu sync.Mutex
	watched map[string]*watch
	live    chan *nats.Msg
	shards  []chan event

	tailMu      sync.Mutex
	tailPending map[string]struct{}
	tailKick    chan struct{}
	// reconnectRounds counts the tail checks still due after a reconnect.
	reconnectRounds atomic.Int32

	readyMu  sync.Mutex
	readyAt  time.Time
	readyErr error

	stats struct {
		published, conflicts, duplicates, gapFills, tailChecks atomic.Int64
	}

	prevReconnect nats.ConnHandler
	prevAsyncErr  nats.ErrHandler

	// life ends at Close: the broker's own reads (tail checks, gap
	// fills) end with it.
	life      context.Context
	endLife   context.CancelFunc
	isSetUp   atomic.Bool
	setupErr  atomic.Pointer[error]
	done      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// handlerBox is the Handler and, when it has one, its RunHandler, found
// once by SetHandler rather than on each publication.
type handlerBox struct {
	h   broker.Handler
	run broker.RunHandler
}

var (
	_ broker.Broker   = (*Broker)(nil)
	_ broker.Interest = (*Broker)(nil)
	_ broker.Checker  = (*Broker)(nil)
)

// New makes sure the stream exists with the options' configuration
// (creating it, or updating the fields the options govern while keeping
// the rest) and returns a broker on it. Every node calls it with the same
// options. The caller owns nc (give it nats.ReconnectBufSize(-1), so that
// nothing is buffered while NATS is unreachable, and
// nats.RetryOnFailedConnect(true) to start while it is) and closes it
// after Close.
//
// While NATS cannot be reached New still returns a broker: it answers
// ErrUnavailable (and Ready says why) until it could set the streams up,
// which it tries every ReadyCache. A stream that exists with settings it
// cannot change is an error.
func New(ctx context.Context, nc *nats.Conn, opts Options) (*Broker, error) {
	if err := opts.defaults(); err != nil {
		return nil, fmt.Errorf("nats broker: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("nats broker: jetstream: %w", err)
	}
	b := &Broker{
		nc: nc, js: js, opts: opts, log: opts.Logger, ids: broker.NewIDSource(),
		chPrefix:    opts.SubjectPrefix + ".ch.",
		livePrefix:  opts.SubjectPrefix + ".live.",
		directGet:   "$JS.API.DIRECT.GET." + opts.Stream,
		runPrefix:   opts.SubjectPrefix + ".run.",
		runsGet:     "$JS.API.DIRECT.GET." + opts.Stream + runsSuffix,
		states:      make(map[string]*chanState),
		watched:     make(map[string]*watch),
		live:        make(chan *nats.Msg, opts.LiveBuffer),
		tailPending: make(map[string]struct{}),
		tailKick:    make(chan struct{}, 1),
		done:        make(chan struct{}),
	}
	b.life, b.endLife = context.WithCancel(context.Background())
	if err := b.resp.start(nc); err != nil {
		b.endLife()
		return nil, fmt.Errorf("nats broker: subscribe for replies: %w", err)
	}
	setupErr := b.setup(ctx)
	if setupErr != nil && !errors.Is(setupErr, broker.ErrUnavailable) {
		b.endLife()
		b.resp.stop()
		return nil, setupErr
	}
	b.shards = make([]chan event, opts.Dispatchers)
	for i := range b.shards {
		b.shards[i] = make(chan event, min(opts.LiveBuffer, 1024))
		b.wg.Add(1)
		go b.dispatch(b.shards[i])
	}
	b.wg.Add(2)
	go b.route()
	go b.tailChecker()
	b.prevReconnect = nc.ReconnectHandler()
	b.prevAsyncErr = nc.ErrorHandler()
	nc.SetReconnectHandler(b.onReconnect)
	nc.SetErrorHandler(b.onAsyncError)
	if setupErr != nil {
		b.log.Warn("NATS JetStream is not reachable yet: publishes fail until it is", "error", setupErr)
		b.wg.Add(1)
		go b.setupLoop()
	}
	return b, nil
}

// setup makes sure both streams exist as the options say, and reads the
// epoch base. Until it has succeeded the broker answers ErrUnavailable.
func (b *Broker) setup(ctx context.Context) error {
	err := b.trySetup(ctx)
	if err != nil {
		b.setupErr.Store(&err)
		return err
	}
	b.isSetUp.Store(true)
	return nil
}

func (b *Broker) trySetup(ctx context.Context) error {
	if err := b.connected(); err != nil {
		return fmt.Errorf("nats broker: %w", err)
	}
	info, err := b.ensureStream(ctx, b.opts.Stream, b.streamConfig)
	if err != nil {
		return err
	}
	if _, err := b.ensureStream(ctx, b.opts.Stream+runsSuffix, b.runsConfig); err != nil {
		return err
	}
	b.setBase(info)
	// The reply subscription reaches the server before the first read.
	if err := b.nc.FlushTimeout(b.opts.PublishTimeout); err != nil {
		return fmt.Errorf("nats broker: flush: %w", unavailable(err))
	}
	return nil
}

// setupLoop tries the setup again every ReadyCache until it succeeds (NATS
// was not reachable when New ran), then checks every watched channel's
// tail.
func (b *Broker) setupLoop() {
	defer b.wg.Done()
	t := time.NewTicker(b.opts.ReadyCache)
	defer t.Stop()
	for {
		select {
		case <-b.done:
			return
		case <-t.C:
		}
		err := b.setup(b.life)
		if err == nil {
			b.log.Info("NATS JetStream is reachable: the broker is set up", "stream", b.opts.Stream)
			b.markAllTails()
			return
		}
		if !errors.Is(err, broker.ErrUnavailable) {
			b.log.Error("set up the NATS streams", "error", err)
		}
	}
}

// usable says why the broker cannot serve yet (nil: it can).
func (b *Broker) usable() error {
	if b.isSetUp.Load() {
		return nil
	}
	if errp := b.setupErr.Load(); errp != nil {
		return fmt.Errorf("%w: the NATS streams are not set up: %w", broker.ErrUnavailable, *errp)
	}
	return fmt.Errorf("%w: the NATS streams are not set up", broker.ErrUnavailable)
}

// runsSuffix names the runs stream after the notifications stream.
const runsSuffix = "_RUNS"

// streamConfig sets, on cfg, what the options govern of the
// notifications stream; the operator's other settings stay.
func (b *Broker) streamConfig(cfg jetstream.StreamConfig) jetstream.StreamConfig {
	o := b.opts
	cfg.Name = o.Stream
	cfg.Subjects = []string{b.chPrefix + ">"}
	cfg.Retention = jetstream.LimitsPolicy
	cfg.Replicas = o.Replicas
	cfg.MaxMsgsPerSubject = int64(max(o.HistorySize, 1))
	cfg.MaxAge = o.HistoryTTL
	cfg.MaxBytes = -1
	if o.MaxBytes > 0 {
		cfg.MaxBytes = o.MaxBytes
	}
	cfg.Discard = jetstream.DiscardNew
	cfg.DiscardNewPerSubject = false
	cfg.Duplicates = o.DuplicateWindow
	cfg.AllowDirect = true
	cfg.AllowAtomicPublish = true
	cfg.RePublish = &jetstream.RePublish{Source: b.chPrefix + ">", Destination: b.livePrefix + ">"}
	return cfg
}

// runsConfig is the runs stream's: one record per channel that ever
// started a run, kept whatever the history's age (see the package doc).
func (b *Broker) runsConfig(cfg jetstream.StreamConfig) jetstream.StreamConfig {
	cfg.Name = b.opts.Stream + runsSuffix
	cfg.Subjects = []string{b.runPrefix + ">"}
	cfg.Retention = jetstream.LimitsPolicy
	cfg.Replicas = b.opts.Replicas
	cfg.MaxMsgsPerSubject = 1
	cfg.MaxAge = 0
	cfg.Discard = jetstream.DiscardOld
	cfg.AllowDirect = true
	return cfg
}

// ensureStream creates the stream, or updates what the options govern of
// it, and returns its info.
func (b *Broker) ensureStream(ctx context.Context, name string, configure func(jetstream.StreamConfig) jetstream.StreamConfig) (*jetstream.StreamInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, b.opts.PublishTimeout)
	defer cancel()
	for attempt := 0; ; attempt++ {
		s, err := b.js.Stream(ctx, name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			s, err = b.js.CreateStream(ctx, configure(jetstream.StreamConfig{Storage: jetstream.FileStorage}))
			if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) && attempt == 0 {
				continue // another node created it meanwhile: update it below
			}
			if err != nil {
				return nil, fmt.Errorf("nats broker: create stream %s%s: %w", name, replicasHint(err, b.opts.Replicas), unavailable(err))
			}
			return s.CachedInfo(), nil
		}
		if err != nil {
			return nil, fmt.Errorf("nats broker: look up stream %s: %w", name, unavailable(err))
		}
		if s, err = b.js.UpdateStream(ctx, configure(s.CachedInfo().Config)); err != nil {
			return nil, fmt.Errorf("nats broker: update stream %s%s: %w", name, replicasHint(err, b.opts.Replicas), unavailable(err))
		}
		return s.CachedInfo(), nil
	}
}

// setBase derives the epoch base from the stream's creation time: every
// node reads the same, and a stream deleted and created again gives every
// channel a new epoch.
func (b *Broker) setBase(info *jetstream.StreamInfo) bool {
	base := strconv.FormatInt(info.Created.UnixNano(), 36)
	old := b.base.Swap(&base)
	return old != nil && *old != base
}

func (b *Broker) baseEpoch() string {
	if base := b.base.Load(); base != nil {
		return *base
	}
	return ""
}

// Stats counts what the broker did, for metrics and benchmarks.
type Stats struct {
	Published  int64 // notifications placed by this node
	Conflicts  int64 // publish attempts that lost a race for a channel's seq and went again
	Duplicates int64 // publishes answered with an earlier one's publications (MsgID)
	GapFills   int64 // reads of the stream to fill what a watched channel missed live
	TailChecks int64 // tail check requests (one per 256 channels)
	Watched    int   // channels watched now
}

// Stats reports the broker's counters.
func (b *Broker) Stats() Stats {
	return Stats{Published: b.stats.published.Load(), Conflicts: b.stats.conflicts.Load(),
		Duplicates: b.stats.duplicates.Load(), GapFills: b.stats.gapFills.Load(),
		TailChecks: b.stats.tailChecks.Load(), Watched: b.Watched()}
}

// SetHandler implements broker.Broker. A Handler that implements
// broker.RunHandler is told when a watched channel starts a new run.
func (b *Broker) SetHandler(h broker.Handler) {
	run, _ := h.(broker.RunHandler)
	b.handler.Store(&handlerBox{h: h, run: run})
}

// Ready implements broker.Checker: the connection is up and both streams
// can take a publication now, that is, each has a leader that reaches a
// majority of its servers (see quorum). The answer is reused for
// ReadyCache.
func (b *Broker) Ready() error {
	b.readyMu.Lock()
	defer b.readyMu.Unlock()
	if !b.readyAt.IsZero() && time.Since(b.readyAt) < b.opts.ReadyCache {
		return b.readyErr
	}
	b.readyErr = b.checkReady()
	b.readyAt = time.Now()
	return b.readyErr
}

func (b *Broker) checkReady() error {
	if err := b.usable(); err != nil {
		return err
	}
	if err := b.connected(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(b.life, b.opts.PublishTimeout)
	defer cancel()
	s, err := b.js.Stream(ctx, b.opts.Stream)
	if err != nil {
		return fmt.Errorf("nats stream %s: %w", b.opts.Stream, unavailable(err))
	}
	info := s.CachedInfo()
	if b.setBase(info) {
		// The stream was created again: what the broker remembers of
		// channels belongs to the old one.
		b.forgetStates()
		b.log.Warn("the NATS stream was created again: every channel starts a new epoch", "stream", b.opts.Stream)
	}
	if err := quorum(info); err != nil {
		return err
	}
	// A channel's first publication (and each new run) writes the runs
	// stream too; beyond three NATS servers its replicas may sit elsewhere.
	runs, err := b.js.Stream(ctx, b.opts.Stream+runsSuffix)
	if err != nil {
		return fmt.Errorf("nats stream %s: %w", b.opts.Stream+runsSuffix, unavailable(err))
	}
	return quorum(runs.CachedInfo())
}

// quorum says whether the stream whose info this is can take a publication
// now: JetStream places one once the stream's leader has it from a majority
// of the stream's servers (itself included).
//
// The info alone does not say so. A STREAM.INFO request is answered by
// the stream's leader; a leader cut off from the others goes on answering
// as the leader (with its replicas marked offline, or no longer current)
// until it notices it has lost its quorum, which takes NATS about twenty
// seconds while every publication times out; then, the stream having no
// leader, any of its servers still reachable answers from its own copy,
// naming none. (While a follower still believes in a leader that is gone,
// nobody answers, and the request times out.) So the leader must be
// named, and count, with the replicas it reports current and not offline,
// a majority. A replica is current when it has everything the leader
// committed and was heard from within ten seconds; one that stopped
// cleanly is offline at once, one that crashed stops being current within
// those ten seconds.
func quorum(info *jetstream.StreamInfo) error {
	ci := info.Cluster
	if ci == nil {
		// A server outside any cluster holds its streams alone.
		return nil
	}
	name := info.Config.Name
	servers := len(ci.Replicas)
	var offline, behind []string
	for _, p := range ci.Replicas {
		switch {
		case p.Offline:
			offline = append(offline, p.Name)
		case !p.Current:
			behind = append(behind, p.Name)
		}
	}
	if ci.Leader == "" {
		// A follower answered: it lists itself among the replicas, and no
		// other follower as current.
		why := "no quorum of its servers, or an election under way"
		if len(offline) > 0 {
			why = listed(offline, nil)
		}
		return fmt.Errorf("%w: NATS stream %s has no leader (%s); publishes fail until a majority of its %d servers elects one",
			broker.ErrUnavailable, name, why, servers)
	}
	servers++ // the leader
	if up := servers - len(offline) - len(behind); up <= servers/2 {
		return fmt.Errorf("%w: NATS stream %s has no quorum: its leader %s has %d of its %d servers (%s); publishes fail until a majority is back",
			broker.ErrUnavailable, name, ci.Leader, up, servers, listed(offline, behind))
	}
	return nil
}

// listed names the servers quorum found offline or not current, for its
// errors.
func listed(offline, behind []string) string {
	var s string
	if len(offline) > 0 {
		s += "; offline: " + strings.Join(offline, ", ")
	}
	if len(behind) > 0 {
		s += "; not current: " + strings.Join(behind, ", ")
	}
	return strings.TrimPrefix(s, "; ")
}

func (b *Broker) connected() error {
	if st := b.nc.Status(); st != nats.CONNECTED {
		return fmt.Errorf("%w: NATS connection is %s", broker.ErrUnavailable, st)
	}
	return nil
}

// unavailable wraps err with broker.ErrUnavailable when it says NATS or
// JetStream cannot be reached or has no quorum.
func unavailable(err error) error {
	if err == nil || errors.Is(err, broker.ErrUnavailable) {
		return err
	}
	var apiErr *jetstream.APIError
	switch {
	case errors.Is(err, nats.ErrNoResponders), errors.Is(err, nats.ErrTimeout),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrConnectionClosed),
		errors.Is(err, nats.ErrConnectionReconnecting), errors.Is(err, nats.ErrDisconnected),
		errors.Is(err, nats.ErrReconnectBufExceeded), errors.Is(err, jetstream.ErrNoStreamResponse),
		errors.Is(err, jetstream.ErrJetStreamNotEnabled):
		return fmt.Errorf("%w: %w", broker.ErrUnavailable, err)
	case errors.As(err, &apiErr) && (apiErr.Code == 503 || apiErr.ErrorCode == 10008 || apiErr.ErrorCode == 10023):
		return fmt.Errorf("%w: %w", broker.ErrUnavailable, err)
	}
	return err
}

// Close implements broker.Broker: it stops watching every channel and the
// broker's goroutines. It does not close the connection.
func (b *Broker) Close() error {
	b.closeOnce.Do(func() {
		close(b.done)
		b.endLife()
		b.nc.SetReconnectHandler(b.prevReconnect)
		b.nc.SetErrorHandler(b.prevAsyncErr)
		b.watchMu.Lock()
		for ch, w := range b.watched {
			w.end()
			if w.sub != nil {
				_ = w.sub.Unsubscribe()
			}
			delete(b.watched, ch)
		}
		b.watchMu.Unlock()
		b.wg.Wait()
		b.resp.stop()
	})
	return nil
}

// replicasHint names broker.replicas when NATS refused the stream for its
// replica count (more than a single server, or than the cluster, holds),
// which NATS words in its own terms.
func replicasHint(err error, replicas int) string {
	var apiErr *jetstream.APIError
	if replicas > 1 && errors.As(err, &apiErr) && strings.Contains(strings.ToLower(apiErr.Description), "replica") {
		return fmt.Sprintf(" with broker.replicas = %d (at most the number of NATS servers in the cluster; 1 for a single server)", replicas)
	}
	return ""
}
