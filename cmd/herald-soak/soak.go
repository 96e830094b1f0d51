package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/heraldhq/herald/internal/rlimit"
)

const apiKey = "soak-api-key"

// herald is the process under test.
type herald struct {
	cmd  *exec.Cmd
	url  string // http://host:port
	logs string // where its output goes
}

var listenRe = regexp.MustCompile(`listening: addr=(\S+)`)

// startHerald writes a config (anonymous clients, one API key, the plugin)
// and starts herald on a free port.
func startHerald(ctx context.Context, o options, dir string) (*herald, error) {
	plugin, err := filepath.Abs(o.plugin)
	if err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf(`server {
  listen = "127.0.0.1:0"
}
auth {
  anonymous = true
  api_keys  = [%q]
}
history {
  ttl = %q
}
plugin "tester" {
  command = %q
}
`, apiKey, o.historyTTL.String(), plugin)
	path := filepath.Join(dir, "config.hcl")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return nil, fmt.Errorf("write config: %w", err)
	}
	logPath := filepath.Join(dir, "herald.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(o.herald, "serve", "-config", path)
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = logFile, io.MultiWriter(logFile, pw)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", o.herald, err)
	}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if m := listenRe.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
		}
	}()
	select {
	case a := <-addr:
		return &herald{cmd: cmd, url: "http://" + a, logs: logPath}, nil
	case <-time.After(30 * time.Second):
	case <-ctx.Done():
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	return nil, fmt.Errorf("herald did not start; see %s", logPath)
}

func (h *herald) stop() {
	_ = h.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = h.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = h.cmd.Process.Kill()
		<-done
	}
}

// post calls the HTTP API; it reports whether the call succeeded.
func (h *herald) post(path string, body any) bool {
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, h.url+path, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+apiKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// sample is herald's resources at one time.
type sample struct {
	at         time.Duration
	rssKiB     int
	goroutines int
	fds        int
	serverConn int
}

func (h *herald) sample(start time.Time) (sample, error) {
	pid := h.cmd.Process.Pid
	s := sample{at: time.Since(start).Round(time.Second)}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, fmt.Errorf("read status: %w", err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			s.rssKiB, _ = strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
		}
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return s, fmt.Errorf("read fds: %w", err)
	}
	s.fds = len(fds)
	resp, err := http.Get(h.url + "/metrics")
	if err != nil {
		return s, fmt.Errorf("metrics: %w", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			s.goroutines, _ = strconv.Atoi(v)
		}
		if v, ok := strings.CutPrefix(sc.Text(), "herald_connections "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			s.serverConn = int(f)
		}
	}
	return s, sc.Err()
}

// pluginPids are herald's child processes (its plugins).
func (h *herald) pluginPids() []int {
	ppid := strconv.Itoa(h.cmd.Process.Pid)
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		if f := strings.Fields(string(stat[i+1:])); len(f) > 1 && f[1] == ppid {
			out = append(out, pid)
		}
	}
	return out
}

// counters are the load's outcomes.
type counters struct {
	mu                            sync.Mutex
	published, publishFailed      int
	emitted, emitFailed, kills    int
	received, dialFailed, churned int
}

func (c *counters) add(f func(c *counters)) {
	c.mu.Lock()
	f(c)
	c.mu.Unlock()
}

