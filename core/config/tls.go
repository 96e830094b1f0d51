package config

import (
	"crypto/tls"

	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// serverBlocks decodes the blocks nested in `server` (only `tls`) and
// returns the server block without them, for its keys to be decoded as
// any section's.
func (d *decoder) serverBlocks(b *hclsyntax.Block, c *Config) *hclsyntax.Block {
	rest := *b
	body := *b.Body
	body.Blocks = nil
	rest.Body = &body
	seen := false
	for _, nb := range b.Body.Blocks {
		if nb.Type != "tls" {
			body.Blocks = append(body.Blocks, nb) // reported by body as unknown
			continue
		}
		if seen {
			d.errorf(nb.TypeRange.Start, "server.tls", "duplicate block; there can be only one")
			continue
		}
		seen = true
		if len(nb.Labels) > 0 {
			d.errorf(nb.LabelRanges[0].Start, "server.tls", "takes no label: write tls { cert_file = ..., key_file = ... }")
		}
		d.pos["server.tls"] = nb.TypeRange.Start
		t := &TLS{}
		d.body(nb.Body, "server.tls", "server.tls", map[string]field{
			"cert_file": func(v value) { v.str(&t.CertFile) },
			"key_file":  func(v value) { v.str(&t.KeyFile) },
		})
		c.Server.TLS = t
	}
	return &rest
}

// validateTLS checks that a tls block names both files and that they hold
// a certificate and its key, so that `herald validate` catches what serve
// would fail on.
func (d *decoder) validateTLS(c *Config) {
	t := c.Server.TLS
	if t == nil {
		return
	}
	if t.CertFile == "" || t.KeyFile == "" {
		d.errorf(d.posOf("server.tls"), "server.tls", "needs both cert_file and key_file (PEM files)")
		return
	}
	if _, err := tls.LoadX509KeyPair(c.Resolve(t.CertFile), c.Resolve(t.KeyFile)); err != nil {
		d.errorf(d.posOf("server.tls.cert_file"), "server.tls", "cannot load the certificate and key (%s, %s): %v", c.Resolve(t.CertFile), c.Resolve(t.KeyFile), err)
	}
}
