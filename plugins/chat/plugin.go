package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/heraldhq/herald/sdk"
)

const (
	version       = "1.0.0"
	prefixGroup   = "chat:group:"
	prefixUser    = "chat:user:"
	emitTimeout   = 10 * time.Second
	defaultWindow = 3 * time.Second
	// replaySettle ends a replay of the host's connections when no replayed
	// event came for this long and no live one came at all (the protocol has
	// no end-of-replay marker; a live event ends it at once).
	replaySettle       = time.Second
	defaultLivenessTTL = 10 * time.Second
	// watchRetry is the pause before a failed Watch of the state is
	// started again (it begins with a reload, so nothing is missed).
	watchRetry = time.Second
)

// config is the plugin's `config` block.
type config struct {
	// DataDir is where versions before sdk.State kept chat.db; optional.
	// When it is given and chat.db is still there, the plugin refuses to
	// start: this version does not read that file, and starting without
	// its memberships would lock their participants out silently. The
	// state itself is Herald's (its `state` block on one node, NATS in a
	// cluster).
	DataDir string `mapstructure:"data_dir"`
	// EnteringWindow: after an `entering` for a user in a group, further
	// drafts there within the window emit nothing. "0s" emits on every draft.
	EnteringWindow time.Duration `mapstructure:"entering_window"`
	// LivenessTTL: how long a chat process that stopped renewing its
	// liveness record (killed, or its node died) still counts as holding
	// its users' connections; then the others announce is_offline for those
	// who had no connection elsewhere. Renewed every third of it.
	LivenessTTL time.Duration `mapstructure:"liveness_ttl"`
}

// Validate reports every bad key, each at its key. It also looks for an
// earlier version's chat.db in data_dir (in a dry run too: herald validate
// must refuse what serve would).
func (c *config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, &sdk.ConfigError{Key: key, Message: fmt.Sprintf(format, args...)})
	}
	if c.EnteringWindow < 0 {
		bad("entering_window", "must not be negative, got %v", c.EnteringWindow)
	} else if c.EnteringWindow > time.Hour {
		bad("entering_window", "must be at most 1h, got %v", c.EnteringWindow)
	}
	// A State TTL is at least a second; renewing every third of it must
	// leave a second's slack.
	if c.LivenessTTL < 3*time.Second || c.LivenessTTL > 10*time.Minute {
		bad("liveness_ttl", "must be from 3s to 10m, got %v", c.LivenessTTL)
	}
	if c.DataDir != "" {
		old := filepath.Join(c.DataDir, "chat.db")
		if _, err := os.Stat(old); err == nil {
			bad("data_dir", "%s holds the memberships of an earlier chat plugin, which this version does not read (it keeps them in Herald's plugin state): record them again with addMember (and user objects with objectChanged), then remove the file", old)
		}
	}
	return errors.Join(errs...)
}

type set map[string]struct{}

func (s set) add(k string) bool {
	if _, ok := s[k]; ok {
		return false
	}
	s[k] = struct{}{}
	return true
}

// conn is one live connection of this node, as the host told this process.
type conn struct {
	user string
	nick string // the token's "nick" claim, if any
	subs set    // the chat channels it is subscribed to
}

// Chat is the plugin. Membership, user objects and presence are shared
// through the State (store.go); this process keeps in memory only its own
// node's connections and caches of the shared state that Watches keep
// fresh.
type Chat struct {
	cfg     config
	st      sdk.State
	host    sdk.Host
	log     hclog.Logger
	now     func() time.Time
	settle  time.Duration
	stateOf func(sdk.Host) (sdk.State, error) // sdk.StateOf; tests give a fake
	newPID  func() string
	ctx     context.Context // ends at Drain: the goroutines below
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	work    *workers
	loaded  chan struct{} // closed once the mirrors are first loaded

	// cmu guards the caches of shared state.
	cmu      sync.Mutex
	memb     *memberCache
	presence *presenceCache
	procs    set // live process ids (procs/ keys)

	renewMu sync.Mutex // one renewal of the liveness record at a time

	// seenRev is the highest revision the mirrors hold (see caughtUp).
	seenMu  sync.Mutex
	seenRev uint64
	seenCh  chan struct{} // closed and replaced when seenRev grows

	mu        sync.Mutex
	pid       string               // this process's current id (see liveness)
	procRev   uint64               // revision of procs/<pid> last written
	dead      map[string]bool      // process ids known dead, to be reaped
	conns     map[string]*conn     // this node's connections, by id
	byUser    map[string]set       // user -> this node's connection ids
	mine      set                  // users whose online/ record holds this pid
	failed    set                  // users whose sync failed: retried at the next renewal
	removing  map[string]int       // members/ keys a removeMember of this process is applying
	entering  map[string]time.Time // "<group>\x00<user>" -> last entering this process saw
	resyncing bool                 // between a Reset and the end of the host's replay
	resyncGen int
	settleT   *time.Timer
	closed    bool
}

