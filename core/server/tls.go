package server

import (
	"crypto/tls"
	"fmt"
	"net"
	"sync/atomic"

	"github.com/heraldhq/herald/core/config"
)

// certificate holds the listener's TLS certificate; Reload swaps it, so a
// renewed certificate takes effect on the next handshake without a restart.
type certificate struct {
	certFile, keyFile string
	current           atomic.Pointer[tls.Certificate]
}

func newCertificate(cfg *config.Config) (*certificate, error) {
	if cfg.Server.TLS == nil {
		return nil, nil
	}
	c := &certificate{certFile: cfg.Resolve(cfg.Server.TLS.CertFile), keyFile: cfg.Resolve(cfg.Server.TLS.KeyFile)}
	if err := c.load(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *certificate) load() error {
	pair, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("server.tls: load %s and %s: %w", c.certFile, c.keyFile, err)
	}
	c.current.Store(&pair)
	return nil
}

func (c *certificate) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return c.current.Load(), nil
}

// listener serves ln over TLS when the config asks for it. Only HTTP/1.1
// is offered: WebSocket upgrades need it.
func (c *certificate) listener(ln net.Listener) net.Listener {
	if c == nil {
		return ln
	}
	return tls.NewListener(ln, &tls.Config{
		GetCertificate: c.get,
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"http/1.1"},
	})
}
