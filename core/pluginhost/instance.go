package pluginhost

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"
	"github.com/hashicorp/go-plugin/runner"
	"github.com/heraldhq/herald/core/config"
	"github.com/heraldhq/herald/core/rpc"
	pluginpb "github.com/heraldhq/herald/sdk/proto"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health/grpc_health_v1"
)

// instance is one run of a plugin process: it is never restarted, a restart
// makes a new instance (go-plugin clients and exec.Cmds are single use).
type instance struct {
	name     string
	m        *Manager
	log      hclog.Logger
	client   *plugin.Client
	rpc      pluginpb.PluginClient
	health   grpc_health_v1.HealthClient // liveness pings (liveness.go); nil: not pinged
	manifest *pluginpb.Manifest
	methods  map[string]bool // name -> backend only
	pid      int
	proc     *groupRunner // nil until the process started
	started  time.Time

	// done is go-plugin's context for this process: cancelled the moment
	// the process exits. It is the crash signal.
	done <-chan struct{}

	hostMu      sync.Mutex
	hostSrv     *grpc.Server
	hostStarted bool
	hostDone    chan struct{} // the broker's AcceptAndServe goroutine ended
	evStarted   bool

	events   chan *pluginpb.Event
	overflow chan struct{} // 1-buffered: "events were dropped, resync"
	stopEv   chan struct{}
	evDone   chan struct{}

	stopOnce sync.Once

	// killedFor says why the host killed a process that was still
	// running (it stopped answering liveness pings); "" otherwise.
	killMu    sync.Mutex
	killedFor string

	// stdout and stderr log the process's plain output; kill closes them
	// once the process is gone, so that a last line without a newline is
	// logged too.
	stdout, stderr *outputWriter

	// calling counts, per connection, the calls it has running on this
	// plugin: while a connection calls a plugin, the plugin may call it
	// back (Host.CallClient) even if it is on none of its channels.
	callMu  sync.Mutex
	calling map[string]int
}

func (i *instance) enterCall(connID string) {
	i.callMu.Lock()
	if i.calling == nil {
		i.calling = map[string]int{}
	}
	i.calling[connID]++
	i.callMu.Unlock()
}

func (i *instance) leaveCall(connID string) {
	i.callMu.Lock()
	if i.calling[connID]--; i.calling[connID] <= 0 {
		delete(i.calling, connID)
	}
	i.callMu.Unlock()
}

func (i *instance) inCall(connID string) bool {
	i.callMu.Lock()
	defer i.callMu.Unlock()
	return i.calling[connID] > 0
}

// startInstance starts the plugin of cfg and brings it to the configured
// state. On any error the process is killed before returning.
func (m *Manager) startInstance(ctx context.Context, cfg config.Plugin) (*instance, error) {
	return m.launch(ctx, cfg, false)
}

// Check starts the plugin of cfg in a dry run, as `herald validate` does:
// handshake, manifest and Configure with dry_run set (the plugin checks its
// config and opens nothing), then kills it. The error is the one a real
// start would report.
func (m *Manager) Check(ctx context.Context, cfg config.Plugin) error {
	inst, err := m.launch(ctx, cfg, true)
	if err != nil {
		return err
	}
	inst.kill()
	return nil
}

// CheckAll checks every block as Check does, then their claims against
// each other (channel prefixes, HTTP routes) as a boot would: what `herald
// validate` runs. It is meant for a Manager that runs nothing else: each
// plugin that passed stays listed, stopped, with the manifest it showed.
func (m *Manager) CheckAll(ctx context.Context, plugins []config.Plugin) error {
	var errs []error
	for _, p := range plugins {
		inst, err := m.launch(ctx, p, true)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		man := inst.manifest
		inst.kill()
		if err := m.conflicts(p, man); err != nil {
			errs = append(errs, err)
			continue
		}
		s := newSupervisor(m, p)
		s.manifest, s.state = man, StateStopped
		close(s.done)
		m.mu.Lock()
		m.plugins[p.Name] = s
		m.mu.Unlock()
		m.rebuild()
	}
	return errors.Join(errs...)
}

