package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/websocket"
)

// The Centrifugo driver (-server centrifugo) runs the same scenarios against
// Centrifugo v6, so that make bench-pair can give every figure as a ratio
// between the two servers measured in one run. What differs from herald is
// only the wire:
//
//   - clients connect to /connection/websocket and speak Centrifugo's JSON
//     client protocol: a connect command carrying the token (HS256 with sub
//     and exp, which is what herald-bench already mints for herald, signed
//     with the same secret: client.token.hmac_secret_key), then a subscribe
//     command; publications arrive as push messages. A frame may hold
//     several messages separated by newlines. The server pings with an
//     empty message {} and disconnects a client that does not answer {}.
//   - publishing goes through the HTTP API with the X-API-Key header:
//     POST /api/publish for one publication, POST /api/batch with a publish
//     command per publication for more (scenario c's batches of 10). The
//     API answers errors with a 200 and an "error" object, so the body is
//     read.
//
// The data of every publication is the object herald-bench publishes to
// herald, send time included; Centrifugo puts it in the push as it is, so
// counting and latency are the reader's own (fleet.count), epoll or gorilla.

const (
	serverHerald     = "herald"
	serverCentrifugo = "centrifugo"
)

// servers are the values of -server.
var servers = []string{serverHerald, serverCentrifugo}

// centrifugoWSURL is the WebSocket endpoint of a Centrifugo base URL.
func centrifugoWSURL(base string) string {
	u, _ := url.Parse(base)
	u.Scheme = strings.Replace(u.Scheme, "http", "ws", 1)
	u.Path = "/connection/websocket"
	u.RawQuery = ""
	return u.String()
}

// centrifugoAPIURL is where a request of batch publications goes.
func centrifugoAPIURL(base string, batch int) string {
	if batch > 1 {
		return base + "/api/batch"
	}
	return base + "/api/publish"
}

// writeCentrifugoPublish writes the HTTP API body for batch publications,
// the first being number first, round robin over channels: a publish
// request for one, a batch of publish commands for more.
func writeCentrifugoPublish(body *bytes.Buffer, channels []string, first, batch int, stamp string) {
	one := func(n int) {
		body.WriteString(`{"channel":"`)
		body.WriteString(channels[n%len(channels)])
		body.WriteString(`","data":{` + stampKey)
		body.WriteString(stamp)
		body.WriteString(`,"n":`)
		body.WriteString(strconv.Itoa(n))
		body.WriteString(`}}`)
	}
	if batch <= 1 {
		one(first)
		return
	}
	body.WriteString(`{"commands":[`)
	for i := range batch {
		if i > 0 {
			body.WriteByte(',')
		}
		body.WriteString(`{"publish":`)
		one(first + i)
		body.WriteByte('}')
	}
	body.WriteString(`]}`)
}

// centrifugoError is an error object of the client protocol or the API.
type centrifugoError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func (e *centrifugoError) Error() string {
	return fmt.Sprintf("centrifugo error %d: %s", e.Code, e.Message)
}

// centrifugoAPIError is the first error in an HTTP API answer: a publish
// request's {"error":...}, or a batch's {"replies":[{"error":...}]}.
func centrifugoAPIError(body []byte) error {
	var a struct {
		Error   *centrifugoError `json:"error"`
		Replies []struct {
			Error *centrifugoError `json:"error"`
		} `json:"replies"`
	}
	if err := json.Unmarshal(body, &a); err != nil {
		return fmt.Errorf("centrifugo API answer %.200q: %w", body, err)
	}
	if a.Error != nil {
		return a.Error
	}
	for _, r := range a.Replies {
		if r.Error != nil {
			return r.Error
		}
	}
	return nil
}

// centrifugoMessages calls each for every newline-separated message of a
// frame of the client protocol, skipping empty lines.
func centrifugoMessages(frame []byte, each func(msg []byte) bool) {
	for len(frame) > 0 {
		line := frame
		if k := bytes.IndexByte(frame, '\n'); k >= 0 {
			line, frame = frame[:k], frame[k+1:]
		} else {
			frame = nil
		}
		if line = bytes.TrimSpace(line); len(line) > 0 && !each(line) {
			return
		}
	}
}

