package main

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"

	"github.com/heraldhq/herald/sdk"
)

// streams counts the open notification streams, within max_streams.
type streams struct {
	max int

	mu sync.Mutex
	n  int
}

func (s *streams) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n >= s.max {
		return false
	}
	s.n++
	return true
}

func (s *streams) exit() {
	s.mu.Lock()
	s.n--
	s.mu.Unlock()
}

func (s *streams) open() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// Position headers: the channel's position just before the first line.
const (
	headerEpoch = "Herald-Epoch"
	headerSeq   = "Herald-Seq"
)

// serveNotifications is GET /v1/kb/{kbid}/notifications: NucliaDB's
// stream, one standard-base64 notification ({type, data}) per line, each
// line flushed as its notification is published, until the client goes
// away. The headers give the position of kb:<kbid> before the first line,
// and each line is the next seq. ?since=<seq>[&epoch=<epoch>] first
// replays what followed seq, or answers 409 with the current position
// when the channel's history cannot bridge the gap.
func (k *KB) serveNotifications(w http.ResponseWriter, r *http.Request) {
	kbid := r.PathValue("kbid")
	caller, _ := sdk.CallerFrom(r.Context())
	if !validKBID(kbid) {
		writeError(w, http.StatusBadRequest, sdk.InvalidParams("kbid must be "+kbidRule, map[string]string{"field": "kbid"}))
		return
	}
	if !mayRead(caller, kbid) {
		writeError(w, http.StatusForbidden, sdk.AsError(forbidden(caller, kbid)))
		return
	}
	q := r.URL.Query()
	var since *sdk.Position
	if s := q.Get("since"); s != "" || q.Has("since") {
		seq, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			writeError(w, http.StatusBadRequest, sdk.InvalidParams(fmt.Sprintf("since must be a whole number (a seq of kb:%s), got %q", kbid, clipStr(s)), map[string]string{"field": "since"}))
			return
		}
		since = &sdk.Position{Seq: seq, Epoch: q.Get("epoch")}
	} else if q.Has("epoch") {
		writeError(w, http.StatusBadRequest, sdk.InvalidParams("epoch goes with since", map[string]string{"field": "epoch"}))
		return
	}
	host, ok := sdk.HostFrom(r.Context())
	if !ok {
		writeError(w, http.StatusServiceUnavailable, sdk.Errorf(sdk.CodePluginUnavailable, "kb plugin is not configured yet: retry later"))
		return
	}
	if !k.streams.enter() {
		writeError(w, http.StatusTooManyRequests, sdk.LimitExceeded(fmt.Sprintf("limit exceeded: %d notification streams are open (max_streams)", k.cfg.MaxStreams)))
		return
	}
	defer k.streams.exit()

	f, err := sdk.FollowChannel(r.Context(), host, prefix+kbid, since)
	if err != nil {
		writeError(w, http.StatusInternalServerError, sdk.AsError(fmt.Errorf("follow kb:%s: %w", kbid, err)))
		return
	}
	defer f.Close()
	start := f.Start()
	if since != nil && !f.Recovered() {
		w.Header().Set(headerEpoch, start.Epoch)
		w.Header().Set(headerSeq, strconv.FormatUint(start.Seq, 10))
		writeJSON(w, http.StatusConflict, map[string]any{
			"error": errorBody(sdk.InvalidParams(fmt.Sprintf("the history of kb:%s cannot bridge the gap after seq %d (epoch %q): it was reset or is too old; reload, then follow from the current position", kbid, since.Seq, since.Epoch), nil)),
			"seq":   start.Seq, "epoch": start.Epoch, "recovered": false,
		})
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set(headerEpoch, start.Epoch)
	h.Set(headerSeq, strconv.FormatUint(start.Seq, 10))
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	if flusher != nil {
		flusher.Flush() // the headers now: a client learns its position before any event
	}
	var line []byte
	for {
		ns, err := f.Next()
		if err != nil {
			if !errors.Is(err, sdk.ErrFollowClosed) {
				k.log.Info("notification stream ended", "kbid", kbid, "reason", err)
			}
			return
		}
		for _, n := range ns {
			line = base64.StdEncoding.AppendEncode(line[:0], n.Object)
			line = append(line, '\n')
			if _, err := w.Write(line); err != nil {
				return
			}
			if flusher != nil {
				flusher.Flush()
			}
		}
	}
}

// writeError answers with Herald's JSON error body.
func writeError(w http.ResponseWriter, status int, e *sdk.Error) {
	writeJSON(w, status, map[string]any{"error": errorBody(e)})
}

// errorBody is a coded error as Herald's HTTP API writes it.
func errorBody(e *sdk.Error) map[string]any {
	b := map[string]any{"code": e.Code, "message": e.Message}
	if len(e.Data) > 0 {
		b["data"] = json.RawMessage(e.Data)
	}
	return b
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
