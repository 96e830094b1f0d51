package pluginhost

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"

	"github.com/hashicorp/go-plugin/runner"
)

// groupRunner runs a plugin process for go-plugin (ClientConfig.RunnerFunc)
// so that the host decides when the process is reaped. A plugin runs in its
// own process group, and killing the group after the leader was reaped could
// hit an unrelated group that was given the same id. So:
//
//   - when the leader exits, for whatever reason, the runner first kills its
//     group (whatever the plugin started in the group dies with it, and its
//     pipes close; a child that left the group, with setsid, does not),
//     and only then reaps the leader;
//   - Kill kills the group only while the leader is not reaped, and is a
//     no-op afterwards.
//
// Where the system cannot wait without reaping (waitExited false), the
// leader is reaped at once and Kill signals the process alone.
type groupRunner struct {
	cmd    *exec.Cmd
	stdout io.ReadCloser
	stderr io.ReadCloser
	path   string
	pid    int

	mu       sync.Mutex
	reaped   bool
	exit     string        // how the leader ended, once reaped: "killed by signal SIGKILL"
	grouped  bool          // the leader's exit is watched: group kills are safe until reaped
	exited   chan struct{} // closed once the leader exited (and its group was killed)
	waitDone chan struct{}
}

var _ runner.Runner = (*groupRunner)(nil)

func newGroupRunner(cmd *exec.Cmd) (*groupRunner, error) {
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	return &groupRunner{cmd: cmd, stdout: stdout, stderr: stderr, path: cmd.Path,
		exited: make(chan struct{}), waitDone: make(chan struct{})}, nil
}

func (r *groupRunner) Start(context.Context) error {
	if err := r.cmd.Start(); err != nil {
		return err
	}
	r.mu.Lock()
	r.pid = r.cmd.Process.Pid
	r.grouped = true
	r.mu.Unlock()
	go r.watch() // ends when the leader exits
	return nil
}

// watch waits for the leader to exit without reaping it, then kills its
// group while the group id is surely still the plugin's.
func (r *groupRunner) watch() {
	defer close(r.exited)
	if !waitExited(r.pid) {
		r.mu.Lock()
		r.grouped = false
		r.mu.Unlock()
		return
	}
	r.mu.Lock()
	signalGroup(r.pid)
	r.mu.Unlock()
}

// Wait reaps the leader, after watch killed its group.
func (r *groupRunner) Wait(context.Context) error {
	<-r.exited
	err := r.cmd.Wait()
	r.mu.Lock()
	r.reaped = true
	r.exit = describeExit(r.cmd.ProcessState)
	r.mu.Unlock()
	return err
}

// exitReason says how the process ended ("killed by signal SIGKILL",
// "exited with status 2"), or "" while it was not reaped.
func (r *groupRunner) exitReason() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.exit
}

// Kill ends the plugin and its group; after the leader was reaped there is
// nothing left to kill (watch killed the group before the reap).
func (r *groupRunner) Kill(context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.reaped || r.cmd.Process == nil {
		return nil
	}
	if r.grouped {
		signalGroup(r.pid)
		return nil
	}
	if err := r.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	return nil
}

func (r *groupRunner) Stdout() io.ReadCloser { return r.stdout }
func (r *groupRunner) Stderr() io.ReadCloser { return r.stderr }
func (r *groupRunner) Name() string          { return r.path }
func (r *groupRunner) ID() string            { return fmt.Sprintf("%d", r.pid) }

func (r *groupRunner) Diagnose(context.Context) string {
	return "the plugin did not complete the go-plugin handshake: is it a Herald plugin built for this system, and executable?"
}

func (r *groupRunner) PluginToHost(network, addr string) (string, string, error) {
	return network, addr, nil
}

func (r *groupRunner) HostToPlugin(network, addr string) (string, string, error) {
	return network, addr, nil
}