// commandPath is the executable of cfg: a relative command with a slash
// ("bin/plugins/chat") is relative to the config file's directory, a bare
// name is looked up in PATH.
func commandPath(cfg config.Plugin) (string, error) {
	command := cfg.Command
	if cfg.Dir != "" && strings.ContainsRune(command, '/') && !filepath.IsAbs(command) {
		command = filepath.Join(cfg.Dir, command)
	}
	path, err := exec.LookPath(command)
	if err == nil {
		return path, nil
	}
	why := err
	var ee *exec.Error
	if errors.As(err, &ee) {
		why = ee.Err
		var pe *fs.PathError
		if errors.As(why, &pe) {
			why = pe.Err
		}
	}
	where := ""
	if command != cfg.Command {
		where = fmt.Sprintf(" (looked for %s)", command)
	}
	return "", keyError(cfg, "command", fmt.Sprintf("cannot run %q%s: %v", cfg.Command, where, why))
}

// keyError reports a problem with one key of the plugin's block the way
// the config loader does: "config.hcl:12:3: plugin.chat.config.max_choice:
// what is wrong"; for a block built in code, which has no position,
// `plugin "chat": config.max_choice: what is wrong`.
func keyError(cfg config.Plugin, key, msg string) error {
	path := "plugin." + cfg.Name + "." + key
	if pos, ok := cfg.PosOf(key); ok {
		return fmt.Errorf("%s: %s: %s", pos, path, msg)
	}
	return fmt.Errorf("plugin %q: %s: %s", cfg.Name, key, msg)
}

// oneLine joins a message that spans lines (go-plugin's handshake errors
// do) into one, so that each problem stays one line of `herald validate`'s
// report and of the log.
func oneLine(msg string) string {
	var b strings.Builder
	for _, line := range strings.Split(msg, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if b.Len() > 0 {
			if strings.HasSuffix(b.String(), ":") {
				b.WriteString(" ")
			} else {
				b.WriteString("; ")
			}
		}
		b.WriteString(line)
	}
	return b.String()
}