func soak(ctx context.Context, o options, out io.Writer) error {
	if limit, err := rlimit.RaiseOpenFiles(); err == nil && limit < uint64(o.conns)+256 {
		return fmt.Errorf("open-file limit %d is too low for %d connections (ulimit -n)", limit, o.conns)
	}
	dir, err := os.MkdirTemp("", "herald-soak-")
	if err != nil {
		return err
	}
	h, err := startHerald(ctx, o, dir)
	if err != nil {
		return err
	}
	defer h.stop()
	fmt.Fprintf(out, "herald pid %d at %s, logs in %s\n", h.cmd.Process.Pid, h.url, h.logs)

	var cnt counters
	p := newPool(strings.Replace(h.url, "http", "ws", 1)+"/ws", o.channels, &cnt)
	defer p.closeAll()
	fmt.Fprintf(out, "opening %d connections...\n", o.conns)
	if err := p.fill(ctx, o.conns); err != nil {
		return err
	}

	start := time.Now()
	loadCtx, stopLoad := context.WithTimeout(ctx, o.duration)
	defer stopLoad()
	var wg sync.WaitGroup
	every := func(rate float64, f func()) {
		if rate <= 0 {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(time.Duration(float64(time.Second) / rate))
			defer t.Stop()
			for {
				select {
				case <-loadCtx.Done():
					return
				case <-t.C:
					f()
				}
			}
		}()
	}
	every(o.publishRate, func() {
		ok := h.post("/v1/publish", map[string]any{"channel": fmt.Sprintf("soak-%d", rand.IntN(o.channels)), "event": "tick", "object_type": "soak", "object": map[string]any{"t": time.Now().UnixNano()}})
		cnt.add(func(c *counters) {
			if ok {
				c.published++
			} else {
				c.publishFailed++
			}
		})
	})
	every(o.emitRate, func() {
		ok := h.post("/v1/plugins/tester/emitN", map[string]any{"channel": fmt.Sprintf("tester:ok-%d", rand.IntN(o.channels)), "from": 0, "count": 3})
		cnt.add(func(c *counters) {
			if ok {
				c.emitted++
			} else {
				c.emitFailed++ // expected while the plugin restarts
			}
		})
	})
	every(1, func() { p.churn(ctx, int(o.churn*float64(o.conns)+0.5)) })
	if o.killEvery > 0 {
		every(1/o.killEvery.Seconds(), func() {
			for _, pid := range h.pluginPids() {
				if syscall.Kill(pid, syscall.SIGKILL) == nil {
					cnt.add(func(c *counters) { c.kills++ })
				}
			}
		})
	}

	fmt.Fprintf(out, "%8s %7s %7s %10s %8s %6s %9s %9s %7s %5s\n", "elapsed", "conns", "server", "rss_mib", "gorout", "fds", "received", "published", "emitted", "kills")
	var samples []sample
	print := func() error {
		s, err := h.sample(start)
		if err != nil {
			return err
		}
		samples = append(samples, s)
		cnt.mu.Lock()
		fmt.Fprintf(out, "%8s %7d %7d %10.1f %8d %6d %9d %9d %7d %5d\n", s.at, p.open(), s.serverConn, float64(s.rssKiB)/1024, s.goroutines, s.fds,
			cnt.received, cnt.published, cnt.emitted, cnt.kills)
		cnt.mu.Unlock()
		return nil
	}
	t := time.NewTicker(o.interval)
	defer t.Stop()
loop:
	for {
		select {
		case <-loadCtx.Done():
			break loop
		case <-t.C:
			if err := print(); err != nil {
				return err
			}
		}
	}
	wg.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	// Let restarts and in-flight work settle, with every connection back.
	_ = p.fill(ctx, o.conns)
	time.Sleep(2 * time.Second)
	if err := print(); err != nil {
		return err
	}
	cnt.mu.Lock()
	fmt.Fprintf(out, "publishes failed %d, plugin emits failed %d (while it restarted), dials failed %d, connections replaced %d\n",
		cnt.publishFailed, cnt.emitFailed, cnt.dialFailed, cnt.churned)
	cnt.mu.Unlock()
	if len(samples) < 2 {
		return fmt.Errorf("only %d sample(s): make -duration longer than -interval", len(samples))
	}
	// The baseline is the first sample once the history is full (it grows
	// for history.ttl, then expires as fast as it fills), if the soak ran
	// that long; else the first.
	base := samples[0]
	for _, s := range samples[:len(samples)-1] {
		if s.at >= o.historyTTL+o.interval {
			base = s
			break
		}
	}
	return verdict(out, base, samples[len(samples)-1])
}

// verdict compares the last sample with the baseline (every connection
// up, the history full if the soak ran long enough): generous margins,
// since the point is to catch growth that follows the churn, not noise.
func verdict(out io.Writer, first, last sample) error {
	type check struct {
		name     string
		from, to int
		allowed  int
	}
	checks := []check{
		{"rss_kib", first.rssKiB, last.rssKiB, first.rssKiB/4 + 32<<10},
		{"goroutines", first.goroutines, last.goroutines, first.goroutines/10 + 100},
		{"open_files", first.fds, last.fds, first.fds/20 + 50},
	}
	flat := true
	for _, c := range checks {
		ok := c.to-c.from <= c.allowed
		flat = flat && ok
		word := "flat"
		if !ok {
			word = "GROWING"
		}
		fmt.Fprintf(out, "%-11s %9d at %s -> %9d at %s (allowed +%d): %s\n", c.name, c.from, first.at, c.to, last.at, c.allowed, word)
	}
	if !flat {
		return fmt.Errorf("not flat: herald kept growing under churn")
	}
	fmt.Fprintln(out, "flat: RSS, goroutines and open files did not grow")
	return nil
}
