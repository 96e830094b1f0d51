package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// publisher sends notifications through POST /v1/publish on a fixed
// schedule: one request every Batch/Rate seconds, each carrying Batch
// notifications, each object stamped with its send time. Request k goes to
// publish node k mod the number of publish nodes.
type publisher struct {
	o        options
	client   *http.Client
	nodes    []int    // publish nodes, indexes into o.URLs, in turn
	urls     []string // each node's publish URL, by node index
	channels []string // targets, in turn
	// via counts the notifications accepted through each node.
	via []atomic.Int64

	published atomic.Int64 // notifications accepted (200)
	failed    atomic.Int64 // notifications in requests that failed
	unsent    atomic.Int64 // notifications given up: the server fell too far behind
	// expected counts deliveries due: published × subscribers of the channel.
	expected atomic.Int64
	perChan  int64 // subscribers per published notification
	// requests, if positive, is how many requests run sends, instead of
	// as many as fit in o.Duration.
	requests int
	httpLat  histogram
	// lateMax is how far behind schedule a request left, at worst: a
	// publisher that cannot keep up shows here, not as server latency.
	lateMax  atomic.Int64
	errMu    sync.Mutex
	firstErr string
	// sendForm, if set, sends a request body another way than p.client
	// (-publish h2c or ws: publish_ws.go).
	sendForm func(ctx context.Context, body []byte) error
}

func newPublisher(o options, f *fleet, publishNodes []int) *publisher {
	p := &publisher{
		o:     o,
		nodes: publishNodes,
		via:   make([]atomic.Int64, len(o.URLs)),
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			MaxIdleConnsPerHost: o.Publishers,
			MaxConnsPerHost:     o.Publishers,
		}},
	}
	if o.Mode == "personal" {
		for _, c := range f.clients {
			p.channels = append(p.channels, c.channel)
		}
		p.perChan = 1
	} else {
		p.channels = []string{channelName(o.Mode, 0)}
		p.perChan = int64(len(f.clients))
	}
	for _, base := range o.URLs {
		if o.Server == serverCentrifugo {
			p.urls = append(p.urls, centrifugoAPIURL(base, o.Batch))
			continue
		}
		p.urls = append(p.urls, base+"/v1/publish")
	}
	return p
}

// publishedVia is how many notifications each node accepted.
func (p *publisher) publishedVia() []int64 {
	n := make([]int64, len(p.via))
	for i := range p.via {
		n[i] = p.via[i].Load()
	}
	return n
}

type job struct {
	due   time.Time
	first int // index of the first notification (round robin over channels)
	node  int // where to publish (index into o.URLs)
}

// run publishes for o.Duration; it returns once every request has ended.
// A server that cannot keep up makes requests queue behind the schedule;
// what is not sent by Duration+Drain is given up and counted as unsent.
func (p *publisher) run(ctx context.Context) {
	if p.o.Rate <= 0 || len(p.channels) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, p.o.Duration+p.o.Drain)
	defer cancel()
	closeVia, err := p.connectVia(ctx)
	if err != nil {
		p.noteErr(fmt.Errorf("-publish %s: %w", p.o.Publish, err))
		return
	}
	defer closeVia()
	jobs := make(chan job, 1024)
	var workers sync.WaitGroup
	for range p.o.Publishers {
		workers.Add(1)
		go func() {
			defer workers.Done()
			var body bytes.Buffer
			for j := range jobs {
				p.send(ctx, j, &body)
			}
		}()
	}
	interval := time.Duration(float64(time.Second) * float64(p.o.Batch) / p.o.Rate)
	requests := int(p.o.Duration / interval)
	if p.requests > 0 {
		requests = p.requests
	}
	start := time.Now()
	k := 0
schedule:
	for ; k < requests; k++ {
		due := start.Add(time.Duration(k) * interval)
		if wait := time.Until(due); wait > 0 {
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				break schedule
			}
		}
		select {
		case jobs <- job{due: due, first: k * p.o.Batch, node: p.nodes[k%len(p.nodes)]}:
		case <-ctx.Done():
			break schedule
		}
	}
	close(jobs)
	p.unsent.Add(int64(requests-k) * int64(p.o.Batch))
	workers.Wait()
	p.client.CloseIdleConnections()
}

func (p *publisher) send(ctx context.Context, j job, body *bytes.Buffer) {
	body.Reset()
	now := time.Now()
	if late := now.Sub(j.due); late > 0 {
		for {
			m := p.lateMax.Load()
			if int64(late) <= m || p.lateMax.CompareAndSwap(m, int64(late)) {
				break
			}
		}
	}
	stamp := strconv.FormatInt(now.UnixNano(), 10)
	if p.o.Server == serverCentrifugo {
		p.sendCentrifugo(ctx, j, body, stamp, now)
		return
	}
	body.WriteString(`{"notifications":[`)
	for i := range p.o.Batch {
		if i > 0 {
			body.WriteByte(',')
		}
		n := j.first + i
		body.WriteString(`{"channel":"`)
		body.WriteString(p.channels[n%len(p.channels)])
		body.WriteString(`","event":"tick","object_type":"bench","object":{` + stampKey)
		body.WriteString(stamp)
		body.WriteString(`,"n":`)
		body.WriteString(strconv.Itoa(n))
		body.WriteString(`}}`)
	}
	body.WriteString(`]}`)
	if p.sendForm != nil {
		err := p.sendForm(ctx, body.Bytes())
		p.finishVia(err, now)
		if err == nil {
			p.via[j.node].Add(int64(p.o.Batch))
		}
		return
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, p.urls[j.node], bytes.NewReader(body.Bytes()))
	req.Header.Set("Authorization", "Bearer "+p.o.APIKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.client.Do(req)
	if err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("publish: %s", resp.Status)
		}
	}
	p.finishHTTP(err, j, now)
}

// finishHTTP counts a publish request that ended with err.
func (p *publisher) finishHTTP(err error, j job, now time.Time) {
	p.httpLat.record(int64(time.Since(now)))
	if err != nil {
		p.failed.Add(int64(p.o.Batch))
		p.errMu.Lock()
		if p.firstErr == "" {
			p.firstErr = err.Error()
		}
		p.errMu.Unlock()
		return
	}
	p.published.Add(int64(p.o.Batch))
	p.via[j.node].Add(int64(p.o.Batch))
	p.expected.Add(int64(p.o.Batch) * p.perChan)
}

// sendCentrifugo publishes j's notifications through Centrifugo's HTTP API
// (centrifugo.go), which answers errors in a 200's body.
func (p *publisher) sendCentrifugo(ctx context.Context, j job, body *bytes.Buffer, stamp string, now time.Time) {
	writeCentrifugoPublish(body, p.channels, j.first, p.o.Batch, stamp)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, p.urls[j.node], bytes.NewReader(body.Bytes()))
	req.Header.Set("X-API-Key", p.o.APIKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.client.Do(req)
	if err == nil {
		var answer []byte
		answer, err = io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		switch {
		case err != nil:
			err = fmt.Errorf("publish: read answer: %w", err)
		case resp.StatusCode != http.StatusOK:
			err = fmt.Errorf("publish: %s: %.200s", resp.Status, answer)
		default:
			err = centrifugoAPIError(answer)
		}
	}
	p.finishHTTP(err, j, now)
}