// centrifugoReply looks in a frame for the reply to command id: found, and
// the error it carries if any. A message that does not parse is an error.
func centrifugoReply(frame []byte, id uint32) (found bool, err error) {
	centrifugoMessages(frame, func(msg []byte) bool {
		var r struct {
			ID    uint32           `json:"id"`
			Error *centrifugoError `json:"error"`
		}
		if uerr := json.Unmarshal(msg, &r); uerr != nil {
			found, err = true, fmt.Errorf("message %.200q: %w", msg, uerr)
			return false
		}
		if r.ID != id {
			return true
		}
		found = true
		if r.Error != nil {
			err = r.Error
		}
		return false
	})
	return found, err
}

// centrifugoPong is the answer to a frame of the client protocol: {} if it
// holds a ping (an empty message), else nil. One answer covers any number
// of pings in the frame. Publications are never empty, so the check is a
// byte comparison per message.
func centrifugoPong(frame []byte) []byte {
	if !bytes.Contains(frame, []byte("{}")) {
		return nil
	}
	ping := false
	centrifugoMessages(frame, func(msg []byte) bool {
		ping = string(msg) == "{}"
		return !ping
	})
	if ping {
		return []byte("{}")
	}
	return nil
}

// centrifugoDialAndSubscribe connects client i with token and subscribes it
// to channel, each command waiting for its reply.
func centrifugoDialAndSubscribe(ctx context.Context, d *websocket.Dialer, wsURL, token string, i int, channel string) (*client, error) {
	ws, _, err := d.DialContext(ctx, wsURL, nil)
	if err != nil {
		return nil, fmt.Errorf("client %d: dial: %w", i, err)
	}
	commands := []struct {
		what, cmd string
	}{
		{"connect", `{"id":1,"connect":{"token":"` + token + `","name":"herald-bench"}}`},
		{"subscribe", `{"id":2,"subscribe":{"channel":"` + channel + `"}}`},
	}
	for k, c := range commands {
		if err := centrifugoCommand(ws, uint32(k+1), c.cmd); err != nil {
			ws.Close()
			return nil, fmt.Errorf("client %d: %s: %w", i, c.what, err)
		}
	}
	_ = ws.SetReadDeadline(time.Time{})
	_ = ws.SetWriteDeadline(time.Time{})
	return &client{index: i, channel: channel, ws: ws}, nil
}

// centrifugoCommand sends cmd and reads frames until the reply to id.
func centrifugoCommand(ws *websocket.Conn, id uint32, cmd string) error {
	_ = ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if err := ws.WriteMessage(websocket.TextMessage, []byte(cmd)); err != nil {
		return err
	}
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		_, frame, err := ws.ReadMessage()
		if err != nil {
			return fmt.Errorf("reply: %w", err)
		}
		found, err := centrifugoReply(frame, id)
		if err != nil {
			return err
		}
		if found {
			return nil
		}
		if pong := centrifugoPong(frame); pong != nil {
			if err := ws.WriteMessage(websocket.TextMessage, pong); err != nil {
				return err
			}
		}
	}
}

// errNotCentrifugo is returned for flags that have no Centrifugo form.
var errNotCentrifugo = errors.New("-server centrifugo publishes through its HTTP API only: -publish http, one -url")

// pairRow is one scenario measured on both servers.
type pairRow struct {
	scenario           string
	herald, centrifugo *summary
}

// pairRows pairs the summaries named "SCENARIO herald" and "SCENARIO
// centrifugo", in the order their scenarios first appear; the last run of
// a name wins. A scenario measured on one server only is kept, with the
// other left nil.
func pairRows(rows []summary) []pairRow {
	var pairs []pairRow
	at := map[string]int{}
	for i := range rows {
		s := &rows[i]
		k := strings.LastIndexByte(s.Name, ' ')
		if k < 0 {
			continue
		}
		scenario, server := s.Name[:k], s.Name[k+1:]
		if server != serverHerald && server != serverCentrifugo {
			continue
		}
		j, ok := at[scenario]
		if !ok {
			j = len(pairs)
			at[scenario] = j
			pairs = append(pairs, pairRow{scenario: scenario})
		}
		if server == serverHerald {
			pairs[j].herald = s
		} else {
			pairs[j].centrifugo = s
		}
	}
	return pairs
}

