// Command plugin-bench measures the plugin path end to end: a plugin's
// emits delivered to real WebSocket clients through herald's plugin host,
// broker and hub. The emitter test plugin (internal/testplugins/emitter)
// runs the emit loop inside a running `herald serve`; this program opens
// the clients, subscribes them, starts the loop through
// POST /v1/plugins/emitter/run, and measures what arrives:
// notifications/s delivered, emit→delivery latency p50/p99 (the plugin
// stamps each object with the unix time in ns of its Emit), and the CPU
// time per notification of herald (from /proc, -pid) and of the plugin
// (its own getrusage, returned by the run). It prints one line and a
// one-line JSON summary; -table prints a table of such summaries beside
// the recorder figures of core/pluginhost's BenchmarkEmit (go test output,
// -recorder), with the ratio of the two.
//
// cmd/plugin-bench/bench.sh builds everything, starts a fresh herald per
// scenario and runs it (`make bench-plugin`, part of `make bench`).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
	"github.com/heraldhq/herald/internal/rlimit"
)

type options struct {
	url, key, secret string
	pid              int
	name             string
	clients          int
	channels         int
	count            int
	warmup           int
	workers          int
	per              int
	rate             float64
	connect          time.Duration
	drain            time.Duration
	table, recorder  string
	reader           string
	cpuprofile       string
}

func main() {
	var o options
	flag.StringVar(&o.url, "url", "http://127.0.0.1:7512", "herald's base URL")
	flag.StringVar(&o.key, "key", os.Getenv("HERALD_API_KEY"), "an API key of herald's auth.api_keys, to start the plugin's run")
	flag.StringVar(&o.secret, "secret", os.Getenv("HERALD_TOKEN_SECRET"), "auth.token_secret, to mint the clients' tokens")
	flag.IntVar(&o.pid, "pid", 0, "herald's process id, for its CPU time (0: not measured)")
	flag.StringVar(&o.name, "name", "plugin", "the scenario's name in the summary")
	flag.IntVar(&o.clients, "clients", 100, "WebSocket clients; client i subscribes to channel emitter:<i mod channels>")
	flag.IntVar(&o.channels, "channels", 100, "channels the plugin emits to in turn (at most -clients)")
	flag.IntVar(&o.count, "count", 200000, "notifications the plugin emits")
	flag.IntVar(&o.warmup, "warmup", 0, "notifications the plugin emits first, in the same shape as fast as herald acknowledges them, unmeasured: they fill the channels' histories and grow both processes' heaps, as on a server that has been running (0: none)")
	flag.IntVar(&o.workers, "workers", 512, "the plugin's emitting goroutines")
	flag.IntVar(&o.per, "per", 1, "notifications per Emit call")
	flag.Float64Var(&o.rate, "rate", 0, "notifications/s the plugin emits in total (0: as fast as herald acknowledges them)")
	flag.DurationVar(&o.connect, "connect-timeout", 30*time.Second, "longest time to connect and subscribe every client")
	flag.DurationVar(&o.drain, "drain", 10*time.Second, "longest wait for deliveries after the plugin's last emit was acknowledged")
	flag.StringVar(&o.reader, "reader", defaultReader, "how the clients read: epoll (Linux: one goroutine polls every socket, the cheapest for the machine herald shares) or gorilla (a goroutine and gorilla's reader per client)")
	flag.StringVar(&o.cpuprofile, "cpuprofile", "", "write this program's CPU profile of the emitting phase here")
	flag.StringVar(&o.table, "table", "", "print a table of the JSON summaries in this file (one a line) and exit")
	flag.StringVar(&o.recorder, "recorder", "", "with -table: go test -bench output of core/pluginhost's BenchmarkEmit, for the ratio")
	flag.Parse()
	var err error
	if o.table != "" {
		err = printTable(os.Stdout, o.table, o.recorder)
	} else {
		err = run(o)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "plugin-bench:", err)
		os.Exit(1)
	}
}

