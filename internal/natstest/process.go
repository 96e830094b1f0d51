package natstest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// stopTimeout bounds how long a server process may take to shut down
// after SIGTERM before it is killed.
const stopTimeout = 10 * time.Second

var binary struct {
	once sync.Once
	path string
	err  error
}

// natsServerBinary builds the module's nats-server (go.mod's tool line,
// the version the broker is tested against) once per test process, or
// finds it in the go command's cache, and returns its path.
func natsServerBinary() (string, error) {
	binary.once.Do(func() {
		var stderr bytes.Buffer
		cmd := exec.Command("go", "tool", "-n", "nats-server")
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			binary.err = fmt.Errorf("build nats-server (go tool -n nats-server): %w: %s", err, strings.TrimSpace(stderr.String()))
			return
		}
		binary.path = strings.TrimSpace(string(out))
	})
	return binary.path, binary.err
}

// processConfig is what one nats-server process of a cluster runs with;
// its ports and store stay the same across restarts.
type processConfig struct {
	bin, name, dir                 string
	port, clusterPort, monitorPort int
	routes                         []string
	maxPayload                     int
	confOnce                       sync.Once
	conf                           string
	confErr                        error
}

// process is one running nats-server.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd.Wait returned
	log  string
}

// config writes the server's configuration file, once.
func (p *processConfig) config() (string, error) {
	p.confOnce.Do(func() {
		var b strings.Builder
		fmt.Fprintf(&b, "server_name: %q\nlisten: \"127.0.0.1:%d\"\nhttp: \"127.0.0.1:%d\"\n", p.name, p.port, p.monitorPort)
		if p.maxPayload > 0 {
			fmt.Fprintf(&b, "max_payload: %d\n", p.maxPayload)
		}
		fmt.Fprintf(&b, "jetstream {\n  store_dir: %q\n}\n", filepath.Join(p.dir, "store"))
		quoted := make([]string, len(p.routes))
		for i, r := range p.routes {
			quoted[i] = fmt.Sprintf("%q", r)
		}
		fmt.Fprintf(&b, "cluster {\n  name: \"herald-test\"\n  listen: \"127.0.0.1:%d\"\n  routes: [%s]\n}\n",
			p.clusterPort, strings.Join(quoted, ", "))
		p.conf = filepath.Join(p.dir, "nats.conf")
		p.confErr = os.WriteFile(p.conf, []byte(b.String()), 0o600)
	})
	return p.conf, p.confErr
}

// start runs the server and waits until it accepts client connections. Its
// output goes to a log file in its directory, quoted when it fails.
func (p *processConfig) start(t testing.TB) (*process, error) {
	conf, err := p.config()
	if err != nil {
		return nil, fmt.Errorf("server %s: write its config: %w", p.name, err)
	}
	logPath := filepath.Join(p.dir, fmt.Sprintf("nats-%d.log", time.Now().UnixNano()))
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("server %s: %w", p.name, err)
	}
	cmd := exec.Command(p.bin, "-c", conf)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = dieWithParent()
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("server %s: start %s: %w", p.name, p.bin, err)
	}
	proc := &process{cmd: cmd, done: make(chan struct{}), log: logPath}
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(proc.done)
	}()
	if err := p.waitAccepting(proc); err != nil {
		_ = proc.stop()
		return nil, fmt.Errorf("server %s: %w\n%s", p.name, err, proc.tail())
	}
	return proc, nil
}

// waitAccepting waits until the server greets a client with its INFO.
func (p *processConfig) waitAccepting(proc *process) error {
	deadline := time.Now().Add(readyTimeout)
	addr := fmt.Sprintf("127.0.0.1:%d", p.port)
	for time.Now().Before(deadline) {
		select {
		case <-proc.done:
			return errors.New("exited before accepting connections")
		default:
		}
		if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			_ = conn.SetReadDeadline(time.Now().Add(time.Second))
			line, _ := bufio.NewReader(conn).ReadString('\n')
			conn.Close()
			if strings.HasPrefix(line, "INFO ") {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("not accepting connections on %s within %s", addr, readyTimeout)
}

// leadsWithPeers says whether the server is the JetStream meta leader and
// sees at least running-1 other servers online and caught up, from its
// monitoring endpoint.
func (p *processConfig) leadsWithPeers(running int) bool {
	client := http.Client{Timeout: time.Second}
	resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/jsz", p.monitorPort))
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var jsz struct {
		Meta *struct {
			Leader   string `json:"leader"`
			Replicas []struct {
				Current bool `json:"current"`
				Offline bool `json:"offline"`
			} `json:"replicas"`
		} `json:"meta_cluster"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&jsz) != nil || jsz.Meta == nil {
		return false
	}
	if jsz.Meta.Leader != p.name {
		return false
	}
	peers := 1
	for _, r := range jsz.Meta.Replicas {
		if r.Current && !r.Offline {
			peers++
		}
	}
	return peers >= running
}

// stop shuts the server down as an operator would (SIGTERM), killing it if
// it takes longer than stopTimeout, and waits until it has exited.
func (proc *process) stop() error {
	select {
	case <-proc.done:
		return nil
	default:
	}
	_ = proc.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-proc.done:
		return nil
	case <-time.After(stopTimeout):
	}
	_ = proc.cmd.Process.Kill()
	<-proc.done
	return fmt.Errorf("nats-server pid %d did not stop within %s of SIGTERM; killed", proc.cmd.Process.Pid, stopTimeout)
}

// tail is the end of the server's log, for an error.
func (proc *process) tail() string {
	b, err := os.ReadFile(proc.log)
	if err != nil {
		return ""
	}
	if len(b) > 4096 {
		b = b[len(b)-4096:]
	}
	return string(b)
}