// New returns an unconfigured plugin.
func New() *Chat {
	return &Chat{now: time.Now, settle: replaySettle, stateOf: sdk.StateOf, newPID: randomPID}
}

func (c *Chat) Manifest() sdk.Manifest {
	return sdk.Manifest{
		Name:     "chat",
		Version:  version,
		Prefixes: []string{"chat"},
		Methods: []sdk.Method{
			{Name: "addMember", BackendOnly: true, Handler: c.addMember},
			{Name: "removeMember", BackendOnly: true, Handler: c.removeMember},
			{Name: "members", BackendOnly: true, Handler: c.members},
			{Name: "objectChanged", BackendOnly: true, Handler: c.objectChanged},
			{Name: "saveDraft", Handler: c.saveDraft},
		},
	}
}

var (
	_ sdk.Configurer   = (*Chat)(nil)
	_ sdk.Authorizer   = (*Chat)(nil)
	_ sdk.EventHandler = (*Chat)(nil)
	_ sdk.Drainer      = (*Chat)(nil)
)

// Configure decodes the config block, registers this process as live, and
// loads the caches of membership and presence; in a dry run it touches
// nothing.
func (c *Chat) Configure(ctx context.Context, h sdk.Host, raw sdk.Config) error {
	cfg := config{EnteringWindow: defaultWindow, LivenessTTL: defaultLivenessTTL}
	if err := raw.Decode(&cfg); err != nil {
		return sdk.InvalidParams(err.Error(), nil)
	}
	if raw.DryRun() {
		return nil // herald validate: the config is checked; open nothing
	}
	st, err := c.stateOf(h)
	if err != nil {
		return fmt.Errorf("chat keeps membership and presence in Herald's State: %w", err)
	}
	c.cfg, c.st, c.host, c.log = cfg, st, h, h.Logger()
	c.memb, c.presence, c.procs = newMemberCache(), &presenceCache{recs: map[string]presenceRev{}}, set{}
	c.conns, c.byUser, c.mine, c.failed = map[string]*conn{}, map[string]set{}, set{}, set{}
	c.dead, c.removing, c.entering = map[string]bool{}, map[string]int{}, map[string]time.Time{}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.work = newWorkers(presenceWorkers)

	if err := c.register(ctx); err != nil {
		c.cancel()
		return err
	}
	// Until the host's replay of its connections settles, this process
	// does not know whom this node holds: presence work waits (the host
	// starts a plugin with a Reset and a replay; a live event or a quiet
	// spell ends it).
	c.startResync()

	c.loaded = make(chan struct{})
	c.seenCh = make(chan struct{})
	c.wg.Add(2 + len(c.work.qs))
	go c.watch()
	go c.liveness()
	for _, q := range c.work.qs {
		go c.worker(q)
	}
	select {
	case <-c.loaded:
	case <-ctx.Done():
		c.stop()
		return fmt.Errorf("loading the chat state: %w", ctx.Err())
	}
	c.cmu.Lock()
	groups := len(c.memb.groups)
	c.cmu.Unlock()
	c.log.Info("chat state loaded", "groups", groups, "pid", c.pid,
		"entering_window", cfg.EnteringWindow.String(), "liveness_ttl", cfg.LivenessTTL.String())
	return nil
}

// Drain finishes the queued presence work (bounded by ctx), then stops the
// goroutines. It leaves this process's online/ entries and liveness record
// to expire: after a plugin restart the next process takes the node's
// connections over from the host's replay, and the users stay online
// without an is_offline/is_online flap.
func (c *Chat) Drain(ctx context.Context) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	if c.settleT != nil {
		c.settleT.Stop()
	}
	c.mu.Unlock()
	if c.work == nil {
		return nil // never configured (or a dry run)
	}
	c.work.waitIdle(ctx)
	c.stop()
	return nil
}

// stop ends every goroutine of the plugin and waits for them.
func (c *Chat) stop() {
	c.cancel()
	c.work.close()
	c.wg.Wait()
}

