package heraldtest

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// Proxy is a TCP proxy between clients and a test server, so that a test
// can cut connections (Cut) or refuse new ones (SetDown) the way a network
// does, without the server noticing anything but a dropped peer.
type Proxy struct {
	Addr string // where clients connect: host:port

	target string
	ln     net.Listener
	mu     sync.Mutex
	down   bool
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

// StartProxy listens on a free loopback port and forwards to target
// (host:port); the test's cleanup stops it.
func StartProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("heraldtest: proxy listen: %v", err)
	}
	p := &Proxy{Addr: ln.Addr().String(), target: target, ln: ln, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

// WSURL is the proxy's WebSocket URL for herald's /ws.
func (p *Proxy) WSURL() string { return "ws://" + p.Addr + "/ws" }

// URL is the proxy's HTTP base URL.
func (p *Proxy) URL() string { return "http://" + p.Addr }

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.down {
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		p.mu.Unlock()
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c] = struct{}{}
		p.conns[s] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(c, s)
		go p.pipe(s, c)
	}
}

func (p *Proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	_, _ = io.Copy(dst, src)
	_ = dst.Close()
	_ = src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}

// Cut drops every connection through the proxy at once, both ways, with
// no WebSocket close frame: to each side it looks like a network failure.
// It returns how many client connections it cut.
func (p *Proxy) Cut() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		_ = c.Close()
	}
	n := len(p.conns) / 2
	clear(p.conns)
	return n
}

// Conns is the number of client connections through the proxy.
func (p *Proxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns) / 2
}

// SetDown makes the proxy refuse (accept and close at once) new
// connections while down is true; existing ones are untouched (Cut them).
func (p *Proxy) SetDown(down bool) {
	p.mu.Lock()
	p.down = down
	p.mu.Unlock()
}

// SetTarget points new connections at another server (e.g. a restarted one).
func (p *Proxy) SetTarget(target string) {
	p.mu.Lock()
	p.target = target
	p.mu.Unlock()
}

// Close stops the proxy and every connection through it.
func (p *Proxy) Close() {
	_ = p.ln.Close()
	p.Cut()
	p.wg.Wait()
}

// FreeAddr returns a loopback host:port that was free a moment ago, for a
// server the test restarts on the same address.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("heraldtest: free port: %v", err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// WriteConfig writes a test config listening on addr (with the test secret
// and API key, and opts.HCL appended) and returns its path, for
// StartWithConfig: a test that restarts herald starts it twice with it.
func WriteConfig(t testing.TB, addr string, opts Options) string {
	t.Helper()
	authBody := opts.Auth
	if authBody == "" {
		authBody = fmt.Sprintf("token_secret = %q\n  api_keys = [%q]", Secret, APIKey)
	}
	cfg := fmt.Sprintf("server {\n  listen = %q\n  allowed_origins = [\"http://localhost:8080\"]\n}\nauth {\n  %s\n}\n%s\n", addr, authBody, opts.HCL)
	path := filepath.Join(t.TempDir(), "config.hcl")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatalf("heraldtest: write config: %v", err)
	}
	return path
}
