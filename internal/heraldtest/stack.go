package heraldtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// PluginOptions shape a herald that serves one plugin built from this
// repository: the config has a plugin block for it and, as asked, a state
// block and a NATS broker.
type PluginOptions struct {
	// Name is the plugin's name in the config and in its HTTP routes; its
	// main package is plugins/<Name> unless Package says otherwise.
	Name    string
	Package string
	// Config is the body of the plugin's config {} block (HCL); none when
	// empty.
	Config string
	// StateDir, when set, is the state block's dir.
	StateDir string
	// NATS, when set, is the URL of a broker "nats" block.
	NATS string
	// HCL is appended to the config after the plugin block, Auth replaces
	// the auth block's body (see Options).
	HCL  string
	Auth string
	// NoWait returns as soon as herald listens, before /readyz says the
	// plugin is up (then call WaitReady): for tests that start several
	// nodes at once.
	NoWait bool
}

// Stack is a running herald serving one plugin.
type Stack struct {
	*Herald
	// Bin is the plugin's binary, Name its name.
	Bin  string
	Name string
}

// StartPlugin builds the plugin (once per test process), starts herald
// with it and waits until /readyz answers 200, unless o.NoWait. It skips
// the test under -short.
func StartPlugin(t testing.TB, o PluginOptions) *Stack {
	t.Helper()
	if testing.Short() {
		t.Skipf("integration test: starts herald and the %s plugin", o.Name)
	}
	pkg := o.Package
	if pkg == "" {
		pkg = "plugins/" + o.Name
	}
	bin := Binary(t, pkg)
	var hcl strings.Builder
	if o.NATS != "" {
		fmt.Fprintf(&hcl, "broker \"nats\" {\n  url = %q\n}\n", o.NATS)
	}
	if o.StateDir != "" {
		fmt.Fprintf(&hcl, "state {\n  dir = %q\n}\n", o.StateDir)
	}
	fmt.Fprintf(&hcl, "plugin %q {\n  command = %q\n", o.Name, bin)
	if o.Config != "" {
		fmt.Fprintf(&hcl, "  config {\n%s\n  }\n", strings.TrimRight(o.Config, "\n"))
	}
	hcl.WriteString("}\n")
	hcl.WriteString(o.HCL)
	s := &Stack{Herald: Start(t, Options{HCL: hcl.String(), Auth: o.Auth}), Bin: bin, Name: o.Name}
	if !o.NoWait {
		s.WaitReady(t)
	}
	return s
}

// StartPluginNodes starts n herald nodes serving the plugin at once (o
// names the shared broker, o.NATS) and returns once every one is ready:
// nodes of a cluster started one after the other would each wait for
// the others' first heartbeats.
func StartPluginNodes(t testing.TB, n int, o PluginOptions) []*Stack {
	t.Helper()
	o.NoWait = true
	nodes := make([]*Stack, n)
	var wg sync.WaitGroup
	for i := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nodes[i] = StartPlugin(t, o)
		}()
	}
	wg.Wait()
	for _, s := range nodes {
		if s == nil {
			t.FailNow() // StartPlugin reported why
		}
		s.WaitReady(t)
	}
	return nodes
}

// WaitReady waits until /readyz answers 200: every plugin is up.
func (s *Stack) WaitReady(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(Timeout)
	for time.Now().Before(deadline) {
		if st, _ := s.Do(t, http.MethodGet, "/readyz", nil, "", nil); st == http.StatusOK {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("heraldtest: herald never became ready\n%s", s.Logs())
}

// PluginProcess is the pid of the plugin's process, 0 when none runs.
func (s *Stack) PluginProcess() int { return s.PluginPID(s.Bin) }

// KillPlugin kills the plugin with SIGKILL and returns its pid.
func (s *Stack) KillPlugin(t testing.TB) int {
	t.Helper()
	old := s.PluginProcess()
	if old == 0 {
		t.Fatalf("heraldtest: %s plugin process not found", s.Name)
	}
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatalf("heraldtest: kill %s plugin: %v", s.Name, err)
	}
	return old
}

// WaitRestart waits for a plugin process other than old, then for /readyz.
func (s *Stack) WaitRestart(t testing.TB, old int) {
	t.Helper()
	deadline := time.Now().Add(Timeout)
	for time.Now().Before(deadline) {
		if p := s.PluginProcess(); p != 0 && p != old {
			s.WaitReady(t)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("heraldtest: %s plugin was not restarted after kill -9\n%s", s.Name, s.Logs())
}

// Kill9 kills the plugin with SIGKILL and waits until herald restarted it
// and is ready.
func (s *Stack) Kill9(t testing.TB) {
	t.Helper()
	s.WaitRestart(t, s.KillPlugin(t))
}

// Backend POSTs body to the plugin's method /v1/plugins/<name>/<method>
// with the test API key.
func (s *Stack) Backend(t testing.TB, method string, body any) (int, json.RawMessage) {
	t.Helper()
	return s.Do(t, http.MethodPost, "/v1/plugins/"+s.Name+"/"+method, body, APIKey, nil)
}

// MustBackend is Backend that fails the test unless the answer is 200.
func (s *Stack) MustBackend(t testing.TB, method string, body any) json.RawMessage {
	t.Helper()
	st, b := s.Backend(t, method, body)
	if st != http.StatusOK {
		t.Fatalf("heraldtest: %s %s: %d %s", s.Name, method, st, b)
	}
	return b
}