// Authorize: chat:group:<g> for g's participants, chat:user:<u> for u.
func (c *Chat) Authorize(ctx context.Context, caller sdk.Caller, channels []string) ([]sdk.Refusal, error) {
	var refused []sdk.Refusal
	for _, ch := range channels {
		reason, err := c.refusal(ctx, caller.UserID, ch)
		if err != nil {
			return nil, err
		}
		if reason != "" {
			r := sdk.Refuse(ch, reason)
			switch {
			case !strings.HasPrefix(ch, prefixGroup) && !strings.HasPrefix(ch, prefixUser):
				r.Code = sdk.CodeUnknownNamespace
			case !validID(strings.TrimPrefix(strings.TrimPrefix(ch, prefixGroup), prefixUser)):
				r.Code = sdk.CodeInvalidParams // no id could make it: malformed, not forbidden
			}
			refused = append(refused, r)
		}
	}
	return refused, nil
}

func (c *Chat) refusal(ctx context.Context, user, ch string) (string, error) {
	switch {
	case strings.HasPrefix(ch, prefixGroup):
		g := ch[len(prefixGroup):]
		if !validID(g) {
			return fmt.Sprintf("%q does not have the form chat:group:<group_id>: the id %s", ch, idRule), nil
		}
		if user == "" {
			return "chat channels need a signed-in user", nil
		}
		ok, err := c.isMember(ctx, g, user)
		if err != nil {
			return "", stateError(fmt.Sprintf("checking the membership of %s in group %s failed: ", user, g), err)
		}
		if !ok {
			return fmt.Sprintf("user %s is not a participant of group %s", user, g), nil
		}
	case strings.HasPrefix(ch, prefixUser):
		if !validID(ch[len(prefixUser):]) {
			return fmt.Sprintf("%q does not have the form chat:user:<user_id>: the id %s", ch, idRule), nil
		}
		if user == "" {
			return "chat channels need a signed-in user", nil
		}
		if ch[len(prefixUser):] != user {
			return fmt.Sprintf("chat:user channels are private: subscribe to chat:user:%s", user), nil
		}
	default:
		return "chat channels are chat:group:<group_id> and chat:user:<user_id>", nil
	}
	return "", nil
}

// isMember answers from the cache when it knows the membership, else from
// the State: a participant added through another node a moment ago may
// not have reached this node's watch yet. (A removal that has not reached
// the cache is caught when the subscription's event comes: see
// checkGroupSub.)
func (c *Chat) isMember(ctx context.Context, group, user string) (bool, error) {
	if !validID(group) || !validID(user) {
		return false, nil
	}
	c.cmu.Lock()
	ok := c.memb.has(group, user)
	c.cmu.Unlock()
	if ok {
		return true, nil
	}
	var m membership
	rev, found, err := getJSON(ctx, c.st, memberKey(group, user), &m)
	if err != nil || !found {
		return false, err
	}
	c.cmu.Lock()
	c.memb.put(memberKey(group, user), rev, membership{Group: group, User: user})
	c.cmu.Unlock()
	return true, nil
}

// coParticipants lists, sorted, the users other than user who share a
// group with them (from the cache).
func (c *Chat) coParticipants(user string) []string {
	c.cmu.Lock()
	defer c.cmu.Unlock()
	seen := set{}
	for g := range c.memb.userGroups[user] {
		for m := range c.memb.groups[g] {
			if m != user {
				seen.add(m)
			}
		}
	}
	return sorted(seen)
}

// groupsOf lists, sorted, the groups user belongs to (from the cache).
func (c *Chat) groupsOf(user string) []string {
	c.cmu.Lock()
	defer c.cmu.Unlock()
	return sorted(c.memb.userGroups[user])
}

// emit publishes an announcement, logging a failure (it has no caller to
// tell). While the host answers that publishing is unavailable (-32050:
// the broker is down, nothing was published) it tries again until ctx ends:
// the announcement was won once and is not won again.
func (c *Chat) emit(ctx context.Context, ns []sdk.Notification) {
	if len(ns) == 0 {
		return
	}
	err := emitRetrying(ctx, func(ctx context.Context) error {
		_, err := c.host.Emit(ctx, ns...)
		return err
	})
	if err != nil {
		c.log.Warn("emit failed", "notifications", len(ns), "event", ns[0].Event, "error", err)
	}
}

// emitRetrying calls emit until it succeeds, fails otherwise than with
// CodePluginUnavailable, or ctx ends, pausing 50ms, then twice as long each
// time up to a second.
func emitRetrying(ctx context.Context, emit func(context.Context) error) error {
	pause := 50 * time.Millisecond
	for {
		err := emit(ctx)
		var se *sdk.Error
		if err == nil || !errors.As(err, &se) || se.Code != sdk.CodePluginUnavailable {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(pause):
		}
		pause = min(2*pause, time.Second)
	}
}
