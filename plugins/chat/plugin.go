package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
	replaySettle = time.Second
)

// config is the plugin's `config` block.
type config struct {
	// DataDir holds chat.db (membership, user objects, presence); required.
	DataDir string `mapstructure:"data_dir"`
	// EnteringWindow: after an `entering` for a user in a group, further
	// drafts there within the window emit nothing. "0s" emits on every draft.
	EnteringWindow time.Duration `mapstructure:"entering_window"`
}

func (c *config) Validate() error {
	if strings.TrimSpace(c.DataDir) == "" {
		return errors.New("data_dir is required (the directory that keeps chat.db)")
	}
	if c.EnteringWindow < 0 {
		return fmt.Errorf("entering_window must not be negative, got %v", c.EnteringWindow)
	}
	if c.EnteringWindow > time.Hour {
		return fmt.Errorf("entering_window must be at most 1h, got %v", c.EnteringWindow)
	}
	return nil
}

type set map[string]struct{}

func (s set) add(k string) bool {
	if _, ok := s[k]; ok {
		return false
	}
	s[k] = struct{}{}
	return true
}

// conn is one live connection the plugin learnt of from the host.
type conn struct {
	user string
	nick string // the token's "nick" claim, if any
	subs set    // the chat channels it is subscribed to
}

// Chat is the plugin. Membership and reported user objects live in memory
// and in the store; connections only in memory (the host replays them).
type Chat struct {
	cfg    config
	store  *store
	host   sdk.Host
	log    hclog.Logger
	now    func() time.Time
	settle time.Duration

	mu         sync.Mutex
	groups     map[string]set             // group -> its participants
	userGroups map[string]set             // user -> their groups
	users      map[string]json.RawMessage // user objects reported by objectChanged
	conns      map[string]*conn           // by connection id
	byUser     map[string]set             // user -> connection ids
	listeners  map[string]int             // user -> connections subscribed to chat:user:<user>
	online     map[string]json.RawMessage // users announced online -> the object announced
	entering   map[string]time.Time       // "<group>\x00<user>" -> last entering emitted

	// presMu orders presence changes with their emits, so that participants
	// see a user's is_online and is_offline in the order they happened.
	presMu    sync.Mutex
	resyncing bool // between a Reset and the end of the host's replay
	resyncGen int
	settleT   *time.Timer
	closed    bool
}

// New returns an unconfigured plugin.
func New() *Chat {
	return &Chat{now: time.Now, settle: replaySettle}
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

// Configure decodes the config block and loads the store into memory.
func (c *Chat) Configure(_ context.Context, h sdk.Host, raw sdk.Config) error {
	cfg := config{EnteringWindow: defaultWindow}
	if err := raw.Decode(&cfg); err != nil {
		return sdk.InvalidParams(err.Error(), nil)
	}
	if raw.DryRun() {
		return nil // herald validate: the config is checked; open nothing
	}
	st, err := openStore(cfg.DataDir)
	if err != nil {
		return err
	}
	c.cfg, c.store, c.host, c.log = cfg, st, h, h.Logger()
	c.groups, c.userGroups = map[string]set{}, map[string]set{}
	c.conns, c.byUser, c.listeners = map[string]*conn{}, map[string]set{}, map[string]int{}
	c.users, c.online, c.entering = map[string]json.RawMessage{}, map[string]json.RawMessage{}, map[string]time.Time{}
	if err := st.eachMember(c.addMemberLocked); err != nil {
		_ = st.close()
		return fmt.Errorf("load members: %w", err)
	}
	for bucket, dst := range map[string]map[string]json.RawMessage{string(bucketUsers): c.users, string(bucketOnline): c.online} {
		m, err := st.all([]byte(bucket))
		if err != nil {
			_ = st.close()
			return fmt.Errorf("load %s: %w", bucket, err)
		}
		for k, v := range m {
			dst[k] = v
		}
	}
	c.log.Info("chat store loaded", "dir", cfg.DataDir, "groups", len(c.groups), "users_online", len(c.online),
		"entering_window", cfg.EnteringWindow.String())
	return nil
}

// Drain stops the replay timer and closes the store.
func (c *Chat) Drain(context.Context) error {
	c.presMu.Lock()
	defer c.presMu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	if c.settleT != nil {
		c.settleT.Stop()
	}
	if c.store == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.store.close()
}

// Authorize: chat:group:<g> for g's participants, chat:user:<u> for u.
func (c *Chat) Authorize(_ context.Context, caller sdk.Caller, channels []string) ([]sdk.Refusal, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var refused []sdk.Refusal
	for _, ch := range channels {
		if reason := c.refusal(caller.UserID, ch); reason != "" {
			r := sdk.Refuse(ch, reason)
			if !strings.HasPrefix(ch, prefixGroup) && !strings.HasPrefix(ch, prefixUser) {
				r.Code = sdk.CodeUnknownNamespace
			}
			refused = append(refused, r)
		}
	}
	return refused, nil
}

func (c *Chat) refusal(user, ch string) string {
	switch {
	case strings.HasPrefix(ch, prefixGroup):
		g := ch[len(prefixGroup):]
		if user == "" {
			return "chat channels need a signed-in user"
		}
		if _, ok := c.groups[g][user]; !ok {
			return fmt.Sprintf("user %s is not a participant of group %s", user, g)
		}
	case strings.HasPrefix(ch, prefixUser):
		if user == "" {
			return "chat channels need a signed-in user"
		}
		if ch[len(prefixUser):] != user {
			return fmt.Sprintf("chat:user channels are private: subscribe to chat:user:%s", user)
		}
	default:
		return "chat channels are chat:group:<group_id> and chat:user:<user_id>"
	}
	return ""
}

// addMemberLocked records a membership in memory; c.mu is held (or the
// plugin is not serving yet).
func (c *Chat) addMemberLocked(group, user string) {
	if c.groups[group] == nil {
		c.groups[group] = set{}
	}
	c.groups[group].add(user)
	if c.userGroups[user] == nil {
		c.userGroups[user] = set{}
	}
	c.userGroups[user].add(group)
}

func (c *Chat) removeMemberLocked(group, user string) {
	delete(c.groups[group], user)
	if len(c.groups[group]) == 0 {
		delete(c.groups, group)
	}
	delete(c.userGroups[user], group)
	if len(c.userGroups[user]) == 0 {
		delete(c.userGroups, user)
	}
}

// coParticipants lists, sorted, the users other than user who share a
// group with them; c.mu is held.
func (c *Chat) coParticipants(user string) []string {
	seen := set{}
	for g := range c.userGroups[user] {
		for m := range c.groups[g] {
			if m != user {
				seen.add(m)
			}
		}
	}
	return sorted(seen)
}

// emit publishes ns, logging a failure (presence and entering have no
// caller to tell).
func (c *Chat) emit(ctx context.Context, ns []sdk.Notification) {
	if len(ns) == 0 {
		return
	}
	if _, err := c.host.Emit(ctx, ns...); err != nil {
		c.log.Warn("emit failed", "notifications", len(ns), "event", ns[0].Event, "error", err)
	}
}