// configureError turns the plugin's Configure error into keyErrors when
// it names keys of the config block the way sdk.ConfigError does
// ("config.max_choice: unknown key; ..."): one per line, as the SDK joins
// several problems, each at its own key. It returns nil when any line is
// not of that form (the error is then reported at command, whole).
func configureError(cfg config.Plugin, msg string) error {
	var errs []error
	for _, line := range strings.Split(msg, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		err := configureLine(cfg, line)
		if err == nil {
			return nil
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// configureLine is configureError for one problem.
func configureLine(cfg config.Plugin, msg string) error {
	if rest, ok := strings.CutPrefix(msg, "config: "); ok {
		return keyError(cfg, "config", rest)
	}
	rest, ok := strings.CutPrefix(msg, "config.")
	if !ok {
		return nil
	}
	key, what, ok := strings.Cut(rest, ": ")
	if !ok || key == "" || strings.ContainsAny(key, " \t\n") {
		return nil
	}
	return keyError(cfg, "config."+key, what)
}

func (m *Manager) launch(ctx context.Context, cfg config.Plugin, dryRun bool) (*instance, error) {
	path, err := commandPath(cfg)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path, cfg.Args...)
	// The plugin runs in the config file's directory: a relative data_dir
	// in its config block is relative to the file, as command is.
	cmd.Dir = cfg.Dir
	cmd.Env = pluginEnv(os.Environ(), cfg.InheritEnv)
	for k, v := range cfg.Env { // after Herald's environment: these win over it
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	// What the host tells the plugin comes last, so that a block's env
	// cannot change it (exec keeps the last value of a name), as
	// go-plugin's handshake variables, added by the runner, come later still.
	cmd.Env = append(cmd.Env,
		pluginpb.EnvMaxMessageBytes+"="+strconv.Itoa(m.opts.MaxMessageBytes),
		pluginpb.EnvLogLevel+"="+logLevel(m.log))
	ownProcessGroup(cmd)

	log := newPluginLogger(m.log.Named("plugin"), cfg.Name, path, m.opts.LogLinesPerSecond)
	log.dryRun = dryRun
	var procRunner *groupRunner
	stdout, stderr := &outputWriter{log: log, stream: "stdout"}, &outputWriter{log: log, stream: "stderr"}
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  pluginpb.Handshake,
		VersionedPlugins: pluginpb.PluginSets(&pluginpb.GRPCPlugin{}),
		// Our runner, not go-plugin's: it kills the plugin's process group
		// before the process is reaped, never after (runner.go).
		RunnerFunc: func(_ hclog.Logger, spec *exec.Cmd, _ string) (runner.Runner, error) {
			cmd.Env = append(cmd.Env, spec.Env...) // go-plugin's handshake variables
			cmd.Stdin = spec.Stdin
			r, err := newGroupRunner(cmd)
			procRunner = r
			return r, err
		},
		SkipHostEnv:      true, // cmd.Env already has it, in the right order
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		StartTimeout:     m.opts.StartTimeout,
		Logger:           log,
		SyncStdout:       stdout,
		SyncStderr:       stderr,
		GRPCDialOptions:  pluginpb.DialOptions(m.opts.MaxMessageBytes),
	})
	inst := &instance{name: cfg.Name, m: m, log: log, client: client, started: time.Now(), stdout: stdout, stderr: stderr,
		hostDone: make(chan struct{}), events: make(chan *pluginpb.Event, eventQueueDepth),
		overflow: make(chan struct{}, 1), stopEv: make(chan struct{}), evDone: make(chan struct{})}
	fail := func(format string, args ...any) (*instance, error) {
		inst.proc = procRunner
		inst.kill()
		return nil, keyError(cfg, "command", fmt.Sprintf("%q: %s", cfg.Command, oneLine(fmt.Sprintf(format, args...))))
	}

	rpcClient, err := client.Client()
	if err != nil {
		switch msg := err.Error(); {
		case strings.Contains(msg, "incompatible API version"):
			return fail("handshake: protocol version mismatch: herald speaks version %d; %v", pluginpb.ProtocolVersion, err)
		case strings.Contains(msg, "timeout while waiting for plugin to start"):
			return fail("did not complete the go-plugin handshake within %s", m.opts.StartTimeout)
		case strings.Contains(msg, "exited before we could connect"):
			return fail("exited during the handshake (not a Herald plugin, or it failed at start; see its log above)")
		default:
			return fail("handshake: %v", err)
		}
	}
	if id, err := strconv.Atoi(client.ID()); err == nil {
		inst.pid = id
	}
	inst.proc = procRunner
	inst.health = healthClient(rpcClient)
	raw, err := rpcClient.Dispense(pluginpb.PluginKey)
	if err != nil {
		return fail("dispense: %v", err)
	}
	conn := raw.(*pluginpb.Conn)
	inst.rpc = conn.Plugin
	inst.done = conn.Done.Done()

	sctx, cancel := context.WithTimeout(ctx, m.opts.StartTimeout)
	defer cancel()
	if inst.manifest, err = inst.rpc.GetManifest(sctx, &pluginpb.Empty{}); err != nil {
		return fail("manifest: %v", err)
	}
	if n := inst.manifest.GetName(); n != cfg.Name {
		log.Warn("plugin calls itself by another name; routing uses the config block's name", "manifest_name", n)
	}
	inst.methods = make(map[string]bool, len(inst.manifest.GetMethods()))
	for _, me := range inst.manifest.GetMethods() {
		inst.methods[me.GetName()] = me.GetBackendOnly()
	}

	// One broker connection per process for everything the plugin asks of
	// the host; the plugin dials it once, in Configure.
	hostID := conn.Broker.NextId()
	inst.hostMu.Lock()
	inst.hostStarted = true
	inst.hostMu.Unlock()
	go func() { // ends when the broker closes (kill) or the server stops
		defer close(inst.hostDone)
		conn.Broker.AcceptAndServe(hostID, func(opts []grpc.ServerOption) *grpc.Server {
			opts = append(opts, pluginpb.ServerOptions(m.opts.MaxMessageBytes)...)
			s := grpc.NewServer(append(opts, grpc.ForceServerCodecV2(newEmitCodec()))...)
			pluginpb.RegisterHostServer(s, &hostService{m: m, plugin: cfg.Name, inst: inst, pol: newPolicy(cfg, inst.manifest), log: log})
			inst.hostMu.Lock()
			inst.hostSrv = s
			inst.hostMu.Unlock()
			return s
		})
	}()

	cfgJSON, err := json.Marshal(cfg.Config)
	if err != nil {
		return fail("config block: %v", err)
	}
	rep, err := inst.rpc.Configure(sctx, &pluginpb.ConfigureRequest{Name: cfg.Name, ConfigJson: cfgJSON, HostServiceId: hostID, DryRun: dryRun})
	if err != nil {
		return fail("configure: %v", err)
	}
	if e := rep.GetError(); e != nil {
		if kerr := configureError(cfg, e.GetMessage()); kerr != nil {
			inst.proc = procRunner
			inst.kill()
			return nil, kerr
		}
		_, err := fail("configure: %s", e.GetMessage())
		if e.GetCode() == rpc.CodePluginUnavailable && !dryRun {
			// Something it needs is not there yet (its State, before NATS
			// answers): Apply keeps it restarting rather than failed.
			err = &unavailableError{err: err, manifest: inst.manifest}
		}
		return nil, err
	}
	return inst, nil
}

// unavailableError is a start that failed for a reason that passes: the
// plugin's Configure answered CodePluginUnavailable. It keeps the manifest
// the plugin showed, so that its prefixes stay claimed while it retries.
type unavailableError struct {
	err      error
	manifest *pluginpb.Manifest
}

func (e *unavailableError) Error() string { return e.err.Error() }
func (e *unavailableError) Unwrap() error { return e.err }

// pluginEnv is the part of Herald's environment a plugin inherits: with
// inherit_env, all of it (secrets such as HERALD_TOKEN_SECRET and the API
// keys included); otherwise only what a process needs to run (PATH, HOME,
// TMPDIR) and the locale (LANG, LANGUAGE, LC_*). A plugin is code the
// operator may not have written: what it needs beyond that, its block's env
// gives it by name.
func pluginEnv(host []string, inherit bool) []string {
	if inherit {
		return host
	}
	var out []string
	for _, kv := range host {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case k == "PATH", k == "HOME", k == "TMPDIR", k == "LANG", k == "LANGUAGE", strings.HasPrefix(k, "LC_"):
			out = append(out, kv)
		}
	}
	return out
}

