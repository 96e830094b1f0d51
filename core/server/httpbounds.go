package server

import (
	"bufio"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/heraldhq/herald/core/rpc"
)

// The HTTP listeners' time bounds. net/http gives two of them:
// server.read_timeout is http.Server.ReadTimeout (a request's headers and
// body, from its first byte; a TLS handshake too), server.idle_timeout its
// IdleTimeout (a keep-alive connection waiting for its next request).
// net/http clears the read deadline once the body is read (its background
// read of the connection starts then), so neither a long plugin call nor a
// streamed plugin route (kb's notifications) is ended by read_timeout; a
// WebSocket upgrade clears it too (gorilla clears every deadline of the
// hijacked connection before answering the handshake; transport then sets
// its own).
//
// The bound on replies is here. http.Server.WriteTimeout bounds the whole
// response from the end of the request's headers, the handler's own time
// included: a plugin call that took most of limits.call_timeout would have
// no time left to answer, and a stream would be cut for being long.
// boundedHTTP bounds each write instead, by delivery.write_timeout (the
// bound of a WebSocket's writes): a reply is cut only when a write of it
// makes no progress for that long, as when a backend does not read it.

// newHTTPServer is a listener's http.Server, with the bounds above.
func (s *Server) newHTTPServer(h http.Handler, errorLog *log.Logger) *http.Server {
	return &http.Server{
		Handler:     s.boundedHTTP(h),
		ReadTimeout: s.cfg.Server.ReadTimeout,
		IdleTimeout: s.cfg.Server.IdleTimeout,
		ErrorLog:    errorLog,
	}
}

// writeChunk is how much of one Write goes out under one write deadline: a
// large reply (a publish's, with many notifications) is cut only if the
// client takes less than this in delivery.write_timeout, whatever its size.
const writeChunk = 64 << 10

// boundedHTTP applies the write bound above to every request h serves.
func (s *Server) boundedHTTP(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		bw := &boundedWriter{ResponseWriter: w, rc: *http.NewResponseController(w), timeout: s.live().Delivery.WriteTimeout}
		h.ServeHTTP(bw, r)
		if !bw.hijacked {
			// What net/http still holds buffered goes out after this
			// returns: under the bound too (net/http clears the deadline
			// once the response is done).
			_ = bw.rc.SetWriteDeadline(time.Now().Add(bw.timeout))
		}
	})
}

// boundedWriter gives each write of a response, and each flush, its own
// deadline of timeout (delivery.write_timeout).
type boundedWriter struct {
	http.ResponseWriter
	rc       http.ResponseController // of the ResponseWriter
	timeout  time.Duration
	hijacked bool
}

func (w *boundedWriter) Write(p []byte) (int, error) {
	written := 0
	for {
		part := p[written:]
		if len(part) > writeChunk {
			part = part[:writeChunk]
		}
		_ = w.rc.SetWriteDeadline(time.Now().Add(w.timeout))
		n, err := w.ResponseWriter.Write(part)
		written += n
		if err != nil || written == len(p) {
			return written, err
		}
	}
}

// FlushError is what http.ResponseController.Flush calls (streamed plugin
// routes flush each chunk): the bytes reach the socket here.
func (w *boundedWriter) FlushError() error {
	_ = w.rc.SetWriteDeadline(time.Now().Add(w.timeout))
	return w.rc.Flush()
}

// Flush is http.Flusher's, for handlers that assert it.
func (w *boundedWriter) Flush() { _ = w.FlushError() }

// Hijack hands the connection over (a WebSocket upgrade): its deadlines
// are then its new owner's.
func (w *boundedWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := w.rc.Hijack()
	if err == nil {
		w.hijacked = true
	}
	return c, brw, err
}

// Unwrap lets http.ResponseController reach the connection's own
// ResponseWriter (SetWriteDeadline, SetReadDeadline, EnableFullDuplex).
func (w *boundedWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// writeBodyError answers a request whose body could not be read: 413 over
// limit (limits.max_publish_bytes), 408 when it did not arrive within
// server.read_timeout, 400 otherwise (the client went away mid-body, or
// sent a malformed chunked body).
func writeBodyError(w http.ResponseWriter, err error, limit int64, readTimeout time.Duration) {
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		writeJSONError(w, http.StatusRequestEntityTooLarge, rpc.CodeLimitExceeded, fmt.Sprintf("body: larger than %d bytes (limits.max_publish_bytes)", limit))
	case errors.Is(err, os.ErrDeadlineExceeded):
		writeJSONError(w, http.StatusRequestTimeout, rpc.CodeInvalidRequest,
			fmt.Sprintf("body: not received within %s (server.read_timeout): send it faster, or raise the bound", readTimeout))
	default:
		writeJSONError(w, http.StatusBadRequest, rpc.CodeInvalidRequest, fmt.Sprintf("body: %v", err))
	}
}
