package pluginhost

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/heraldhq/herald/core/rpc"
	"github.com/heraldhq/herald/sdk/hostcheck"
	pluginpb "github.com/heraldhq/herald/sdk/proto"
)

// ServeHTTP serves the plugins' declared HTTP routes (core mounts it as the
// fallback handler). It authenticates the request as the route declares,
// forwards it, and streams the plugin's response, flushing each chunk as
// the plugin flushes it, until the plugin ends or the client goes away (its
// request context then cancels the plugin's stream) or takes no data for
// Options.WriteTimeout. A request no route matches gets a JSON 404.
func (m *Manager) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	mux := m.routes.Load()
	if _, pattern := mux.Handler(r); pattern == "" {
		status, allow, e := hostcheck.Unrouted(mux, r)
		if allow != "" {
			w.Header().Set("Allow", allow)
		}
		writeError(w, status, rpcError(e))
		return
	}
	mux.ServeHTTP(w, r)
}

func writeError(w http.ResponseWriter, status int, e *rpc.Error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": e})
}

type routeHandler struct {
	m     *Manager
	sup   *supervisor
	route *pluginpb.Route
}

func (h *routeHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var caller Caller
	if h.route.GetAuth() != pluginpb.RouteAuth_ROUTE_AUTH_NONE {
		c, err := h.m.opts.Core.AuthenticateHTTP(r)
		if err != nil {
			e, ok := err.(*rpc.Error)
			if !ok {
				e = rpc.Errorf(rpc.CodeUnauthenticated, "%v", err)
			}
			writeError(w, http.StatusUnauthorized, e)
			return
		}
		if e := hostcheck.RouteCaller(h.route.GetAuth(), c.Backend); e != nil {
			writeError(w, http.StatusForbidden, rpcError(e))
			return
		}
		caller = c
	}
	inst, st := h.sup.running()
	if inst == nil {
		writeError(w, http.StatusServiceUnavailable, rpc.Errorf(rpc.CodePluginUnavailable, "plugin %q is unavailable (%s): retry later", h.sup.cfg.Name, st))
		return
	}
	limit := int64(h.m.opts.MaxMessageBytes / 2)
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if errors.Is(err, os.ErrDeadlineExceeded) {
		writeError(w, http.StatusRequestTimeout, rpc.Errorf(rpc.CodeInvalidRequest,
			"reading body: not received within server.read_timeout: send it faster, or raise the bound"))
		return
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, rpc.Errorf(rpc.CodeInvalidRequest, "reading body: %v", err))
		return
	}
	if int64(len(body)) > limit {
		writeError(w, http.StatusRequestEntityTooLarge, rpc.Errorf(rpc.CodeLimitExceeded, "body over %d bytes", limit))
		return
	}
	req := &pluginpb.HTTPRequest{Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, Body: body,
		Host: r.Host, RemoteAddr: r.RemoteAddr, Pattern: h.route.GetPattern(), Caller: callerPB(caller),
		PathValues: map[string]string{}}
	for k, vs := range r.Header {
		if !hostcheck.ForwardedHeader(k) {
			continue // credentials stay with the host; the plugin gets the caller
		}
		req.Headers = append(req.Headers, &pluginpb.Header{Name: k, Values: vs})
	}
	for _, name := range wildcards(h.route.GetPattern()) {
		req.PathValues[name] = r.PathValue(name)
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	if !caller.Until.IsZero() {
		// The caller's rights end with its token (and the grace a
		// connection would get): so does a stream it opened.
		var stop context.CancelFunc
		ctx, stop = context.WithDeadline(ctx, caller.Until)
		defer stop()
	}
	stream, err := inst.rpc.ServeHTTP(ctx, req)
	if err != nil {
		writeError(w, http.StatusBadGateway, h.m.transportError(inst, "HTTP route", routeDeadline, true, err).(*rpc.Error))
		return
	}
	relayResponse(w, stream.Recv, func(err error) *rpc.Error {
		if ctx.Err() != nil || !caller.Until.IsZero() && !time.Now().Before(caller.Until) {
			// Ended by the client, a drain or the token's end (the
			// plugin, which got the same deadline, may report that
			// before this process's own timer has fired).
			return nil
		}
		return h.m.transportError(inst, "HTTP route", routeDeadline, true, err).(*rpc.Error)
	}, h.m.opts.WriteTimeout, func() func() bool {
		// From here the response may be a stream that never ends on its
		// own: EndStreams ends it.
		return context.AfterFunc(h.m.ending, cancel)
	})
}

