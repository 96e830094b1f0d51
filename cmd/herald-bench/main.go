// Command herald-bench is herald's load generator. It opens real WebSocket
// clients against a running herald over loopback, subscribes them (all to
// one channel, or each to its own), publishes through the HTTP API at a
// fixed rate with the send time in every object, and reports delivery,
// end-to-end latency, and the server's memory and CPU (given its PID).
//
// Against a cluster, -url lists the nodes: clients and publish requests are
// spread over them round-robin (or, with -split, the first node takes every
// publish and the others every client), -pid lists the nodes' PIDs in the
// same order and -nats-pid the NATS server's, and the summary breaks CPU
// and memory down per process.
//
// Every phase is bounded in time. The last line of output is a one-line JSON
// summary; `herald-bench -table FILE` prints a table from such lines.
//
// cmd/herald-bench/bench.sh runs the standard scenarios against a fresh
// herald each.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"

	"github.com/heraldhq/herald/internal/rlimit"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "herald-bench:", err)
		}
		os.Exit(1)
	}
}

// options is one scenario.
type options struct {
	URL         string   // -url as given
	URLs        []string // the nodes: -url split at commas
	APIKey      string
	Secret      string
	Name        string
	Mode        string // broadcast or personal
	Clients     int
	Rate        float64 // notifications per second
	Duration    time.Duration
	Batch       int           // notifications per HTTP request
	Publishers  int           // concurrent HTTP requests
	ConnectRate int           // new connections per second
	Dialers     int           // concurrent handshakes
	PID         string        // -pid as given
	PIDs        []int         // the nodes' PIDs, in the order of URLs
	NATSPID     int           // the NATS server's PID (0: not reported)
	Split       bool          // the first node publishes, the others serve the clients
	Warmup      bool          // publish once to every channel before measuring
	Settle      time.Duration // wait after connecting, before measuring memory
	Drain       time.Duration // how long to wait for deliveries after the last publish
	Connect     time.Duration // bound of the connect phase
	Reader      string        // epoll or gorilla
	ReadPause   time.Duration // the epoll reader's pause when few sockets were ready
	Publish     string        // http, h2c or ws (publish_ws.go)
	Server      string        // herald or centrifugo (centrifugo.go)
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("herald-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.URL, "url", "http://127.0.0.1:7512", "herald's base URL (WebSocket at /ws, publish at /v1/publish); a cluster's nodes comma-separated, clients and publishes spread over them round-robin")
	fs.StringVar(&o.APIKey, "key", os.Getenv("HERALD_API_KEY"), "API key for /v1/publish (default $HERALD_API_KEY)")
	fs.StringVar(&o.Secret, "secret", os.Getenv("HERALD_TOKEN_SECRET"), "auth.token_secret, to mint the clients' token (default $HERALD_TOKEN_SECRET)")
	fs.StringVar(&o.Name, "name", "", "scenario label in the summary")
	fs.StringVar(&o.Mode, "mode", "broadcast", "broadcast: every client on one channel; personal: each client on its own channel")
	fs.IntVar(&o.Clients, "clients", 1000, "WebSocket clients")
	fs.Float64Var(&o.Rate, "rate", 100, "notifications published per second (0: publish nothing, measure idle clients)")
	fs.DurationVar(&o.Duration, "duration", 10*time.Second, "how long to publish")
	fs.IntVar(&o.Batch, "batch", 0, "notifications per HTTP request (0: 1 in broadcast mode, enough for ~200 requests/s in personal mode)")
	fs.IntVar(&o.Publishers, "publishers", 8, "concurrent HTTP publish requests")
	fs.IntVar(&o.ConnectRate, "connect-rate", 2000, "new connections per second (keeps the listen backlog from overflowing)")
	fs.IntVar(&o.Dialers, "dialers", 64, "concurrent WebSocket handshakes")
	fs.StringVar(&o.PID, "pid", "", "herald's PID, to report its RSS and CPU (empty or 0: not reported); a cluster's nodes' PIDs comma-separated, in the order of -url")
	fs.IntVar(&o.NATSPID, "nats-pid", 0, "the NATS server's PID, to report its CPU and RSS apart from herald's (0: not reported)")
	fs.BoolVar(&o.Split, "split", false, "with two or more nodes: the first takes every publish and no client, the others every client, so that publishing and delivering costs show apart")
	fs.DurationVar(&o.Settle, "settle", 2*time.Second, "pause after every client subscribed, before measuring memory and publishing")
	fs.DurationVar(&o.Drain, "drain", 10*time.Second, "longest wait for outstanding deliveries after the last publish")
	fs.DurationVar(&o.Connect, "connect-timeout", 2*time.Minute, "bound of the connect phase")
	fs.StringVar(&o.Reader, "reader", defaultReader, "how clients read: epoll (raw sockets polled by a goroutine per 2 CPUs; Linux) or gorilla (a goroutine and gorilla's reader per client)")
	fs.DurationVar(&o.ReadPause, "read-pause", 500*time.Microsecond, "epoll reader: pause after a poll that found few sockets ready, so that one wake-up reads many (adds at most this to measured latency)")
	fs.BoolVar(&o.Warmup, "warmup", false, "before measuring, publish one notification to every target channel at -rate and wait for its deliveries (not counted), so that the measured phase publishes to channels the broker already knows")
	fs.StringVar(&o.Publish, "publish", "http", "how to publish: http (a request per publish over HTTP/1.1 keep-alive connections), h2c (the same requests multiplexed on HTTP/2 without TLS), ws (pipelined over one publishing WebSocket, /v1/publish/ws)")
	fs.StringVar(&o.Server, "server", serverHerald, "what -url is: herald, or centrifugo (Centrifugo v6: its JSON client protocol, -secret as client.token.hmac_secret_key, -key as http_api.key; make bench-pair)")
	table := fs.String("table", "", "print a table of the JSON summaries in this file (one per line) and exit")
	pair := fs.String("pair-table", "", "print the herald-against-Centrifugo table of the JSON summaries in this file, runs named \"SCENARIO herald\" and \"SCENARIO centrifugo\" (make bench-pair), and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *table != "" {
		return printTable(*table, stdout)
	}
	if *pair != "" {
		return printPairTable(*pair, stdout)
	}
	if err := o.check(); err != nil {
		fs.Usage()
		return err
	}
	if limit, err := rlimit.RaiseOpenFiles(); err != nil {
		fmt.Fprintf(stderr, "herald-bench: open-file limit: %v\n", err)
	} else if uint64(o.Clients)+64 > limit {
		return fmt.Errorf("%d clients need more open files than the limit of %d", o.Clients, limit)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	sum, err := runScenario(ctx, o, stdout)
	if err != nil {
		return err
	}
	line, _ := json.Marshal(sum)
	fmt.Fprintln(stdout, string(line))
	return nil
}

func (o *options) check() error {
	var err error
	if o.Publish == "" {
		o.Publish = "http" // options built in code (tests) mean the default
	}
	if o.Server == "" {
		o.Server = serverHerald
	}
	if o.URLs, err = parseURLs(o.URL); err != nil {
		return fmt.Errorf("-url: %w", err)
	}
	if o.PIDs, err = parsePIDs(o.PID); err != nil {
		return fmt.Errorf("-pid: %w", err)
	}
	switch {
	case len(o.PIDs) > 0 && len(o.PIDs) != len(o.URLs):
		return fmt.Errorf("-pid lists %d PIDs for %d nodes in -url: give one per node, in the same order", len(o.PIDs), len(o.URLs))
	case o.NATSPID < 0:
		return errors.New("-nats-pid must not be negative")
	case o.Publish != "http" && len(o.URLs) > 1:
		return fmt.Errorf("-publish %s publishes through one node: give -url one node, or -publish http", o.Publish)
	case o.Split && len(o.URLs) < 2:
		return errors.New("-split needs two or more nodes in -url: one to publish on, the others for the clients")
	case o.Mode != "broadcast" && o.Mode != "personal":
		return fmt.Errorf("-mode must be broadcast or personal, not %q", o.Mode)
	case o.Clients <= 0:
		return errors.New("-clients must be positive")
	case o.Rate < 0:
		return errors.New("-rate must not be negative")
	case o.Rate > 0 && o.APIKey == "":
		return errors.New("-key (or $HERALD_API_KEY) is needed to publish")
	case o.Secret == "":
		return errors.New("-secret (or $HERALD_TOKEN_SECRET) is needed to mint the clients' token")
	case o.Reader != "epoll" && o.Reader != "gorilla":
		return fmt.Errorf("-reader must be epoll or gorilla, not %q", o.Reader)
	case !slices.Contains(servers, o.Server):
		return fmt.Errorf("-server must be herald or centrifugo, not %q", o.Server)
	case o.Server == serverCentrifugo && (o.Publish != "http" || len(o.URLs) > 1 || o.Split):
		return errNotCentrifugo
	case !slices.Contains(publishForms, o.Publish):
		return fmt.Errorf("-publish must be http, h2c or ws, not %q", o.Publish)
	case o.ConnectRate <= 0 || o.Dialers <= 0 || o.Publishers <= 0:
		return errors.New("-connect-rate, -dialers and -publishers must be positive")
	}
	if o.Batch <= 0 {
		o.Batch = 1
		if o.Mode == "personal" {
			o.Batch = max(1, int(o.Rate/200))
		}
	}
	if o.Name == "" {
		o.Name = fmt.Sprintf("%s %d clients %g/s", o.Mode, o.Clients, o.Rate)
	}
	return nil
}
