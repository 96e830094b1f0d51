package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/core/broker"
	"github.com/heraldhq/herald/core/broker/natsbroker"
	"github.com/heraldhq/herald/core/cluster"
	"github.com/heraldhq/herald/core/config"
	"github.com/heraldhq/herald/core/pluginhost"
	"github.com/heraldhq/herald/core/server"
	"github.com/heraldhq/herald/core/state"
	"github.com/heraldhq/herald/core/state/boltstate"
	"github.com/heraldhq/herald/core/state/jsstate"
)

// backend is what a node stands on besides itself: the broker (nil: the
// server's memory broker) and where the plugins' State lives; in a cluster
// also the NATS connection and the cluster node.
type backend struct {
	broker broker.Broker
	nats   *natsbroker.Broker // the broker, in a cluster
	state  pluginhost.StateOpener
	nc     *nats.Conn
	node   *cluster.Node
	log    hclog.Logger
}

// openBackend opens what cfg.Broker names. With broker "nats" it does
// not wait for NATS: the node listens at once, /readyz answers 503 naming
// the broker and publishes fail with a 503 until NATS answers (the broker
// sets its stream up as soon as it can).
func openBackend(ctx context.Context, cfg *config.Config, logger hclog.Logger) (*backend, error) {
	if cfg.Broker.Kind != "nats" {
		return &backend{state: boltOpener{dir: cfg.Resolve(cfg.State.Dir), maxBytes: cfg.State.MaxBytes}, log: logger}, nil
	}
	log := logger.Named("nats")
	urls := strings.Join(splitURLs(cfg.Broker.URL), ",")
	host, _ := os.Hostname()
	nc, err := nats.Connect(urls,
		nats.Name("herald "+host+" "+fmt.Sprint(os.Getpid())),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		nats.ReconnectWait(500*time.Millisecond),
		// Nothing is buffered while NATS is away: a publish then fails
		// at once (503) instead of waiting in a buffer nobody bounds.
		nats.ReconnectBufSize(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Warn("disconnected from NATS; publishes fail until it is back", "error", err)
		}),
		// The broker chains its own (a tail check of every watched channel).
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("connected to NATS", "server", c.ConnectedUrlRedacted()) }),
	)
	if err != nil {
		return nil, fmt.Errorf("broker nats: connect to %s: %w", urls, err)
	}
	if !nc.IsConnected() {
		log.Warn("NATS is not reachable yet; serving with /readyz at 503 until it is", "url", urls)
	}
	b, err := natsbroker.New(ctx, nc, natsbroker.Options{
		Replicas:    cfg.Broker.Replicas,
		HistorySize: cfg.History.Size,
		HistoryTTL:  cfg.History.TTL,
		MaxBytes:    cfg.History.MaxBytes,
		Logger:      log,
	})
	if err != nil {
		nc.Close()
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		_ = b.Close()
		nc.Close()
		return nil, fmt.Errorf("broker nats: jetstream: %w", err)
	}
	return &backend{broker: b, nats: b, nc: nc, log: logger,
		state: jsOpener{js: js, replicas: cfg.Broker.Replicas, maxBytes: cfg.State.MaxBytes}}, nil
}

// attach joins the cluster once the server exists: presence and the load
// signal answer for every node.
func (b *backend) attach(ctx context.Context, srv *server.Server) error {
	if b.nc == nil {
		return nil
	}
	node, err := cluster.New(ctx, b.nc, cluster.Options{
		Local:  localNode{srv},
		OnFlip: srv.PublishLoadSignal,
		Logger: b.log.Named("cluster"),
	})
	if err != nil {
		return fmt.Errorf("join the cluster: %w", err)
	}
	b.node = node
	srv.SetClusterPresence(partialPresence{node: node, log: b.log.Named("cluster")})
	srv.SetClusterOverload()
	registerClusterMetrics(srv.Registerer(), b.nats, node)
	b.log.Info("joined the cluster", "node", node.ID())
	return nil
}

// close leaves the cluster and closes the NATS connection; the server
// closed the broker before.
func (b *backend) close() {
	if b.node != nil {
		if err := b.node.Close(); err != nil {
			b.log.Warn("leave the cluster", "error", err)
		}
	}
	if b.nc != nil {
		b.nc.Close()
	}
}

// partialPresence answers with what the nodes that answered said when
// some did not (a node that just died, NATS unreachable): a presence a
// little short is more useful to a client than an error. It is logged.
type partialPresence struct {
	node *cluster.Node
	log  hclog.Logger
}

func (p partialPresence) Presence(ctx context.Context, channel string) (int, []string, error) {
	count, users, err := p.node.Presence(ctx, channel)
	var inc *cluster.IncompleteError
	if errors.As(err, &inc) || errors.Is(err, cluster.ErrDisconnected) {
		p.log.Warn("presence from part of the cluster", "channel", channel, "error", err)
		return count, users, nil
	}
	return count, users, err
}

// localNode is this node as the cluster asks it.
type localNode struct{ srv *server.Server }

func (l localNode) Presence(channel string) (int, []string) { return l.srv.LocalPresence(channel) }
func (l localNode) Busy() bool                              { return l.srv.LocalBusy() }

func splitURLs(list string) []string {
	var out []string
	for _, u := range strings.Split(list, ",") {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, u)
		}
	}
	return out
}

// boltOpener keeps each plugin's State in <dir>/<plugin>.db (one node).
type boltOpener struct {
	dir      string
	maxBytes int64
}

// OpenState waits for the file's lock (another herald holding it) for at
// most half the time the plugin's start has left (ctx carries the start's
// deadline), and never longer than the store's own default: the store's
// "still locked ... (another herald using it?)" must reach the operator,
// not the start's "context deadline exceeded".
func (o boltOpener) OpenState(ctx context.Context, plugin string) (state.Store, error) {
	if err := os.MkdirAll(o.dir, 0o750); err != nil {
		return nil, fmt.Errorf("state.dir: %w", err)
	}
	opts := boltstate.Options{MaxBytes: o.maxBytes}
	if dl, ok := ctx.Deadline(); ok {
		opts.OpenTimeout = min(max(time.Until(dl)/2, minLockWait), boltstate.DefaultOpenTimeout)
	}
	return boltstate.Open(filepath.Join(o.dir, plugin+".db"), opts)
}

// minLockWait is the least a state file's lock is waited for, however
// close the caller's deadline.
const minLockWait = 100 * time.Millisecond

// jsOpener keeps each plugin's State in the JetStream KV bucket
// herald_state_<plugin>, shared by the plugin's processes on every node.
type jsOpener struct {
	js       jetstream.JetStream
	replicas int
	maxBytes int64
}

func (o jsOpener) OpenState(ctx context.Context, plugin string) (state.Store, error) {
	s, err := jsstate.Open(ctx, o.js, jsstate.Options{Bucket: "herald_state_" + plugin, Replicas: o.replicas, MaxBytes: o.maxBytes})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", state.ErrUnavailable, err)
	}
	return s, nil
}