// relayResponse writes a plugin's streamed HTTP response: the first chunk's
// status and headers, then every chunk's body, flushed as it comes, until
// recv fails (io.EOF: the plugin ended). What the plugin sends is checked,
// as anything a plugin sends is: a status outside 200-599 is a 502, and a
// header whose name is not an HTTP token or whose value holds control
// characters (a response-splitting attempt) is dropped. failed turns a
// transport error into the error written (nil: an end that is no failure,
// such as the client's going). Before the first chunk that is a 502; after
// it, the response is cut without its last chunk, so that a client tells a
// plugin that crashed mid-stream from one that ended its body. Each chunk
// gets writeTimeout (0: none) to reach the client; started runs once the
// status is written and returns what undoes it when the relay ends.
func relayResponse(w http.ResponseWriter, recv func() (*pluginpb.HTTPResponseChunk, error), failed func(error) *rpc.Error,
	writeTimeout time.Duration, started func() func() bool) {
	rc := http.NewResponseController(w)
	first := true
	for {
		chunk, err := recv()
		if err != nil {
			if err == io.EOF {
				return
			}
			e := failed(err)
			switch {
			case e == nil:
			case first:
				writeError(w, http.StatusBadGateway, e)
			default:
				panic(http.ErrAbortHandler) // net/http closes the connection, silently
			}
			return
		}
		if first {
			status := int(chunk.GetStatus())
			if status == 0 {
				status = http.StatusOK
			}
			if status < 200 || status > 599 {
				writeError(w, http.StatusBadGateway, rpc.Errorf(rpc.CodeInternal, "the plugin answered with HTTP status %d", status))
				return
			}
			for _, hd := range chunk.GetHeaders() {
				if !validHeaderName(hd.GetName()) {
					continue
				}
				for _, v := range hd.GetValues() {
					if validHeaderValue(v) {
						w.Header().Add(hd.GetName(), v)
					}
				}
			}
			w.WriteHeader(status)
			first = false
			if started != nil {
				defer started()()
			}
		}
		// A client that stops reading must not hold this handler (and the
		// plugin's stream behind it) forever: each chunk gets WriteTimeout.
		if writeTimeout > 0 {
			_ = rc.SetWriteDeadline(time.Now().Add(writeTimeout))
		}
		if len(chunk.GetBody()) > 0 {
			if _, err := w.Write(chunk.GetBody()); err != nil {
				return // the client went away; the request's context ends the stream
			}
		}
		if err := rc.Flush(); err != nil {
			return // the client went away or stopped reading
		}
	}
}

// validHeaderName: an RFC 9110 token.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// validHeaderValue: no control characters other than horizontal tab.
func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// wildcards lists the {name} and {name...} wildcards of a route pattern.
func wildcards(pattern string) []string {
	var out []string
	for {
		i := strings.IndexByte(pattern, '{')
		if i < 0 {
			return out
		}
		j := strings.IndexByte(pattern[i:], '}')
		if j < 0 {
			return out
		}
		name := strings.TrimSuffix(pattern[i+1:i+j], "...")
		if name != "$" && name != "" {
			out = append(out, name)
		}
		pattern = pattern[i+j+1:]
	}
}

// EndStreams ends every plugin route response under way that has sent its
// headers (a stream, such as kb's notifications, never ends on its own),
// so that a draining server's HTTP shutdown does not wait for them; their
// clients see the end of the body and resume. Responses that have not
// started yet finish normally. Herald calls it when it starts draining.
func (m *Manager) EndStreams() { m.endStream() }

// routeDeadline is the only bound on a plugin's HTTP route, for
// transportError: the caller's token's end.
const routeDeadline = "the end of the caller's token"
