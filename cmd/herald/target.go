package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/gorilla/websocket"

	"github.com/heraldhq/herald/core/config"
)

// hubURLs are the hub's HTTP base URL and WebSocket URL as the config
// says it serves them: https and wss when server.tls is set.
func hubURLs(cfg *config.Config) (base, ws string) {
	if cfg.Server.TLS != nil {
		return "https://" + cfg.Server.Listen, "wss://" + cfg.Server.Listen + "/ws"
	}
	return "http://" + cfg.Server.Listen, "ws://" + cfg.Server.Listen + "/ws"
}

// hubTLS is the TLS config that reaches a hub serving the config's
// certificate: the system's roots and, besides them, server.tls.cert_file,
// so that a self-signed certificate (a dev one) is trusted too. Nil
// without server.tls (or without a config): the system's roots only.
func hubTLS(cfg *config.Config) (*tls.Config, error) {
	if cfg == nil || cfg.Server.TLS == nil {
		return nil, nil
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	file := cfg.Resolve(cfg.Server.TLS.CertFile)
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("server.tls.cert_file: %w", err)
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("server.tls.cert_file %s: no PEM certificate in it", file)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// httpClient is the client of the HTTP commands (pub, plugins, call).
func httpClient(tc *tls.Config) *http.Client {
	c := &http.Client{Timeout: 30 * time.Second}
	if tc != nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = tc
		c.Transport = tr
	}
	return c
}

// wsDialer is the WebSocket dialer of sub and call; nil leaves the
// client's default.
func wsDialer(tc *tls.Config) *websocket.Dialer {
	if tc == nil {
		return nil
	}
	d := *websocket.DefaultDialer
	d.TLSClientConfig = tc
	return &d
}
