package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/heraldhq/herald/core/auth"
)

// summary is the one-line JSON result of a run.
type summary struct {
	Name             string         `json:"name"`
	Mode             string         `json:"mode"`
	Reader           string         `json:"reader"`
	CPUs             int            `json:"cpus"`
	Clients          int            `json:"clients"`
	Connected        int            `json:"connected"`
	ConnectErrors    int            `json:"connect_errors"`
	ConnectSeconds   float64        `json:"connect_s"`
	Dropped          int64          `json:"dropped"`
	CloseCodes       map[string]int `json:"close_codes,omitempty"`
	Rate             float64        `json:"rate"`
	DurationSeconds  float64        `json:"duration_s"`
	Published        int64          `json:"published"`
	PublishErrors    int64          `json:"publish_errors"`
	Unsent           int64          `json:"unsent"`
	Expected         int64          `json:"expected"`
	Delivered        int64          `json:"delivered"`
	DeliveryRatio    float64        `json:"delivery_ratio"`
	DeliveredPerSec  float64        `json:"delivered_per_s"`
	PerFrame         float64        `json:"notifications_per_frame"`
	P50Ms            float64        `json:"p50_ms"`
	P95Ms            float64        `json:"p95_ms"`
	P99Ms            float64        `json:"p99_ms"`
	MaxMs            float64        `json:"max_ms"`
	PublishHTTPP99Ms float64        `json:"publish_http_p99_ms"`
	PublishLateMaxMs float64        `json:"publish_late_max_ms"`
	// Nodes is how many herald nodes the run spread its clients and
	// publishes over; Split says the first took every publish and the
	// others every client.
	Nodes int  `json:"nodes"`
	Split bool `json:"split,omitempty"`
	// Warmup says every channel had one publish before the measured
	// phase (-warmup).
	Warmup bool `json:"warmup,omitempty"`
	// The server figures are summed over the herald nodes (-pid); NATS's
	// CPU (-nats-pid) is apart.
	ServerRSSBaseMiB float64 `json:"server_rss_base_mib,omitempty"`
	ServerRSSMiB     float64 `json:"server_rss_mib,omitempty"`
	RSSPerConnKiB    float64 `json:"rss_per_conn_kib,omitempty"`
	ServerCPUSeconds float64 `json:"server_cpu_s,omitempty"`
	NATSCPUSeconds   float64 `json:"nats_cpu_s,omitempty"`
	// CPUPerDeliveredUs is the CPU of every measured server process
	// (herald nodes and NATS) during the publishing phase, in µs, over the
	// notifications delivered.
	CPUPerDeliveredUs float64 `json:"cpu_us_per_delivered,omitempty"`
	// Procs breaks the server figures down per process when there is more
	// than one.
	Procs           []procSummary `json:"procs,omitempty"`
	BenchCPUSeconds float64       `json:"bench_cpu_s"`
	// LoadAvg is the machine's 1-minute load average at the end: on a
	// shared machine, what else competed for the CPU.
	LoadAvg float64  `json:"loadavg_1m"`
	Errors  []string `json:"errors,omitempty"`
}

