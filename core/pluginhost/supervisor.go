package pluginhost

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/heraldhq/herald/core/config"
	pluginpb "github.com/heraldhq/herald/sdk/proto"
)

// State is where a plugin is in its life.
type State string

const (
	StateStarting State = "starting"
	StateRunning  State = "running"
	// StateUnresponsive: running, but it stopped answering liveness pings
	// (liveness.go); not ready, killed and restarted if it does not answer
	// again in time.
	StateUnresponsive State = "unresponsive"
	StateRestarting   State = "restarting" // exited or killed; waiting for its backoff or starting again
	StateFailed       State = "failed"     // could not be started by Apply; fix the config and reload
	StateStopped      State = "stopped"
)

// supervisor owns one plugin across restarts. Its goroutine (watch) is the
// only one that replaces the instance after Apply handed it the first one.
type supervisor struct {
	m   *Manager
	cfg config.Plugin
	log hclog.Logger

	mu       sync.Mutex
	state    State
	inst     *instance          // nil unless running
	manifest *pluginpb.Manifest // last known, kept while down so prefixes stay owned
	restarts int
	lastErr  string // why it is down now; cleared when it runs again
	lastExit string // how its previous process ended ("killed by signal SIGKILL")
	since    time.Time

	stopCh chan struct{}
	done   chan struct{}
}

func newSupervisor(m *Manager, cfg config.Plugin) *supervisor {
	return &supervisor{m: m, cfg: cfg, log: m.log.With("plugin", cfg.Name), state: StateStarting,
		since: time.Now(), stopCh: make(chan struct{}), done: make(chan struct{})}
}

func (s *supervisor) setState(st State, errText string) {
	s.mu.Lock()
	s.setStateLocked(st, errText)
	s.mu.Unlock()
	s.setUp(st)
}

// setStateLocked is setState's change, made with s.mu held together with
// others that a status must never see apart (a restart counted while the
// state still says running). The caller then calls setUp.
func (s *supervisor) setStateLocked(st State, errText string) {
	s.state = st
	s.since = time.Now()
	if errText != "" {
		s.lastErr = errText
	}
}

// setUp sets the herald_plugin_up gauge for st.
func (s *supervisor) setUp(st State) {
	up := 0.0
	if st == StateRunning {
		up = 1
	}
	s.m.met.setUp(s.cfg.Name, up)
}

func (s *supervisor) lastManifest() *pluginpb.Manifest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.manifest
}

func (s *supervisor) currentState() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}

// running returns the live instance, or nil with the state when down.
func (s *supervisor) running() (*instance, State) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inst == nil || s.inst.crashed() {
		return nil, s.state
	}
	return s.inst, s.state
}

// run makes inst the running instance and supervises it until stop.
func (s *supervisor) run(inst *instance) {
	s.adopt(inst)
	go s.watch() // ends on stop (s.stopCh), closing s.done
}

// retry supervises a plugin whose start failed for a reason that passes
// (unavailableError): it is restarting, with backoff, until a start works.
func (s *supervisor) retry(err error) {
	s.setState(StateRestarting, err.Error())
	s.m.rebuild()
	go s.watch() // ends on stop (s.stopCh), closing s.done
}

// failed records a plugin that Apply could not start; it is not retried.
func (s *supervisor) failed(err error) {
	s.setState(StateFailed, err.Error())
	close(s.done)
}

func (s *supervisor) adopt(inst *instance) {
	s.mu.Lock()
	s.inst = inst
	s.manifest = inst.manifest
	s.lastErr = "" // recovered: what was wrong is history (lastExit keeps how it ended)
	s.mu.Unlock()
	s.setState(StateRunning, "")
	s.m.rebuild()
	inst.startEvents() // after it is visible to Notify: see startEvents
	s.log.Info("plugin running", "version", inst.manifest.GetVersion(), "pid", inst.pid,
		"prefixes", inst.manifest.GetPrefixes())
	if man := inst.manifest; len(man.GetPrefixes()) > 0 && !man.GetAuthorizes() && !man.GetAllowAllSubscriptions() {
		s.log.Warn("plugin implements no authorizer: every subscription to its channels is refused; "+
			"implement sdk.Authorizer, or set AllowAllSubscriptions in its sdk.Manifest to open them to every caller",
			"prefixes", man.GetPrefixes())
	}
}

