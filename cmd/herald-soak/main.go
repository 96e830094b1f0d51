// Command herald-soak runs herald for a long while under churn and checks
// that it does not leak: connections that come and go, publishes through
// the HTTP API and through a plugin, and the plugin killed with SIGKILL now
// and then (herald restarts it). Every -interval it prints herald's RSS,
// goroutines (go_goroutines from /metrics) and open files (/proc/PID/fd);
// at the end it compares the last sample with the first one taken once
// every connection was up, says whether each is flat, and exits 1 if one
// is not. `make soak` runs it with the defaults (10,000 connections, 10
// minutes); it is not part of `make test` nor of CI.
//
// Linux only (it reads /proc).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

type options struct {
	herald, plugin string
	conns          int
	duration       time.Duration
	interval       time.Duration
	churn          float64
	publishRate    float64
	emitRate       float64
	channels       int
	killEvery      time.Duration
	historyTTL     time.Duration
}

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "herald-soak:", err)
		}
		os.Exit(1)
	}
}

func run(args []string, out io.Writer) error {
	var o options
	fs := flag.NewFlagSet("herald-soak", flag.ContinueOnError)
	fs.StringVar(&o.herald, "herald", "bin/herald", "the herald binary")
	fs.StringVar(&o.plugin, "plugin", "bin/soak/tester", "the plugin binary killed now and then (internal/testplugins/tester)")
	fs.IntVar(&o.conns, "conns", 10_000, "WebSocket connections kept open")
	fs.DurationVar(&o.duration, "duration", 10*time.Minute, "how long the soak runs once every connection is up")
	fs.DurationVar(&o.interval, "interval", 30*time.Second, "how often the figures are printed")
	fs.Float64Var(&o.churn, "churn", 0.01, "fraction of the connections closed and replaced every second")
	fs.Float64Var(&o.publishRate, "publish-rate", 50, "HTTP API publishes per second")
	fs.Float64Var(&o.emitRate, "emit-rate", 5, "plugin emits per second (the plugin's method, through the HTTP API)")
	fs.IntVar(&o.channels, "channels", 100, "channels the connections spread over")
	fs.DurationVar(&o.killEvery, "kill-every", time.Minute, "how often the plugin process is killed with SIGKILL (0: never)")
	fs.DurationVar(&o.historyTTL, "history-ttl", time.Minute, "herald's history.ttl: history grows for this long, then stays level, so that what grows after it is a leak")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.conns < 1 || o.channels < 1 || o.interval <= 0 || o.duration <= 0 || o.churn < 0 || o.churn > 1 {
		return errors.New("-conns and -channels must be at least 1, -interval and -duration positive, -churn between 0 and 1")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return soak(ctx, o, out)
}