func runScenario(ctx context.Context, o options, out io.Writer) (*summary, error) {
	sum := &summary{Name: o.Name, Mode: o.Mode, Reader: o.Reader, CPUs: runtime.NumCPU(), Clients: o.Clients, Rate: o.Rate,
		Nodes: len(o.URLs), Split: o.Split, Warmup: o.Warmup && o.Rate > 0}
	logf := func(format string, args ...any) {
		fmt.Fprintf(out, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, args...)...)
	}
	token, err := auth.NewTokens(o.Secret).Mint("bench", 24*time.Hour, nil)
	if err != nil {
		return nil, err
	}
	procs := newProcSet(o)
	if err := procs.read(func(p *proc) *procStat { return &p.base }); err != nil {
		return nil, err
	}
	clientNodes, publishNodes := o.roles()

	if len(o.URLs) > 1 {
		logf("%s: connecting %d clients at %d/s over nodes %v, publishing on nodes %v of %v", o.Name, o.Clients, o.ConnectRate,
			clientNodes, publishNodes, o.URLs)
	} else {
		logf("%s: connecting %d clients at %d/s", o.Name, o.Clients, o.ConnectRate)
	}
	t0 := time.Now()
	f, failures, errs := connect(ctx, o, token, clientNodes)
	sum.ConnectSeconds = time.Since(t0).Seconds()
	sum.Connected, sum.ConnectErrors, sum.Errors = len(f.clients), failures, errs
	logf("connected and subscribed %d in %.1fs (%d failed)", len(f.clients), sum.ConnectSeconds, failures)
	defer f.stop(5 * time.Second)
	f.readPause = o.ReadPause
	if err := f.start(o.Reader); err != nil {
		return nil, fmt.Errorf("start reading: %w", err)
	}

	if o.Warmup && o.Rate > 0 {
		warmup(ctx, o, f, publishNodes, logf)
	}
	sleep(ctx, o.Settle)
	// CPU is counted from here, for herald and for this process alike: the
	// publishing phase, not the handshakes.
	self0, _ := readProc(os.Getpid())
	if err := procs.read(func(p *proc) *procStat { return &p.start }); err != nil {
		return nil, err
	}
	if len(o.PIDs) > 0 {
		var base, settled int64
		for _, p := range procs {
			if p.role == "herald" {
				base, settled = base+p.base.RSSBytes, settled+p.start.RSSBytes
			}
		}
		perConn := 0.0
		if n := len(f.clients); n > 0 {
			perConn = float64(settled-base) / float64(n) / 1024
		}
		logf("server RSS %.1f MiB (%.1f before connecting): %.2f KiB per connection", mib(settled), mib(base), perConn)
	}

	p := newPublisher(o, f, publishNodes)
	if o.Rate > 0 {
		logf("publishing %g/s for %v, %d per request", o.Rate, o.Duration, o.Batch)
		start := time.Now()
		p.run(ctx)
		pubDone := time.Now()
		// Wait for outstanding deliveries, at most o.Drain.
		deadline := pubDone.Add(o.Drain)
		last, lastAt := f.deliveredTotal(), time.Now()
		for time.Now().Before(deadline) && ctx.Err() == nil {
			n := f.deliveredTotal()
			if n != last {
				last, lastAt = n, time.Now()
			}
			if n >= p.expected.Load() {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		sum.DurationSeconds = pubDone.Sub(start).Seconds()
		sum.DeliveredPerSec = float64(last) / lastAt.Sub(start).Seconds()
		logf("published %d in %.1fs (%d failed, %d unsent); delivered %d of %d", p.published.Load(), sum.DurationSeconds,
			p.failed.Load(), p.unsent.Load(), last, p.expected.Load())
	}
	if err := procs.read(func(p *proc) *procStat { return &p.end }); err != nil {
		// A process that ended cannot be measured: no CPU figure is
		// given (zero, left out of the summary); memory, read before, is.
		sum.Errors = append(sum.Errors, err.Error())
		for _, p := range procs {
			p.end = p.start
		}
	}
	if self1, err := readProc(os.Getpid()); err == nil {
		sum.BenchCPUSeconds = (self1.CPU - self0.CPU).Seconds()
	}

	f.stop(5 * time.Second)
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		_, _ = fmt.Sscan(string(b), &sum.LoadAvg)
	}
	sum.Published, sum.PublishErrors, sum.Expected = p.published.Load(), p.failed.Load(), p.expected.Load()
	sum.Unsent = p.unsent.Load()
	sum.Delivered = f.deliveredTotal()
	if frames := total(&f.frames); frames > 0 {
		sum.PerFrame = float64(sum.Delivered) / float64(frames)
	}
	if sum.Expected > 0 {
		sum.DeliveryRatio = float64(sum.Delivered) / float64(sum.Expected)
	}
	sum.Dropped = f.dropped.Load()
	clients, delivered := f.nodeCounts()
	procs.summarize(sum, o, nodeCounts{clients: clients, published: p.publishedVia(), delivered: delivered})
	if len(f.closeCodes) > 0 {
		sum.CloseCodes = map[string]int{}
		for code, n := range f.closeCodes {
			sum.CloseCodes[fmt.Sprint(code)] = n
		}
	}
	counts, maxNs := merged(f.latency[:])
	sum.P50Ms, sum.P95Ms, sum.P99Ms = quantileMs(&counts, 0.50), quantileMs(&counts, 0.95), quantileMs(&counts, 0.99)
	sum.MaxMs = float64(maxNs) / 1e6
	var httpCounts [1024]uint64
	for i := range p.httpLat.counts {
		httpCounts[i] = p.httpLat.counts[i].Load()
	}
	sum.PublishHTTPP99Ms = quantileMs(&httpCounts, 0.99)
	sum.PublishLateMaxMs = float64(p.lateMax.Load()) / 1e6
	if p.firstErr != "" {
		sum.Errors = append(sum.Errors, p.firstErr)
	}
	logf("delivery %.4f, %.0f notifications/s (%.1f a frame), latency p50 %.2f ms p95 %.2f ms p99 %.2f ms max %.2f ms; server CPU %.1fs, bench CPU %.1fs",
		sum.DeliveryRatio, sum.DeliveredPerSec, sum.PerFrame, sum.P50Ms, sum.P95Ms, sum.P99Ms, sum.MaxMs, sum.ServerCPUSeconds, sum.BenchCPUSeconds)
	if o.NATSPID > 0 {
		logf("NATS CPU %.1fs", sum.NATSCPUSeconds)
	}
	if sum.CPUPerDeliveredUs > 0 {
		logf("server CPU per delivered notification %.2f µs", sum.CPUPerDeliveredUs)
	}
	for _, ps := range sum.Procs {
		logf("  %s pid %d %s: %d clients, %d published, %d delivered, CPU %.2fs (%s µs/delivered, %s µs/published), RSS %.1f MiB",
			ps.Role, ps.PID, ps.URL, ps.Clients, ps.Published, ps.Delivered, ps.CPUSeconds, usOrDash(ps.CPUPerDeliveredUs), usOrDash(ps.CPUPerPublishedUs), ps.RSSMiB)
	}
	return sum, nil
}