// summary is one run's figures, printed as one JSON line.
type summary struct {
	Name          string  `json:"scenario"`
	Clients       int     `json:"clients"`
	Channels      int     `json:"channels"`
	Workers       int     `json:"workers"`
	Per           int     `json:"per"`
	Rate          float64 `json:"rate"`
	Emitted       int64   `json:"emitted"`
	EmitPerS      float64 `json:"emitted_per_s"`
	Expected      int64   `json:"expected"`
	Delivered     int64   `json:"delivered"`
	DeliveredPerS float64 `json:"delivered_per_s"`
	Frames        int64   `json:"frames"`
	P50ms         float64 `json:"p50_ms"`
	P99ms         float64 `json:"p99_ms"`
	MaxMs         float64 `json:"max_ms"`
	HeraldCPUus   float64 `json:"herald_cpu_us_per_n"` // per delivered notification
	PluginCPUus   float64 `json:"plugin_cpu_us_per_n"` // per emitted notification
	BenchCPUus    float64 `json:"bench_cpu_us_per_n"`  // this program's, per delivered notification
	// PerBatch is the emit batch size the SDK reached: emitted notifications
	// per batch the host accepted (herald_plugin_emit_batches_total), to set
	// beside BenchmarkEmit's n/batch (0 when /metrics could not be read).
	PerBatch float64 `json:"n_per_batch"`
	Load1    string  `json:"load1"`
	// Warmup is the notifications emitted before the measured run (-warmup),
	// with herald's and the plugin's CPU per notification over them: what
	// the same shape costs a fresh herald.
	Warmup            int     `json:"warmup,omitempty"`
	WarmupHeraldCPUus float64 `json:"warmup_herald_cpu_us_per_n,omitempty"`
	WarmupPluginCPUus float64 `json:"warmup_plugin_cpu_us_per_n,omitempty"`
}

// run measures one scenario and prints its line and its JSON summary.
func run(o options) error {
	s, err := measure(o)
	if err != nil && s.Name == "" {
		return err
	}
	fmt.Printf("%s: emitted %d (%.0f/s), delivered %d of %d (%.0f/s, %.1f per frame), emit→delivery p50 %.2f ms p99 %.2f ms max %.2f ms, CPU per notification: herald %.2f µs, plugin %.2f µs, bench %.2f µs, load %s\n",
		s.Name, s.Emitted, s.EmitPerS, s.Delivered, s.Expected, s.DeliveredPerS, float64(s.Delivered)/float64(max(1, s.Frames)),
		s.P50ms, s.P99ms, s.MaxMs, s.HeraldCPUus, s.PluginCPUus, s.BenchCPUus, s.Load1)
	b, merr := json.Marshal(s)
	if merr != nil {
		return merr
	}
	fmt.Println(string(b))
	return err
}

// measure runs one scenario. A run that did not deliver everything
// returns its summary and an error.
func measure(o options) (summary, error) {
	switch {
	case o.secret == "":
		return summary{}, errors.New("-secret (or HERALD_TOKEN_SECRET) is required")
	case o.key == "":
		return summary{}, errors.New("-key (or HERALD_API_KEY) is required")
	case o.channels < 1 || o.clients < o.channels:
		return summary{}, fmt.Errorf("-channels %d: want 1..-clients (%d), so that every channel has a subscriber", o.channels, o.clients)
	case o.count < 1:
		return summary{}, fmt.Errorf("-count %d: want at least 1", o.count)
	case o.warmup < 0:
		return summary{}, fmt.Errorf("-warmup %d: want 0 or more", o.warmup)
	case o.reader != "epoll" && o.reader != "gorilla":
		return summary{}, fmt.Errorf("-reader %q: want epoll or gorilla", o.reader)
	}
	if _, err := rlimit.RaiseOpenFiles(); err != nil {
		return summary{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.connect)
	fl, err := connect(ctx, o)
	cancel()
	if err != nil {
		return summary{}, err
	}
	defer fl.close()

	var warm phase
	if o.warmup > 0 {
		wo := o
		wo.count, wo.rate = o.warmup, 0
		if warm, err = runPhase(wo, fl); err != nil {
			return summary{}, fmt.Errorf("warm-up: %w", err)
		}
		fmt.Printf("%s: warm-up of %d, CPU per notification: herald %.2f µs, plugin %.2f µs\n",
			o.name, warm.emitted, warm.heraldCPUus(), warm.pluginCPUus())
		fl.mark()
	}

	load := loadavg()
	if o.cpuprofile != "" {
		pf, err := os.Create(o.cpuprofile)
		if err != nil {
			return summary{}, err
		}
		defer pf.Close()
		if err := pprof.StartCPUProfile(pf); err != nil {
			return summary{}, err
		}
		defer pprof.StopCPUProfile()
	}
	ph, err := runPhase(o, fl)
	if err != nil && ph.expected == 0 {
		return summary{}, err
	}
	fl.close()

	lat, frames, last := fl.collect()
	slices.Sort(lat)
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))]) / 1e6
	}
	span := time.Duration(last - ph.res.StartNs)
	s := summary{
		Name: o.name, Clients: o.clients, Channels: o.channels, Workers: o.workers, Per: o.per, Rate: o.rate,
		Emitted: ph.emitted, EmitPerS: float64(ph.emitted) / time.Duration(ph.res.ElapsedNs).Seconds(),
		Expected: ph.expected, Delivered: ph.delivered, Frames: frames,
		P50ms: pct(0.50), P99ms: pct(0.99), MaxMs: pct(1),
		PluginCPUus: ph.pluginCPUus(),
		BenchCPUus:  float64(ph.benchNs) / 1e3 / float64(max(1, ph.delivered)),
		Load1:       load,
		HeraldCPUus: ph.heraldCPUus(),
		PerBatch:    ph.perBatch,
	}
	if o.warmup > 0 {
		s.Warmup, s.WarmupHeraldCPUus, s.WarmupPluginCPUus = o.warmup, warm.heraldCPUus(), warm.pluginCPUus()
	}
	if span > 0 {
		s.DeliveredPerS = float64(ph.delivered) / span.Seconds()
	}
	return s, err
}

