package pluginhost

import (
	"context"
	"fmt"
	"time"

	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc/health/grpc_health_v1"
)

// Liveness. A plugin that hangs (stopped, deadlocked, swapping) keeps its
// process and its connection: nothing exits, so the crash signal never
// comes while every call to it times out. The supervisor therefore pings
// each running plugin over gRPC's health service, which go-plugin serves in
// the plugin's own gRPC server. Everything is derived from
// limits.call_timeout (T), the bound a plugin has to answer anything:
//
//   - a ping goes every T/2 (at most probeEveryMax) and is given T to answer;
//   - after probeUnresponsiveAfter pings in a row went unanswered (about
//     2T without an answer) the plugin is reported unresponsive: not ready
//     (/readyz 503 names it), herald_plugin_up 0; its calls still go to it
//     (a plugin that answers late still answers) and fail with -32050 when
//     they time out;
//   - one answered ping makes it running again, with no restart;
//   - after probeKillAfter unanswered pings in a row (about 6T, a minute by
//     default) it is killed (its whole process group) and restarted with
//     the usual backoff, as a crash would be;
//   - stopped while unresponsive (a reload that removes or changes it,
//     herald's shutdown), it is not asked to drain, which it would not
//     do: its process group is killed at once (stopInstance).
//
// A plugin that is merely busy still answers: the health service runs on
// its own goroutine, which a CPU-bound call or a garbage collection delays
// by milliseconds, far from T.
const (
	probeUnresponsiveAfter = 2
	probeKillAfter         = 6
	probeEveryMax          = 5 * time.Second
	probeEveryMin          = 50 * time.Millisecond
)

// probeTimes are the interval between pings that answered and the time
// each ping is given, for a call timeout of callTimeout.
func probeTimes(callTimeout time.Duration) (every, timeout time.Duration) {
	return min(max(callTimeout/2, probeEveryMin), probeEveryMax), callTimeout
}

// healthClient is the plugin's health service on the connection go-plugin
// opened to it; nil if rpcClient is not gRPC (then it is not pinged).
func healthClient(rpcClient plugin.ClientProtocol) grpc_health_v1.HealthClient {
	gc, ok := rpcClient.(*plugin.GRPCClient)
	if !ok || gc.Conn == nil {
		return nil
	}
	return grpc_health_v1.NewHealthClient(gc.Conn)
}

// ping asks the plugin's health service whether it serves, within timeout.
func (i *instance) ping(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	rep, err := i.health.Check(ctx, &grpc_health_v1.HealthCheckRequest{Service: plugin.GRPCServiceName})
	if err != nil {
		return err
	}
	if st := rep.GetStatus(); st != grpc_health_v1.HealthCheckResponse_SERVING {
		return fmt.Errorf("health status %s", st)
	}
	return nil
}

// probe pings inst until ctx ends (watch cancels it when the process exits
// or the plugin stops), marks it unresponsive and running again, and kills
// it when it stopped answering for good.
func (s *supervisor) probe(ctx context.Context, inst *instance) {
	if inst.health == nil {
		return
	}
	every, timeout := probeTimes(s.m.opts.CallTimeout)
	failed := 0
	wait := every
	for {
		if !sleepCtx(ctx, wait) {
			return
		}
		started := time.Now()
		err := inst.ping(ctx, timeout)
		if ctx.Err() != nil || inst.crashed() {
			return
		}
		if err == nil {
			if failed >= probeUnresponsiveAfter {
				s.answersAgain(inst, failed)
			}
			failed, wait = 0, every
			continue
		}
		// A failure counts once per timeout, however fast it came.
		failed++
		wait = max(0, timeout-time.Since(started))
		switch failed {
		case probeUnresponsiveAfter:
			s.unresponsive(inst, failed, timeout, err)
		case probeKillAfter:
			s.killUnresponsive(inst, failed, timeout)
			return
		}
	}
}

// unresponsive reports inst not ready: it did not answer failed pings in a
// row.
func (s *supervisor) unresponsive(inst *instance, failed int, timeout time.Duration, err error) {
	why := fmt.Sprintf("did not answer %d liveness pings in a row (each given limits.call_timeout, %s): its calls time out; "+
		"it is killed and restarted after %d", failed, timeout, probeKillAfter)
	s.mu.Lock()
	if s.inst != inst || s.state != StateRunning {
		s.mu.Unlock()
		return
	}
	s.setStateLocked(StateUnresponsive, why)
	s.mu.Unlock()
	s.setUp(StateUnresponsive)
	s.log.Warn("plugin does not answer liveness pings: reported unresponsive (not ready)",
		"pid", inst.pid, "unanswered_pings", failed, "ping_timeout", timeout, "killed_after_pings", probeKillAfter, "error", err)
}

// answersAgain makes an unresponsive inst running again.
func (s *supervisor) answersAgain(inst *instance, failed int) {
	s.mu.Lock()
	if s.inst != inst || s.state != StateUnresponsive {
		s.mu.Unlock()
		return
	}
	s.setStateLocked(StateRunning, "")
	s.lastErr = ""
	s.mu.Unlock()
	s.setUp(StateRunning)
	s.log.Info("plugin answers liveness pings again: running", "pid", inst.pid, "unanswered_pings", failed)
}

// killUnresponsive kills inst's process group; watch then sees the exit and
// restarts it as it does after a crash.
func (s *supervisor) killUnresponsive(inst *instance, failed int, timeout time.Duration) {
	why := fmt.Sprintf("killed by herald after %d unanswered liveness pings (each given limits.call_timeout, %s)", failed, timeout)
	s.log.Warn("plugin did not answer liveness pings: killing its process group to restart it",
		"pid", inst.pid, "unanswered_pings", failed, "ping_timeout", timeout)
	s.killGroup(inst, why)
}

// killGroup SIGKILLs inst's process group at once (no drain, no graceful
// go-plugin shutdown: a plugin that does not answer its pings answers
// neither), and records why for its exit reason.
func (s *supervisor) killGroup(inst *instance, why string) {
	inst.setKilledFor(why)
	if inst.proc != nil {
		if err := inst.proc.Kill(context.Background()); err != nil {
			s.log.Error("killing the unresponsive plugin failed", "pid", inst.pid, "error", err)
		}
	}
}
