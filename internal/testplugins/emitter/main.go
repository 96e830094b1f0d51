// Command emitter is the plugin of cmd/plugin-bench: its backend method
// "run" emits a stream of small notifications through the SDK, as fast as
// it can or at a given rate, one per Emit call or many, to a set of
// channels, and stamps each with the time of its Emit so that a client can
// measure emit→delivery latency. It owns the prefix "emitter" and lets
// anyone subscribe to its channels.
package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/heraldhq/herald/sdk"
)

// Bounds of one run, so that a typo in the driver cannot flood the machine.
const (
	maxCount   = 10_000_000
	maxWorkers = 4096
	maxPer     = 1024
	maxChans   = 100_000
)

type emitter struct{}

func (emitter) Manifest() sdk.Manifest {
	return sdk.Manifest{
		Name: "emitter", Version: "1.0.0", Prefixes: []string{"emitter"},
		Methods: []sdk.Method{
			{Name: "run", BackendOnly: true, Handler: run, Timeout: 5 * time.Minute},
			{Name: "cpu", BackendOnly: true, Handler: func(context.Context, *sdk.Call) (any, error) { return cpuNanos() }},
		},
		AllowAllSubscriptions: true,
	}
}

// params of "run": Count notifications to channels emitter:0 ..
// emitter:<Channels-1> in turn, from Workers goroutines, Per notifications
// per Emit call, at Rate notifications/s in total (0: as fast as the host
// acknowledges them).
type params struct {
	Count, Channels, Workers, Per int
	Rate                          float64
}

// result of "run": what was emitted, how long it took from the first Emit
// to the last acknowledgement, and the plugin's CPU time (user + system)
// over that span.
type result struct {
	Emitted   int64 `json:"emitted"`
	StartNs   int64 `json:"start_ns"`
	ElapsedNs int64 `json:"elapsed_ns"`
	CPUNs     int64 `json:"cpu_ns"`
}

func (p *params) check() error {
	if p.Per < 1 {
		p.Per = 1
	}
	if p.Workers < 1 {
		p.Workers = 1
	}
	if p.Channels < 1 {
		p.Channels = 1
	}
	switch {
	case p.Count < 1 || p.Count > maxCount:
		return fmt.Errorf("count %d: want 1..%d", p.Count, maxCount)
	case p.Workers > maxWorkers:
		return fmt.Errorf("workers %d: want at most %d", p.Workers, maxWorkers)
	case p.Per > maxPer:
		return fmt.Errorf("per %d: want at most %d", p.Per, maxPer)
	case p.Channels > maxChans:
		return fmt.Errorf("channels %d: want at most %d", p.Channels, maxChans)
	case p.Rate < 0:
		return fmt.Errorf("rate %g: want 0 (as fast as possible) or more", p.Rate)
	}
	return nil
}

func run(ctx context.Context, c *sdk.Call) (any, error) {
	var p params
	if err := c.Bind(&p); err != nil {
		return nil, err
	}
	if err := p.check(); err != nil {
		return nil, sdk.InvalidParams(err.Error(), nil)
	}
	names := make([]string, p.Channels)
	for i := range names {
		names[i] = "emitter:" + strconv.Itoa(i)
	}
	cpu0, err := cpuNanos()
	if err != nil {
		return nil, err
	}
	// next hands out notification numbers, Per at a time; with a rate, a
	// worker waits until the first of its numbers is due.
	var next, emitted atomic.Int64
	start := time.Now()
	var interval time.Duration
	if p.Rate > 0 {
		interval = time.Duration(float64(time.Second) / p.Rate)
	}
	var wg sync.WaitGroup
	errc := make(chan error, p.Workers)
	for range p.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errc <- worker(ctx, c.Host, &p, names, &next, &emitted, start, interval)
		}()
	}
	wg.Wait()
	close(errc)
	var errs []error
	for err := range errc {
		if err != nil {
			errs = append(errs, err)
		}
	}
	el := time.Since(start)
	cpu1, err := cpuNanos()
	if err != nil {
		return nil, err
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("emitted %d of %d: %w", emitted.Load(), p.Count, errors.Join(errs...))
	}
	return result{Emitted: emitted.Load(), StartNs: start.UnixNano(), ElapsedNs: el.Nanoseconds(), CPUNs: cpu1 - cpu0}, nil
}

// worker emits until the run's count is handed out. Its notifications and
// their objects are reused from one Emit to the next: Emit returns only
// once the host acknowledged them, so they are ours again, and the figures
// are the SDK's and the host's, not this loop's allocations.
func worker(ctx context.Context, h sdk.Host, p *params, names []string, next, emitted *atomic.Int64, start time.Time, interval time.Duration) error {
	const objMax = len(`{"emit_ns":}`) + 20
	ns := make([]sdk.Notification, 0, p.Per)
	arena := make([]byte, 0, p.Per*objMax)
	for {
		first := next.Add(int64(p.Per)) - int64(p.Per)
		if first >= int64(p.Count) {
			return nil
		}
		k := min(int64(p.Per), int64(p.Count)-first)
		if interval > 0 {
			if d := time.Until(start.Add(time.Duration(first) * interval)); d > 0 {
				select {
				case <-time.After(d):
				case <-ctx.Done():
					return ctx.Err()
				}
			}
		}
		now := time.Now().UnixNano()
		ns, arena = ns[:0], arena[:0]
		for i := range k {
			off := len(arena)
			arena = append(arena, `{"emit_ns":`...)
			arena = strconv.AppendInt(arena, now, 10)
			arena = append(arena, '}')
			ch := names[(first+i)%int64(len(names))]
			ns = append(ns, sdk.Notification{Channel: ch, Event: "tick", ObjectType: "bench", Object: arena[off:len(arena):len(arena)]})
		}
		if _, err := h.Emit(ctx, ns...); err != nil {
			return err
		}
		emitted.Add(k)
	}
}

func cpuNanos() (int64, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, fmt.Errorf("getrusage: %w", err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano(), nil
}

func main() { sdk.Serve(emitter{}) }