// phase is what one run of the plugin's emit loop cost and delivered.
type phase struct {
	res                 runResult
	emitted             int64
	expected, delivered int64
	heraldNs            int64 // -1: not measured
	benchNs             int64
	perBatch            float64 // 0: /metrics could not be read
}

func (p phase) heraldCPUus() float64 {
	if p.heraldNs < 0 {
		return 0
	}
	return float64(p.heraldNs) / 1e3 / float64(max(1, p.delivered))
}

func (p phase) pluginCPUus() float64 {
	return float64(p.res.CPUNs) / 1e3 / float64(max(1, p.emitted))
}

// runPhase has the plugin emit o.count notifications and waits (at most
// o.drain) until the fleet has them all. A phase that did not deliver
// everything returns its figures and an error.
func runPhase(o options, fl *fleet) (phase, error) {
	// Every notification to channel c reaches each client subscribed to it.
	var expected int64
	for ch := range o.channels {
		subs := int64(o.clients / o.channels)
		if ch < o.clients%o.channels {
			subs++
		}
		expected += subs * int64((o.count-ch+o.channels-1)/o.channels)
	}
	base := fl.delivered()
	h0, herr0 := procCPU(o.pid)
	b0 := selfCPU()
	batches0, berr0 := emitBatches(o.url)
	res, err := startRun(o)
	if err != nil {
		return phase{}, err
	}
	// The plugin's last emit is acknowledged; wait for what is still on its
	// way to the clients, bounded by -drain.
	deadline := time.Now().Add(o.drain)
	for fl.delivered()-base < expected && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	h1, herr1 := procCPU(o.pid)
	b1 := selfCPU()
	batches1, berr1 := emitBatches(o.url)
	p := phase{res: res, emitted: res.Emitted, expected: expected, delivered: fl.delivered() - base, heraldNs: -1, benchNs: b1 - b0}
	if o.pid > 0 && herr0 == nil && herr1 == nil {
		p.heraldNs = h1 - h0
	}
	if berr0 == nil && berr1 == nil && batches1 > batches0 {
		p.perBatch = float64(res.Emitted) / (batches1 - batches0)
	}
	if p.delivered != expected {
		return p, fmt.Errorf("delivered %d of %d notifications within -drain %v", p.delivered, expected, o.drain)
	}
	return p, nil
}

