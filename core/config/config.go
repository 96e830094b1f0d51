package config

import (
	"fmt"
	"strings"
	"time"
)

// Config is the whole of herald's configuration after defaults are applied.
// Every field has the default that CONTRACT.md section 6 shows.
type Config struct {
	Server   Server
	Auth     Auth
	Delivery Delivery
	Limits   Limits
	History  History
	Overload Overload
	Broker   Broker
	State    State
	Log      Log
	Plugins  []Plugin
	// File is the path the config was loaded from ("" when built in code).
	File string
}

// Server is the `server` block.
type Server struct {
	Listen         string   // default "127.0.0.1:7512"
	AllowedOrigins []string // default ["http://localhost:8080"]
	// PingInterval is how often connections are checked: one that sent
	// nothing for that long is pinged, and one that still sent nothing at
	// the next check is closed (4009). 0 turns pings off. Default 25s.
	PingInterval time.Duration
	// ReadTimeout bounds reading one HTTP request, headers and body, from
	// its first byte (and a TLS handshake). Once the body is read, the
	// request's handler is not bound by it; a WebSocket is not either.
	// Default 30s.
	ReadTimeout time.Duration
	// IdleTimeout is how long a keep-alive connection may wait for its
	// next request before it is closed. Default 2m.
	IdleTimeout time.Duration
	// TLS, when set, serves server.listen over TLS (https, wss) with this
	// certificate; nil serves plain HTTP (behind a proxy that terminates
	// TLS, or on loopback).
	TLS *TLS
	// AdminListen, when set, is a second listener for operators: /metrics
	// and the admin page are served only there, /healthz and /readyz on
	// both. Unset (the default): everything is served on Listen.
	AdminListen string
	// AdminToken protects the admin page and its API (/admin/...): a
	// request must send it as a bearer token or the page's login. Unset:
	// the page is not served at all. At least 16 characters.
	AdminToken string
}

// TLS is the `server { tls { ... } }` block. Both files are PEM; SIGHUP
// reads them again, so a renewed certificate needs no restart.
type TLS struct {
	CertFile string
	KeyFile  string
}

// Auth is the `auth` block.
type Auth struct {
	TokenSecret  string        // required unless Anonymous
	APIKeys      []string      // at least one, for the HTTP API
	Anonymous    bool          // default false
	OpenChannels bool          // default true
	ExpiryGrace  time.Duration // default 30s
	// AuthTimeout is how long a connection without a token may take to
	// authenticate before it is closed with 4001. Default 10s.
	AuthTimeout time.Duration
}

// Delivery is the `delivery` block.
type Delivery struct {
	MaxBatch    int           // default 128
	MaxDelay    time.Duration // default 2ms
	OutboxLimit int           // default 4096
	// OutboxBytes bounds the bytes waiting per connection (notifications,
	// replies and error replies alike). Default 1 MiB.
	OutboxBytes int
	// WriteTimeout bounds one write to a client's socket. Default 10s.
	WriteTimeout time.Duration
	// Writers is how many goroutines write to sockets that take bytes at
	// once; 0 means half the processors, at least one. Default 0.
	Writers int
	// IOUring lets a writer hand the frames of several sockets to the
	// kernel with one io_uring submission (Linux, where the kernel allows
	// it; write(2) per socket otherwise). Default true.
	IOUring bool
}

// Limits is the `limits` block.
type Limits struct {
	MaxFrameBytes    int64   // default 65536
	CallsPerSecond   float64 // default 50
	MaxSubscriptions int     // default 1000
	// CallTimeout bounds plugin calls and server-to-client calls. Default 10s.
	CallTimeout time.Duration
	// MaxInflightCalls bounds the plugin calls one connection may have
	// running at once. Default 32.
	MaxInflightCalls int
	// MaxBatchCalls bounds the entries of one JSON-RPC batch. Default 100.
	MaxBatchCalls int
	// MaxPublishBytes bounds one HTTP API request body. Default 4 MiB.
	MaxPublishBytes int64
	// IdempotencyBytes bounds the memory of remembered publish answers
	// (Idempotency-Key), oldest dropped first. Default 16 MiB.
	IdempotencyBytes int64
}

// History is the `history` block.
type History struct {
	Size int           // default 1000
	TTL  time.Duration // default 10m
	// MaxBytes bounds the history of all channels together; over it the
	// least recently published channels lose theirs. Default 256 MiB.
	MaxBytes int64
}

// Overload is the `overload` block.
type Overload struct {
	BusyConnections int     // default 50000
	BusyOutboxRatio float64 // default 0.5
}

// Broker is the `broker "<kind>" {}` block.
type Broker struct {
	Kind string // "memory" (default) or "nats"
	// URL is the NATS server(s) to connect to, comma-separated (nats only,
	// required).
	URL string
	// Replicas is how many NATS servers keep each stream and State bucket
	// (nats only; 1, 3 or 5; default 1). A publish is answered once that
	// many have it.
	Replicas int
}