// printPairTable prints each scenario's herald and Centrifugo figures and,
// when both ran, herald's as a ratio of Centrifugo's (below 1: herald
// uses less, or is faster).
func printPairTable(path string, out io.Writer) error {
	rows, err := readSummaries(path)
	if err != nil {
		return err
	}
	fmt.Fprintln(out, "| scenario | server | connected | published | delivered | ratio | p50 ms | p99 ms | max ms | RSS/conn KiB | server CPU s | CPU µs/notif | notif/frame | CPU µs/frame | bench CPU s | load |")
	fmt.Fprintln(out, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, p := range pairRows(rows) {
		for _, s := range []*summary{p.herald, p.centrifugo} {
			if s == nil {
				continue
			}
			server := s.Name[strings.LastIndexByte(s.Name, ' ')+1:]
			ratio, lat := "–", [3]string{"–", "–", "–"}
			if s.Rate > 0 {
				ratio = fmt.Sprintf("%.4f", s.DeliveryRatio)
				// Quantiles are their bucket's upper bound; the maximum
				// is exact, and no quantile is above it.
				lat = [3]string{ms(min(s.P50Ms, s.MaxMs)), ms(min(s.P99Ms, s.MaxMs)), ms(s.MaxMs)}
			}
			perFrame := "–"
			if s.PerFrame > 0 {
				perFrame = fmt.Sprintf("%.1f", s.PerFrame)
			}
			fmt.Fprintf(out, "| %s | %s | %d/%d | %d | %d | %s | %s | %s | %s | %.1f | %.2f | %s | %s | %s | %.1f | %.1f |\n",
				p.scenario, server, s.Connected, s.Clients, s.Published, s.Delivered, ratio, lat[0], lat[1], lat[2],
				s.RSSPerConnKiB, s.ServerCPUSeconds, usOrDash(cpuPerNotifUs(s)), perFrame, usOrDash(cpuPerFrameUs(s)), s.BenchCPUSeconds, s.LoadAvg)
		}
		if h, c := p.herald, p.centrifugo; h != nil && c != nil {
			lat := [2]string{"–", "–"}
			if h.Rate > 0 {
				lat = [2]string{times(min(h.P50Ms, h.MaxMs), min(c.P50Ms, c.MaxMs)), times(min(h.P99Ms, h.MaxMs), min(c.P99Ms, c.MaxMs))}
			}
			fmt.Fprintf(out, "| %s | herald ÷ centrifugo | | | | | %s | %s | | %s | %s | %s | | %s | | |\n", p.scenario, lat[0], lat[1],
				times(h.RSSPerConnKiB, c.RSSPerConnKiB), times(h.ServerCPUSeconds, c.ServerCPUSeconds), times(cpuPerNotifUs(h), cpuPerNotifUs(c)),
				times(cpuPerFrameUs(h), cpuPerFrameUs(c)))
		}
	}
	return nil
}

// cpuPerNotifUs is the server's CPU over the notifications delivered, in µs
// (0: nothing delivered or no CPU measured).
func cpuPerNotifUs(s *summary) float64 {
	if s.Delivered == 0 {
		return 0
	}
	return s.ServerCPUSeconds * 1e6 / float64(s.Delivered)
}

// cpuPerFrameUs is the server's CPU over the frames it sent, in µs (0:
// nothing delivered, or the frames not counted): the cost of a send, which
// tells a server that sends more, smaller frames (lower latency) from one
// whose sends cost more.
func cpuPerFrameUs(s *summary) float64 {
	if s.PerFrame <= 0 {
		return 0
	}
	return cpuPerNotifUs(s) * s.PerFrame
}

// times is a over b as a ratio, "–" when either is not a measure.
func times(a, b float64) string {
	if a <= 0 || b <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

// readSummaries reads the JSON summaries of path, one a line; other lines
// are skipped.
func readSummaries(path string) ([]summary, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	var rows []summary
	sc := bufio.NewScanner(fh)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if !bytes.HasPrefix(line, []byte("{")) {
			continue
		}
		var s summary
		if json.Unmarshal(line, &s) == nil && s.Mode != "" {
			rows = append(rows, s)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return rows, nil
}