// emitBatches reads herald_plugin_emit_batches_total of the emitter plugin
// from herald's /metrics (0 before the plugin's first emit, when the
// counter does not exist yet).
func emitBatches(base string) (float64, error) {
	resp, err := http.Get(strings.TrimSuffix(base, "/") + "/metrics")
	if err != nil {
		return 0, fmt.Errorf("read /metrics: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return 0, fmt.Errorf("read /metrics: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("read /metrics: %s", resp.Status)
	}
	v, err := metricValue(string(body), `herald_plugin_emit_batches_total{plugin="emitter"}`)
	if errors.Is(err, errNoSample) {
		return 0, nil // the plugin has not opened its emit stream yet
	}
	return v, err
}

var errNoSample = errors.New("no such sample")

// metricValue finds one sample, by its name and labels as written, in the
// Prometheus text format.
func metricValue(text, sample string) (float64, error) {
	for line := range strings.Lines(text) {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("/metrics: %s: %w", sample, errNoSample)
}

// runResult is the emitter plugin's answer to "run".
type runResult struct {
	Emitted   int64 `json:"emitted"`
	StartNs   int64 `json:"start_ns"`
	ElapsedNs int64 `json:"elapsed_ns"`
	CPUNs     int64 `json:"cpu_ns"`
}

// startRun calls the plugin's run through the backend API and waits for it:
// it answers once its last emit is acknowledged.
func startRun(o options) (runResult, error) {
	params, _ := json.Marshal(map[string]any{"count": o.count, "channels": o.channels, "workers": o.workers, "per": o.per, "rate": o.rate})
	req, err := http.NewRequest(http.MethodPost, strings.TrimSuffix(o.url, "/")+"/v1/plugins/emitter/run", bytes.NewReader(params))
	if err != nil {
		return runResult{}, err
	}
	req.Header.Set("Authorization", "Bearer "+o.key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 5 * time.Minute}).Do(req)
	if err != nil {
		return runResult{}, fmt.Errorf("emitter.run: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return runResult{}, fmt.Errorf("emitter.run: reading the answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return runResult{}, fmt.Errorf("emitter.run: %s: %s", resp.Status, bytes.TrimSpace(body))
	}
	var r runResult
	if err := json.Unmarshal(body, &r); err != nil {
		return runResult{}, fmt.Errorf("emitter.run: answer %.200q: %w", body, err)
	}
	return r, nil
}

// stampKey is the emitter's key for its Emit time in every object: nothing
// else in a frame has it, so counting it counts notifications without
// decoding the frame (the reader shares the machine's CPUs with herald).
const stampKey = `"emit_ns":`

// fleet is the run's clients. Each client's reader owns its latencies
// until the reader ends; counters are read while it runs.
type fleet struct {
	clients []*client
	wg      sync.WaitGroup
	once    sync.Once
	stop    func() // ends the epoll reader, if it runs
}

type client struct {
	ws        *websocket.Conn
	count     atomic.Int64 // notifications received
	lastNs    atomic.Int64 // arrival of the latest frame with notifications
	frames    atomic.Int64
	latencies []int64 // ns, one per notification; the reader's until it ends
	// skip and skipFrames are what arrived before fleet.mark: the warm-up's,
	// left out of collect.
	skip, skipFrames int64
	_                [32]byte
}

func connect(ctx context.Context, o options) (*fleet, error) {
	u, err := url.Parse(o.url)
	if err != nil {
		return nil, fmt.Errorf("-url: %w", err)
	}
	u.Scheme = strings.Replace(u.Scheme, "http", "ws", 1)
	u.Path = "/ws"
	dialer := websocket.Dialer{HandshakeTimeout: 10 * time.Second, ReadBufferSize: 64 << 10, WriteBufferSize: 1024}
	fl := &fleet{clients: make([]*client, o.clients)}
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	var first atomic.Value
	for i := range fl.clients {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := dialAndSubscribe(ctx, &dialer, *u, o.secret, i, "emitter:"+strconv.Itoa(i%o.channels))
			if err != nil {
				first.CompareAndSwap(nil, err)
				return
			}
			fl.clients[i] = c
		}()
	}
	wg.Wait()
	if err, _ := first.Load().(error); err != nil {
		for _, c := range fl.clients {
			if c != nil {
				_ = c.ws.Close()
			}
		}
		return nil, err
	}
	if o.reader == "epoll" {
		if err := fl.startEpoll(); err != nil {
			fl.close()
			return nil, err
		}
		return fl, nil
	}
	for _, c := range fl.clients {
		fl.wg.Add(1)
		go func() {
			defer fl.wg.Done()
			c.read()
		}()
	}
	return fl, nil
}

func dialAndSubscribe(ctx context.Context, d *websocket.Dialer, u url.URL, secret string, i int, channel string) (*client, error) {
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "bench" + strconv.Itoa(i), "exp": time.Now().Add(time.Hour).Unix()}).SignedString([]byte(secret))
	if err != nil {
		return nil, fmt.Errorf("client %d: token: %w", i, err)
	}
	where := u.String() // without the token
	u.RawQuery = "token=" + url.QueryEscape(tok)
	ws, _, err := d.DialContext(ctx, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("client %d: dial %s: %w", i, where, err)
	}
	req := `{"jsonrpc":"2.0","id":1,"method":"subscribe","params":{"channel":"` + channel + `"}}`
	_ = ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	if err := ws.WriteMessage(websocket.TextMessage, []byte(req)); err != nil {
		ws.Close()
		return nil, fmt.Errorf("client %d: subscribe: %w", i, err)
	}
	_, reply, err := ws.ReadMessage()
	if err != nil {
		ws.Close()
		return nil, fmt.Errorf("client %d: subscribe reply: %w", i, err)
	}
	if !bytes.Contains(reply, []byte(`"result"`)) {
		ws.Close()
		return nil, fmt.Errorf("client %d: subscribe to %s refused: %.200s", i, channel, reply)
	}
	_ = ws.SetReadDeadline(time.Time{})
	_ = ws.SetWriteDeadline(time.Time{})
	return &client{ws: ws}, nil
}