// State is the `state` block: where the host keeps the plugins' State
// (sdk.State) on one node. With broker "nats" the plugins' State lives in
// JetStream instead, shared by every node.
type State struct {
	// Dir holds one file per plugin, <dir>/<plugin>.db, created when the
	// plugin first uses State. Relative to the config file. Default
	// "data/state". One node only: refused with broker "nats".
	Dir string
	// DirSet says the config wrote dir (rather than taking the default).
	DirSet bool
	// MaxBytes bounds each plugin's State (keys and values). Default 1 GiB.
	MaxBytes int64
}

// Log is the `log` block.
type Log struct {
	Level  string // default "info"; trace, debug, info, warn, error
	Format string // default "text"; or "json"
	// PluginLinesPerSecond bounds the lines each plugin process writes
	// into the log; past it they are dropped and counted. 0: no bound.
	PluginLinesPerSecond int // default 1000
}

// Plugin is one `plugin "<name>" {}` block.
type Plugin struct {
	Name    string
	Command string
	Args    []string
	Env     map[string]string
	// EmitChannels are the channels outside its own prefixes that the
	// plugin may emit to (`emit_channels`): exact names, or a prefix ending
	// in "*" ("news:*"). Its own prefixes need no entry.
	EmitChannels []string
	// InheritEnv (`inherit_env`, default false) gives the plugin Herald's
	// whole environment, secrets included, instead of a minimal one plus
	// Env. Unsafe: only for plugins the operator fully trusts.
	InheritEnv bool
	// Config is the plugin's `config` block as plain Go values, ready for
	// the plugin to decode with mapstructure: map[string]any, []any, string,
	// bool, int64 (whole numbers that fit) or float64, and nil for null.
	// A nested block is a map, a repeated one a list of maps, and a
	// labelled one nests under its labels. Never nil (empty when absent).
	Config map[string]any
	// Hash identifies the block's content (command, args, env and config,
	// not the name) so that a reload can tell a changed plugin from an
	// unchanged one by comparing it with the running plugin of that name.
	// A hex SHA-256; formatting, comments and key order do not change it.
	Hash string
	// Dir is the directory of the config file the block is in ("" for a
	// block built in code). A relative Command is found there, and the
	// plugin runs there, so that a relative data_dir in its config means
	// the same wherever herald is started from.
	Dir string
	// Pos is where each key of the block was written, by its path under
	// the block: "command", "config", "config.max_choice",
	// "config.store.path". Nil for a block built in code.
	Pos map[string]Position
}

// Position is where something was written in a config file.
type Position struct {
	File         string
	Line, Column int
}

func (p Position) String() string { return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Column) }

// PosOf returns the position of key (a path under the block, as in Pos) or,
// when that key was not written as such (a list element "store[1].path", a
// key inside a labelled block "index.by_user.field", or a key that is
// absent), of the nearest enclosing key that was; the block's own position
// last. ok is false only for a block built in code.
func (p Plugin) PosOf(key string) (pos Position, ok bool) {
	if len(p.Pos) == 0 {
		return Position{}, false
	}
	if pos, ok := p.Pos[key]; ok {
		return pos, true
	}
	// Indexes and map keys are not positions of their own.
	plain := key
	for {
		i := strings.IndexByte(plain, '[')
		if i < 0 {
			break
		}
		j := strings.IndexByte(plain[i:], ']')
		if j < 0 {
			break
		}
		plain = plain[:i] + plain[i+j+1:]
	}
	segs := strings.Split(plain, ".")
	for n := len(segs); n > 0; n-- {
		// Labels of a labelled block sit between its type and its keys.
		for skip := 0; skip == 0 || skip < n-1; skip++ {
			cand := append(append([]string{}, segs[:n-1-skip]...), segs[n-1])
			if pos, ok := p.Pos[strings.Join(cand, ".")]; ok {
				return pos, true
			}
		}
	}
	pos, ok = p.Pos[""]
	return pos, ok
}

// Defaults returns the configuration used when a block or key is absent.
// Auth has no secret and no API key: a config must supply those.
func Defaults() Config {
	return Config{
		Server: Server{Listen: "127.0.0.1:7512", AllowedOrigins: []string{"http://localhost:8080"}, PingInterval: 25 * time.Second,
			ReadTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute},
		Auth:     Auth{OpenChannels: true, ExpiryGrace: 30 * time.Second, AuthTimeout: 10 * time.Second},
		Delivery: Delivery{MaxBatch: 128, MaxDelay: 2 * time.Millisecond, OutboxLimit: 4096, OutboxBytes: 1 << 20, WriteTimeout: 10 * time.Second, IOUring: true},
		Limits: Limits{MaxFrameBytes: 65536, CallsPerSecond: 50, MaxSubscriptions: 1000,
			CallTimeout: 10 * time.Second, MaxInflightCalls: 32, MaxBatchCalls: 100, MaxPublishBytes: 4 << 20,
			IdempotencyBytes: 16 << 20},
		History:  History{Size: 1000, TTL: 10 * time.Minute, MaxBytes: 256 << 20},
		Overload: Overload{BusyConnections: 50000, BusyOutboxRatio: 0.5},
		Broker:   Broker{Kind: "memory", Replicas: 1},
		State:    State{Dir: "data/state", MaxBytes: 1 << 30},
		Log:      Log{Level: "info", Format: "text", PluginLinesPerSecond: 1000},
	}
}