// warmup publishes one notification to every target channel, at o.Rate,
// waits for their deliveries (o.Drain at most) and forgets them: a broker
// that does per-channel work on a channel's first publish (NATS: read its
// position, record its run) then shows its steady cost in the measured
// phase.
func warmup(ctx context.Context, o options, f *fleet, publishNodes []int, logf func(string, ...any)) {
	p := newPublisher(o, f, publishNodes)
	p.requests = (len(p.channels) + o.Batch - 1) / o.Batch
	p.o.Duration = time.Duration(float64(time.Second) * float64(p.requests*o.Batch) / o.Rate)
	logf("warm-up: publishing to each of %d channels at %g/s", len(p.channels), o.Rate)
	start := time.Now()
	p.run(ctx)
	deadline := time.Now().Add(o.Drain)
	for f.deliveredTotal() < p.expected.Load() && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	logf("warm-up: published %d in %.1fs (%d failed, %d unsent); delivered %d of %d; now forgotten", p.published.Load(),
		time.Since(start).Seconds(), p.failed.Load(), p.unsent.Load(), f.deliveredTotal(), p.expected.Load())
	f.reset()
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-time.After(d):
	case <-ctx.Done():
	}
}

// printTable prints the JSON summaries of path (other lines are skipped) as
// a Markdown table. When a run spread over several nodes or measured NATS,
// the table gains the cluster columns and a second table breaks each such
// run down per process.
func printTable(path string, out io.Writer) error {
	fh, err := os.Open(path)
	if err != nil {
		return err
	}
	defer fh.Close()
	var rows []summary
	sc := bufio.NewScanner(fh)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var s summary
		if json.Unmarshal([]byte(line), &s) == nil && s.Mode != "" {
			rows = append(rows, s)
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].Name < rows[j].Name })
	cluster := slices.ContainsFunc(rows, func(s summary) bool { return s.Nodes > 1 || s.NATSCPUSeconds > 0 || len(s.Procs) > 0 })
	head := "| scenario | clients | published | delivered | ratio | notif/s | per frame | p50 ms | p95 ms | p99 ms | max ms | RSS/conn KiB | server CPU s | bench CPU s | load |"
	rule := "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
	if cluster {
		head = "| scenario | nodes | clients | published | delivered | ratio | notif/s | per frame | p50 ms | p95 ms | p99 ms | max ms | RSS/conn KiB | herald CPU s | NATS CPU s | CPU µs/notif | bench CPU s | load |"
		rule = "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
	}
	fmt.Fprintln(out, head)
	fmt.Fprintln(out, rule)
	for _, s := range rows {
		ratio, rate, per, lat := "–", "–", "–", [4]string{"–", "–", "–", "–"}
		if s.Rate > 0 {
			ratio = fmt.Sprintf("%.4f", s.DeliveryRatio)
			rate = fmt.Sprintf("%.0f", s.DeliveredPerSec)
			per = fmt.Sprintf("%.1f", s.PerFrame)
			lat = [4]string{ms(s.P50Ms), ms(s.P95Ms), ms(s.P99Ms), ms(s.MaxMs)}
		}
		if !cluster {
			fmt.Fprintf(out, "| %s | %d/%d | %d | %d | %s | %s | %s | %s | %s | %s | %s | %.1f | %.1f | %.1f | %.1f |\n",
				s.Name, s.Connected, s.Clients, s.Published, s.Delivered, ratio, rate, per,
				lat[0], lat[1], lat[2], lat[3], s.RSSPerConnKiB, s.ServerCPUSeconds, s.BenchCPUSeconds, s.LoadAvg)
			continue
		}
		nodes, nats, perNotif := fmt.Sprint(max(s.Nodes, 1)), "–", "–"
		if s.Split {
			nodes += " split"
		}
		if s.NATSCPUSeconds > 0 {
			nats = fmt.Sprintf("%.1f", s.NATSCPUSeconds)
		}
		if s.CPUPerDeliveredUs > 0 {
			perNotif = fmt.Sprintf("%.2f", s.CPUPerDeliveredUs)
		}
		fmt.Fprintf(out, "| %s | %s | %d/%d | %d | %d | %s | %s | %s | %s | %s | %s | %s | %.1f | %.1f | %s | %s | %.1f | %.1f |\n",
			s.Name, nodes, s.Connected, s.Clients, s.Published, s.Delivered, ratio, rate, per,
			lat[0], lat[1], lat[2], lat[3], s.RSSPerConnKiB, s.ServerCPUSeconds, nats, perNotif, s.BenchCPUSeconds, s.LoadAvg)
	}
	if !cluster {
		return nil
	}
	fmt.Fprintln(out)
	fmt.Fprintln(out, "| scenario | process | clients | published through | delivered to its clients | CPU s | µs/delivered | µs/published | RSS MiB |")
	fmt.Fprintln(out, "|---|---|---|---|---|---|---|---|---|")
	for _, s := range rows {
		for _, p := range s.Procs {
			what, clients := fmt.Sprintf("%s %s", p.Role, p.URL), fmt.Sprint(p.Clients)
			if p.Role == "nats" {
				what, clients = "nats", "–"
			}
			fmt.Fprintf(out, "| %s | %s | %s | %d | %d | %.2f | %s | %s | %.1f |\n", s.Name, what, clients, p.Published, p.Delivered,
				p.CPUSeconds, usOrDash(p.CPUPerDeliveredUs), usOrDash(p.CPUPerPublishedUs), p.RSSMiB)
		}
	}
	return nil
}

func usOrDash(v float64) string {
	if v <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f", v)
}

func ms(v float64) string {
	if v < 10 {
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.0f", v)
}