// read takes every message with gorilla's reader until the connection is
// closed.
func (c *client) read() {
	var buf bytes.Buffer
	for {
		_, r, err := c.ws.NextReader()
		if err != nil {
			return
		}
		buf.Reset()
		if _, err := buf.ReadFrom(r); err != nil {
			return
		}
		c.take(buf.Bytes(), time.Now().UnixNano())
	}
}

// take counts the notifications of one message that arrived at now: each
// stamp is one, its latency now minus the stamp.
func (c *client) take(b []byte, now int64) {
	n := int64(0)
	for {
		k := bytes.Index(b, []byte(stampKey))
		if k < 0 {
			break
		}
		b = b[k+len(stampKey):]
		var t int64
		end := 0
		for ; end < len(b) && end < 19 && b[end] >= '0' && b[end] <= '9'; end++ {
			t = t*10 + int64(b[end]-'0')
		}
		if end > 0 {
			c.latencies = append(c.latencies, now-t)
			n++
		}
	}
	if n > 0 {
		c.frames.Add(1)
		c.lastNs.Store(now)
		c.count.Add(n)
	}
}

func (f *fleet) delivered() int64 {
	var n int64
	for _, c := range f.clients {
		n += c.count.Load()
	}
	return n
}

// close closes every connection and waits for the readers to end.
func (f *fleet) close() {
	f.once.Do(func() {
		if f.stop != nil {
			f.stop()
		}
		for _, c := range f.clients {
			_ = c.ws.Close()
		}
		f.wg.Wait()
	})
}

// mark sets what has arrived so far apart: collect leaves it out. Called
// between phases, when everything sent has arrived and nothing more is on
// its way. A client's latencies are appended before its count grows, so
// the first count of them are the ones before the mark.
func (f *fleet) mark() {
	for _, c := range f.clients {
		c.skip, c.skipFrames = c.count.Load(), c.frames.Load()
	}
}

// collect returns every latency since the mark, the frames since it and the
// last arrival; only after close.
func (f *fleet) collect() (lat []int64, frames, lastNs int64) {
	for _, c := range f.clients {
		lat = append(lat, c.latencies[c.skip:]...)
		frames += c.frames.Load() - c.skipFrames
		lastNs = max(lastNs, c.lastNs.Load())
	}
	return lat, frames, lastNs
}

// procCPU is a process's user + system CPU time in ns, from /proc (Linux).
func procCPU(pid int) (int64, error) {
	if pid <= 0 {
		return 0, errors.New("no pid")
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command (which may hold spaces) start after ") ";
	// utime and stime are fields 14 and 15, in clock ticks (100 a second
	// on Linux, where USER_HZ is fixed).
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return (u + s) * int64(time.Second/100), nil
}

func selfCPU() int64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Fields(string(b))[0]
}
