package main

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// parseURLs splits -url at commas: one base URL per herald node.
func parseURLs(list string) ([]string, error) {
	var urls []string
	for part := range strings.SplitSeq(list, ",") {
		part = strings.TrimRight(strings.TrimSpace(part), "/")
		if part == "" {
			continue
		}
		u, err := url.Parse(part)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("%q is not an http(s) base URL such as http://127.0.0.1:7512", part)
		}
		if slices.Contains(urls, part) {
			return nil, fmt.Errorf("%q is listed twice", part)
		}
		urls = append(urls, part)
	}
	if len(urls) == 0 {
		return nil, errors.New("no URL given")
	}
	return urls, nil
}

// parsePIDs splits -pid at commas. Empty and "0" mean no PID.
func parsePIDs(list string) ([]int, error) {
	if s := strings.TrimSpace(list); s == "" || s == "0" {
		return nil, nil
	}
	var pids []int
	for part := range strings.SplitSeq(list, ",") {
		pid, err := strconv.Atoi(strings.TrimSpace(part))
		if err != nil || pid <= 0 {
			return nil, fmt.Errorf("%q is not a process id", part)
		}
		pids = append(pids, pid)
	}
	return pids, nil
}

// roles says which nodes (indexes into options.URLs) take the clients and
// which the publish requests: all of them, or with -split the first node
// the publishes and the others the clients.
func (o *options) roles() (clientNodes, publishNodes []int) {
	for i := range o.URLs {
		switch {
		case !o.Split:
			clientNodes = append(clientNodes, i)
			publishNodes = append(publishNodes, i)
		case i == 0:
			publishNodes = append(publishNodes, i)
		default:
			clientNodes = append(clientNodes, i)
		}
	}
	return clientNodes, publishNodes
}

// proc is one measured server process: a herald node or the NATS server.
type proc struct {
	role string // "herald" or "nats"
	pid  int
	node int // index into options.URLs; -1 for NATS
	// base is read before connecting, start once the clients have settled,
	// end after the deliveries drained.
	base, start, end procStat
}

// procSet is every process given by -pid and -nats-pid.
type procSet []*proc

func newProcSet(o options) procSet {
	var ps procSet
	for i, pid := range o.PIDs {
		ps = append(ps, &proc{role: "herald", pid: pid, node: i})
	}
	if o.NATSPID > 0 {
		ps = append(ps, &proc{role: "nats", pid: o.NATSPID, node: -1})
	}
	return ps
}

// read reads every process's /proc figures into the field that at picks.
func (ps procSet) read(at func(*proc) *procStat) error {
	for _, p := range ps {
		st, err := readProc(p.pid)
		if err != nil {
			return fmt.Errorf("%s pid %d: %w", p.role, p.pid, err)
		}
		*at(p) = st
	}
	return nil
}

// procSummary is one process's share of a run.
type procSummary struct {
	Role    string `json:"role"`
	PID     int    `json:"pid"`
	URL     string `json:"url,omitempty"`
	Clients int    `json:"clients,omitempty"`
	// Published counts the notifications accepted through this node;
	// Delivered those that reached its clients. For NATS, every node's.
	Published  int64   `json:"published,omitempty"`
	Delivered  int64   `json:"delivered,omitempty"`
	CPUSeconds float64 `json:"cpu_s"`
	RSSBaseMiB float64 `json:"rss_base_mib"`
	RSSMiB     float64 `json:"rss_mib"`
	// CPUPerDeliveredUs is this process's CPU (µs) over the notifications
	// delivered to its own clients (a herald node) or to every client
	// (NATS); CPUPerPublishedUs over the notifications published through
	// it (a herald node) or through any node (NATS). A node that both
	// publishes and delivers puts both costs in both figures: -split
	// separates them.
	CPUPerDeliveredUs float64 `json:"cpu_us_per_delivered,omitempty"`
	CPUPerPublishedUs float64 `json:"cpu_us_per_published,omitempty"`
}

// nodeCounts is what the fleet and the publisher counted per node.
type nodeCounts struct {
	clients, published, delivered []int64
}

// summarize fills the server figures of sum from the processes: herald's
// CPU and RSS summed over the nodes, NATS's apart, CPU per delivered
// notification, and the per-process breakdown when there is more than one
// process.
func (ps procSet) summarize(sum *summary, o options, nc nodeCounts) {
	if len(ps) == 0 {
		return
	}
	var base, settled int64
	var heraldCPU, natsCPU time.Duration
	var totalPublished, totalDelivered int64
	for i := range nc.published {
		totalPublished += nc.published[i]
		totalDelivered += nc.delivered[i]
	}
	for _, p := range ps {
		cpu := p.end.CPU - p.start.CPU
		ro := procSummary{
			Role: p.role, PID: p.pid, CPUSeconds: cpu.Seconds(),
			RSSBaseMiB: mib(p.base.RSSBytes), RSSMiB: mib(p.start.RSSBytes),
		}
		published, delivered := totalPublished, totalDelivered
		if p.role == "nats" {
			natsCPU += cpu
			ro.Published, ro.Delivered = published, delivered
		} else {
			heraldCPU += cpu
			base += p.base.RSSBytes
			settled += p.start.RSSBytes
			ro.URL = o.URLs[p.node]
			ro.Clients = int(nc.clients[p.node])
			published, delivered = nc.published[p.node], nc.delivered[p.node]
			ro.Published, ro.Delivered = published, delivered
		}
		if delivered > 0 {
			ro.CPUPerDeliveredUs = perUs(cpu, delivered)
		}
		if published > 0 {
			ro.CPUPerPublishedUs = perUs(cpu, published)
		}
		sum.Procs = append(sum.Procs, ro)
	}
	if len(ps) <= 1 {
		sum.Procs = nil // the summary's own figures say it all
	}
	if len(o.PIDs) > 0 {
		sum.ServerRSSBaseMiB, sum.ServerRSSMiB = mib(base), mib(settled)
		if sum.Connected > 0 {
			sum.RSSPerConnKiB = float64(settled-base) / float64(sum.Connected) / 1024
		}
		sum.ServerCPUSeconds = heraldCPU.Seconds()
	}
	sum.NATSCPUSeconds = natsCPU.Seconds()
	if len(ps) > 0 && sum.Delivered > 0 {
		sum.CPUPerDeliveredUs = perUs(heraldCPU+natsCPU, sum.Delivered)
	}
}

func perUs(cpu time.Duration, n int64) float64 {
	return float64(cpu.Microseconds()) / float64(n)
}
