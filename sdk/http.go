package sdk

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	pluginpb "github.com/heraldhq/herald/sdk/proto"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// httpChunkBytes is how much body a route handler may write before the SDK
// sends a chunk without waiting for Flush.
const httpChunkBytes = 32 << 10

func (s *server) ServeHTTP(req *pluginpb.HTTPRequest, stream pluginpb.Plugin_ServeHTTPServer) error {
	rt, ok := s.routes[req.GetMethod()+" "+req.GetPattern()]
	if !ok && req.GetMethod() == http.MethodHead {
		// net/http's patterns: a GET route answers HEAD too (the host
		// matched it so, and sends no body back).
		rt, ok = s.routes[http.MethodGet+" "+req.GetPattern()]
	}
	if !ok {
		// The host matched a route this process does not have: answer 404.
		return stream.Send(&pluginpb.HTTPResponseChunk{Status: http.StatusNotFound,
			Headers: []*pluginpb.Header{{Name: "Content-Type", Values: []string{"application/json"}}},
			Body:    []byte(`{"error":{"code":-32601,"message":"no such route in plugin"}}`)})
	}
	ctx := context.WithValue(stream.Context(), callerKey{}, callerFromPB(req.GetCaller()))
	if h := s.currentHost(); h != nil {
		ctx = context.WithValue(ctx, hostKey{}, Host(h))
	}
	url := req.GetPath()
	if req.GetRawQuery() != "" {
		url += "?" + req.GetRawQuery()
	}
	r, err := http.NewRequestWithContext(ctx, req.GetMethod(), url, bytes.NewReader(req.GetBody()))
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	for _, h := range req.GetHeaders() {
		for _, v := range h.GetValues() {
			r.Header.Add(h.GetName(), v)
		}
	}
	r.Host = req.GetHost()
	r.RemoteAddr = req.GetRemoteAddr()
	r.RequestURI = url
	r.Pattern = req.GetMethod() + " " + req.GetPattern()
	for k, v := range req.GetPathValues() {
		r.SetPathValue(k, v)
	}
	w := &streamWriter{stream: stream, header: http.Header{}}
	if err := s.safe(func() error { rt.Handler.ServeHTTP(w, r); return nil }); err != nil {
		if !w.sentHeader {
			// Nothing reached the client: what the handler wrote is
			// dropped for a JSON error, as Herald's own errors are.
			e := AsError(err)
			body, _ := json.Marshal(map[string]any{"error": map[string]any{"code": e.Code, "message": e.Message}})
			w.header = http.Header{"Content-Type": {"application/json"}}
			w.status, w.wroteHeader = http.StatusInternalServerError, true
			w.buf.Reset()
			w.buf.Write(body)
			return w.flush()
		}
		// The response has started: failing the stream makes the host cut
		// it, so that the client does not take it for a whole body.
		_ = w.flush()
		return status.Error(codes.Internal, AsError(err).Message)
	}
	return w.flush()
}

// streamWriter is the http.ResponseWriter of a plugin route: headers go out
// with the first chunk, body bytes on every Flush (or when the buffer fills).
type streamWriter struct {
	stream      pluginpb.Plugin_ServeHTTPServer
	header      http.Header
	status      int
	wroteHeader bool
	sentHeader  bool
	buf         bytes.Buffer
	err         error
}

var _ http.Flusher = (*streamWriter)(nil)

func (w *streamWriter) Header() http.Header { return w.header }

func (w *streamWriter) WriteHeader(code int) {
	if w.wroteHeader {
		return
	}
	w.wroteHeader = true
	w.status = code
}

func (w *streamWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	n, _ := w.buf.Write(p)
	if w.buf.Len() >= httpChunkBytes {
		if err := w.flush(); err != nil {
			return n, err
		}
	}
	return n, nil
}

// Flush sends what was written so far to the HTTP client.
func (w *streamWriter) Flush() { _ = w.flush() }

func (w *streamWriter) flush() error {
	if w.err != nil {
		return w.err
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.sentHeader && w.buf.Len() == 0 {
		return nil
	}
	chunk := &pluginpb.HTTPResponseChunk{Body: bytes.Clone(w.buf.Bytes())}
	if !w.sentHeader {
		chunk.Status = int32(w.status)
		for k, vs := range w.header {
			chunk.Headers = append(chunk.Headers, &pluginpb.Header{Name: k, Values: vs})
		}
		w.sentHeader = true
	}
	w.buf.Reset()
	if err := w.stream.Send(chunk); err != nil {
		w.err = err
		if err == io.EOF {
			w.err = context.Canceled
		}
		return w.err
	}
	return nil
}
