package sdk

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"
	"github.com/heraldhq/herald/internal/logtext"
	"github.com/heraldhq/herald/sdk/internal/harness"
	pluginpb "github.com/heraldhq/herald/sdk/proto"
	"google.golang.org/grpc"
)

// Serve runs p as a Herald plugin process; a plugin's main is
//
//	func main() { sdk.Serve(&myPlugin{}) }
//
// Serve owns the process plumbing: the go-plugin handshake on stdout (so
// nothing else may print there: use the Host's Logger, which writes hclog
// JSON to stderr where the host picks it up), gRPC message limits, ignoring
// SIGHUP (Herald reloads on it), draining on SIGTERM, and exiting when the
// host process goes away. It returns only when the host stopped the plugin.
func Serve(p Plugin) {
	log := newLogger(p)
	s, err := newServer(p, log, pluginpb.MaxMessageBytesFromEnv())
	if err != nil {
		log.Error("invalid plugin", "error", err)
		os.Exit(1)
	}
	if os.Getenv(pluginpb.Handshake.MagicCookieKey) != pluginpb.Handshake.MagicCookieValue {
		os.Stderr.WriteString("This binary is a Herald plugin: declare it in a `plugin` block of herald's config instead of running it.\n")
		os.Exit(1)
	}

	// Herald reloads on SIGHUP; the plugin runs in its own process group,
	// but a stray group-wide SIGHUP must not kill it either.
	stopProfile := startCPUProfile(log)
	defer stopProfile()

	signal.Ignore(syscall.SIGHUP)
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM)
	done := make(chan struct{})
	defer close(done)
	go func() { // ends with the process
		select {
		case <-stop:
			log.Info("SIGTERM: draining")
		case <-parentGone(done):
			log.Warn("herald host process is gone: exiting")
		case <-done:
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
		s.drainAndClose(ctx)
		cancel()
		stopProfile()
		os.Exit(0)
	}()

	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig:  pluginpb.Handshake,
		VersionedPlugins: pluginpb.PluginSets(&pluginpb.GRPCPlugin{NewServer: s.bind}),
		GRPCServer:       s.grpcServer,
		Logger:           log,
	})
	ctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
	defer cancel()
	s.closeHost(ctx)
}

func (s *server) grpcServer(opts []grpc.ServerOption) *grpc.Server {
	return grpc.NewServer(append(opts, pluginpb.ServerOptions(s.maxBytes)...)...)
}

func (s *server) drainAndClose(ctx context.Context) {
	_, _ = s.Drain(ctx, &pluginpb.Empty{})
}

func newLogger(p Plugin) hclog.Logger {
	level := hclog.LevelFromString(os.Getenv(pluginpb.EnvLogLevel))
	if level == hclog.NoLevel {
		level = hclog.Info
	}
	// Durations as text ("1s"): the host re-logs these JSON values as
	// they are, in its text and JSON logs alike.
	return logtext.New(&hclog.LoggerOptions{
		Name:       p.Manifest().Name,
		Level:      level,
		Output:     os.Stderr,
		JSONFormat: true,
	})
}

// parentGone is closed when the process that started us exits: go-plugin has
// no parent-death watch, and Linux's Pdeathsig follows the creating thread,
// not the process, so the SDK polls its parent pid.
func parentGone(done <-chan struct{}) <-chan struct{} {
	gone := make(chan struct{})
	ppid := os.Getppid()
	go func() {
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if os.Getppid() != ppid {
					close(gone)
					return
				}
			}
		}
	}()
	return gone
}

func init() {
	harness.ServeInProcess = serveInProcess
}

// serveInProcess runs a plugin in go-plugin's test mode: same protocol, same
// gRPC, same broker, inside the test process (for sdktest).
func serveInProcess(ctx context.Context, p any, log hclog.Logger, onPanic func(v, stack string), reattach chan<- *plugin.ReattachConfig, closed chan<- struct{}) error {
	pl, ok := p.(Plugin)
	if !ok {
		return errors.New("sdktest: value does not implement sdk.Plugin")
	}
	s, err := newServer(pl, log, pluginpb.DefaultMaxMessageBytes)
	if err != nil {
		return err
	}
	s.onPanic = onPanic
	go func() { // ends when ctx ends (go-plugin stops serving)
		defer func() {
			cctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
			s.closeHost(cctx)
			cancel()
			close(closed)
		}()
		inner := make(chan struct{})
		plugin.Serve(&plugin.ServeConfig{
			HandshakeConfig:  pluginpb.Handshake,
			VersionedPlugins: pluginpb.PluginSets(&pluginpb.GRPCPlugin{NewServer: s.bind}),
			GRPCServer:       s.grpcServer,
			Logger:           log,
			Test:             &plugin.ServeTestConfig{Context: ctx, ReattachConfigCh: reattach, CloseCh: inner},
		})
		<-inner
	}()
	return nil
}