func (s *supervisor) watch() {
	defer close(s.done)
	delay := s.m.opts.BackoffMin
	for {
		s.mu.Lock()
		inst := s.inst
		s.mu.Unlock()
		if inst != nil { // else a start failed for a reason that passes (retry)
			pctx, stopProbe := context.WithCancel(context.Background())
			probed := make(chan struct{})
			go func() { // ends when stopProbe is called, below
				defer close(probed)
				s.probe(pctx, inst)
			}()
			select {
			case <-s.stopCh:
				stopProbe()
				<-probed
				s.stopInstance(inst)
				return
			case <-inst.done:
			}
			stopProbe()
			<-probed
			// The process exited or was killed: calls fail fast from here on.
			why := inst.endReason()
			s.mu.Lock()
			s.inst = nil
			s.restarts++
			s.lastExit = why
			s.setStateLocked(StateRestarting, "plugin process exited: "+why)
			s.mu.Unlock()
			s.setUp(StateRestarting)
			s.m.met.restarts.WithLabelValues(s.cfg.Name).Inc()
			s.log.Error("plugin process exited; restarting", "exit", why, "backoff", delay)
			inst.kill() // clean up what go-plugin and the broker left
			if time.Since(inst.started) > s.m.opts.BackoffMax {
				delay = s.m.opts.BackoffMin // it had been healthy for a while
			}
		}
		for {
			select {
			case <-s.stopCh:
				s.setState(StateStopped, "")
				return
			case <-time.After(delay):
			}
			delay = min(delay*2, s.m.opts.BackoffMax)
			ctx, cancel := context.WithCancel(context.Background())
			go func() { // ends with this start attempt
				select {
				case <-s.stopCh:
					cancel()
				case <-ctx.Done():
				}
			}()
			next, err := s.m.startInstance(ctx, s.cfg)
			cancel()
			if err == nil {
				if cerr := s.m.conflicts(s.cfg, next.manifest); cerr != nil {
					next.kill()
					err = cerr
				}
			}
			if err != nil {
				s.setState(StateRestarting, err.Error())
				s.log.Error("restart failed", "error", err, "next_attempt_in", delay)
				continue
			}
			select {
			case <-s.stopCh:
				s.stopInstance(next)
				return
			default:
			}
			s.adopt(next)
			break
		}
	}
}

// stopInstance stops inst: drained, then killed, bounded by StopTimeout.
// An unresponsive plugin (it stopped answering its liveness pings) would
// not drain, only hold a reload or a shutdown for the whole bound: its
// process group is killed at once, as the liveness supervisor would.
func (s *supervisor) stopInstance(inst *instance) {
	s.mu.Lock()
	hung := s.inst == inst && s.state == StateUnresponsive
	s.mu.Unlock()
	s.setState(StateStopped, "")
	s.mu.Lock()
	s.inst = nil
	s.mu.Unlock()
	if hung {
		s.log.Warn("plugin does not answer liveness pings, so it would not drain: killing its process group to stop it",
			"pid", inst.pid)
		s.killGroup(inst, "killed by herald while stopping it without a drain: it did not answer its liveness pings")
		inst.kill() // what go-plugin and the broker left; the process is gone
		s.log.Info("plugin stopped")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.m.opts.StopTimeout)
	defer cancel()
	inst.stop(ctx)
	s.log.Info("plugin stopped")
}

// stop stops the plugin (drain, then kill) and waits, bounded by ctx.
func (s *supervisor) stop(ctx context.Context) error {
	select {
	case <-s.stopCh:
	default:
		close(s.stopCh)
	}
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("plugin %q: stop: %w", s.cfg.Name, ctx.Err())
	}
}

func (s *supervisor) status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Status{Name: s.cfg.Name, State: s.state, Restarts: s.restarts, LastError: s.lastErr, LastExit: s.lastExit, Since: s.since,
		Prefixes: []string{}, Methods: []string{}, Routes: []string{}}
	if s.inst != nil {
		st.PID = s.inst.pid
	}
	if m := s.manifest; m != nil {
		st.Version = m.GetVersion()
		st.Prefixes = append(st.Prefixes, m.GetPrefixes()...)
		for _, me := range m.GetMethods() {
			st.Methods = append(st.Methods, me.GetName())
		}
		for _, r := range m.GetRoutes() {
			st.Routes = append(st.Routes, r.GetMethod()+" "+r.GetPattern())
		}
	}
	return st
}
