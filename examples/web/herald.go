package main

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// runningHerald is the herald the demo started, if it started one.
type runningHerald struct {
	cmd  *exec.Cmd
	done chan error
}

// ensureHerald uses the herald that already answers at base (say, one from
// `make run`: a second one would only fail on its plugins' locked data
// files), or starts bin serve -config path and waits until it is healthy.
func ensureHerald(ctx context.Context, bin, path, base string) (*runningHerald, error) {
	if healthy(ctx, base) {
		log.Printf("herald already answers at %s: using it", base)
		return &runningHerald{}, nil
	}
	cmd := exec.Command(bin, "serve", "-config", path)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	h := &runningHerald{cmd: cmd, done: make(chan error, 1)}
	go func() { h.done <- cmd.Wait() }()
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for !healthy(ctx, base) {
		select {
		case err := <-h.done:
			return nil, fmt.Errorf("herald serve -config %s exited: %v (its log is above)", path, err)
		case <-deadline.C:
			h.stop()
			return nil, fmt.Errorf("herald serve -config %s did not answer at %s within 30s", path, base)
		case <-ctx.Done():
			h.stop()
			return nil, ctx.Err()
		case <-tick.C:
		}
	}
	return h, nil
}

func healthy(ctx context.Context, base string) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/healthz", nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// stop drains the herald the demo started (SIGTERM, as an operator would),
// and kills it if it has not exited after a while.
func (h *runningHerald) stop() {
	if h.cmd == nil {
		return
	}
	_ = h.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-h.done:
	case <-time.After(15 * time.Second):
		_ = h.cmd.Process.Kill()
		<-h.done
	}
}
