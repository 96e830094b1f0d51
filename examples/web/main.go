// Command web serves the page a developer opens first to see Herald work:
// connect with a token, subscribe, watch batches arrive, publish.
//
//	make demo                          # this page on http://localhost:8080, and herald
//	make demo DEMO_LISTEN=localhost:9090
//
// With -herald BIN it makes sure herald serves the config: it uses the one
// already answering at server.listen (say, from `make run`), or starts BIN
// and stops it on exit.
//
// Besides the page and the JavaScript client (sdk/js/src), it offers two
// conveniences a real application's backend would provide instead, and that
// only make sense with the dev config: /demo/token mints a client token with
// the config's secret, /demo/publish publishes with its API key (so the
// page never holds the key).
package main

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/heraldhq/herald/core/config"
	"github.com/heraldhq/herald/sdk/client"
)

//go:embed static
var static embed.FS

// demo is the page's server.
type demo struct {
	WSURL   string // herald's WebSocket URL, as the browser reaches it
	HTTPURL string // herald's HTTP API, as this server reaches it
	APIKey  string
	Secret  string // token_secret: only for /demo/token
	SDKDir  string // sdk/js/src
	// Origin is the page's own origin, and OriginAllowed whether herald's
	// config lets it open a WebSocket: the page explains a refusal that
	// the browser reports only as "WebSocket error".
	Origin        string
	OriginAllowed bool
}

func (d *demo) handler() http.Handler {
	mux := http.NewServeMux()
	page, _ := fs.Sub(static, "static")
	mux.Handle("GET /", http.FileServerFS(page))
	mux.Handle("GET /sdk/", http.StripPrefix("/sdk/", http.FileServer(http.Dir(d.SDKDir))))
	mux.HandleFunc("GET /demo/config", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"ws_url": d.WSURL, "origin": d.Origin, "origin_allowed": d.OriginAllowed})
	})
	mux.HandleFunc("GET /demo/token", d.token)
	mux.HandleFunc("POST /demo/publish", d.publish)
	return mux
}

func (d *demo) token(w http.ResponseWriter, r *http.Request) {
	sub := r.URL.Query().Get("sub")
	if sub == "" {
		sub = "alice"
	}
	ttl := time.Hour
	if s := r.URL.Query().Get("ttl"); s != "" {
		v, err := time.ParseDuration(s)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "ttl: " + err.Error()})
			return
		}
		ttl = v
	}
	now := time.Now()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": sub, "iat": now.Unix(), "exp": now.Add(ttl).Unix(),
	}).SignedString([]byte(d.Secret))
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"token": tok})
}

func (d *demo) publish(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	p := &client.Publisher{URL: d.HTTPURL, APIKey: d.APIKey}
	out, err := p.Do(r.Context(), http.MethodPost, "/v1/publish", body, nil)
	if err != nil {
		if ae, ok := err.(*client.APIError); ok {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(ae.Status)
			_, _ = io.WriteString(w, ae.Body)
			return
		}
		writeJSON(w, http.StatusBadGateway, map[string]string{"error": err.Error()})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(out)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func main() {
	listen := flag.String("listen", "localhost:8080", "address to serve the page on (its origin must be in server.allowed_origins)")
	path := flag.String("config", "config.hcl", "herald's config: gives its address, the dev token secret and the API key")
	sdk := flag.String("sdk", "", "the JavaScript client's directory (default: sdk/js/src beside this example)")
	heraldBin := flag.String("herald", "", "herald binary: start it with -config unless a herald already answers at server.listen")
	flag.Parse()
	cfg, err := config.Load(*path)
	if err != nil {
		log.Fatal(err)
	}
	if len(cfg.Auth.APIKeys) == 0 {
		log.Fatalf("%s: the demo publishes with auth.api_keys[0], and there is none", *path)
	}
	if *sdk == "" {
		*sdk = filepath.Join("sdk", "js", "src")
	}
	if _, err := os.Stat(filepath.Join(*sdk, "herald.js")); err != nil {
		log.Fatalf("the JavaScript client is not at %s (run from the repository root, or give -sdk)", *sdk)
	}
	host := cfg.Server.Listen
	origin := "http://" + strings.TrimPrefix(*listen, "http://")
	d := &demo{
		WSURL:         "ws://" + host + "/ws",
		HTTPURL:       "http://" + host,
		APIKey:        cfg.Auth.APIKeys[0],
		Secret:        cfg.Auth.TokenSecret,
		SDKDir:        *sdk,
		Origin:        origin,
		OriginAllowed: originAllowed(cfg.Server.AllowedOrigins, origin),
	}
	if !d.OriginAllowed {
		log.Printf("warning: this page's origin %s is not in server.allowed_origins of %s, so herald will refuse its WebSocket: add %q there (then SIGHUP or restart herald), or use -listen with an allowed origin", origin, *path, origin)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *heraldBin != "" {
		h, err := ensureHerald(ctx, *heraldBin, *path, d.HTTPURL)
		if err != nil {
			log.Fatal(err)
		}
		defer h.stop()
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Printf("the demo page cannot listen on %s: %v (choose another with -listen, or make demo DEMO_LISTEN=host:port)", *listen, err)
		return
	}
	srv := &http.Server{Handler: d.handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(shut)
	}()
	fmt.Printf("Herald demo page: %s/  (herald at %s)\n", origin, d.WSURL)
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Print(err)
	}
}

// originAllowed mirrors herald's origin rule for the page's origin: listed
// (case-insensitively) or "*".
func originAllowed(allowed []string, origin string) bool {
	for _, o := range allowed {
		if o == "*" || strings.EqualFold(o, origin) {
			return true
		}
	}
	return false
}