func logLevel(l hclog.Logger) string {
	switch {
	case l.IsTrace():
		return "trace"
	case l.IsDebug():
		return "debug"
	case l.IsInfo():
		return "info"
	case l.IsWarn():
		return "warn"
	default:
		return "error"
	}
}

// exitsWithin reports whether the process has exited or exits within d.
func (i *instance) exitsWithin(d time.Duration) bool {
	if i.done == nil {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-i.done:
		return true
	case <-t.C:
		return false
	}
}

// exitReason says how the process ended ("killed by signal SIGKILL
// ", "exited with status 2"); "exited" when that is unknown.
func (i *instance) exitReason() string {
	if i.proc != nil {
		if why := i.proc.exitReason(); why != "" {
			return why
		}
	}
	return "exited"
}

func (i *instance) setKilledFor(why string) {
	i.killMu.Lock()
	i.killedFor = why
	i.killMu.Unlock()
}

// endReason is how the process ended, with why the host killed it if it
// did: "killed by herald after 6 unanswered liveness pings (...) (killed by
// signal SIGKILL)".
func (i *instance) endReason() string {
	i.killMu.Lock()
	why := i.killedFor
	i.killMu.Unlock()
	if why == "" {
		return i.exitReason()
	}
	return why + " (" + i.exitReason() + ")"
}

func (i *instance) crashed() bool {
	if i.done == nil {
		return false
	}
	select {
	case <-i.done:
		return true
	default:
		return false
	}
}

// stop drains the plugin (it flushes its emits and finishes its work), then
// kills it; bounded by ctx.
func (i *instance) stop(ctx context.Context) {
	if i.rpc != nil && !i.crashed() {
		if _, err := i.rpc.Drain(ctx, &pluginpb.Empty{}); err != nil && !i.crashed() {
			i.log.Warn("drain failed", "error", err)
		}
	}
	i.kill()
}

// kill ends the process and everything this instance started, bounded:
// go-plugin's Kill asks over the controller, waits about 2 s, then has the
// runner SIGKILL the process group; if even that hangs, the group is
// SIGKILLed here. The group is always killed before the process is reaped
// (groupRunner), never after: a reaped leader's group id may belong to
// someone else by then.
func (i *instance) kill() {
	i.stopOnce.Do(func() {
		close(i.stopEv)
		done := make(chan struct{})
		go func() { // ends when Kill returns, which the group kill below forces
			defer close(done)
			i.client.Kill()
		}()
		select {
		case <-done:
		case <-time.After(killTimeout):
			i.log.Warn("plugin did not stop in time: killing its process group", "pid", i.pid)
			if i.proc != nil {
				_ = i.proc.Kill(context.Background())
			}
			<-done
		}
		// The process is gone: its output has ended.
		_ = i.stdout.Close()
		_ = i.stderr.Close()
		i.hostMu.Lock()
		srv, hostStarted, evStarted := i.hostSrv, i.hostStarted, i.evStarted
		i.hostMu.Unlock()
		if srv != nil {
			srv.Stop()
		}
		if hostStarted {
			select {
			case <-i.hostDone:
			case <-time.After(killTimeout):
				i.log.Warn("host service did not stop")
			}
		}
		if evStarted {
			<-i.evDone // the event sender ends on stopEv
		}
	})
}

const killTimeout = 5 * time.Second
