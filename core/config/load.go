package config

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// Load reads the HCL file at path and returns its configuration with defaults
// applied. A file that cannot be read is a plain error (errors.Is works with
// fs.ErrNotExist); problems inside the file are a Diagnostics error.
func Load(path string) (*Config, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load config: %w", err)
	}
	return Parse(src, path)
}

// LoadPartial is Load for `herald validate`, which reports every problem
// of a file at once, plugin blocks' included: on a Diagnostics error it
// still returns a Config (nil only when the file could not be read or
// parsed) whose Plugins are the blocks that have no problem of their own,
// so that the caller can check those too. The rest of that Config is not
// to be used.
func LoadPartial(path string) (*Config, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load config: %w", err)
	}
	c, diags := parse(src, path)
	if len(diags) == 0 {
		return c, nil
	}
	if c != nil {
		kept := c.Plugins[:0:0]
		for _, p := range c.Plugins {
			if !diags.about("plugin." + p.Name) {
				kept = append(kept, p)
			}
		}
		c.Plugins = kept
	}
	return c, diags
}

// about reports whether one of ds is about path or a key under it.
func (ds Diagnostics) about(path string) bool {
	for _, d := range ds {
		if d.Path == path || strings.HasPrefix(d.Path, path+".") || strings.HasPrefix(d.Path, path+"[") {
			return true
		}
	}
	return false
}

// Parse parses and validates src, an HCL document, taking every absent block
// and key from Defaults. filename is used in positions only. On any problem it
// returns a nil Config and a Diagnostics error listing all of them.
func Parse(src []byte, filename string) (*Config, error) {
	c, diags := parse(src, filename)
	if len(diags) > 0 {
		return nil, diags
	}
	return c, nil
}

// parse is Parse returning what it decoded besides the problems; the
// Config is nil when the document did not parse.
func parse(src []byte, filename string) (*Config, Diagnostics) {
	huge := hugeLiterals(src, filename)
	file, hd := hclsyntax.ParseConfig(maskHuge(src, huge), filename, hcl.InitialPos)
	body, ok := file.Body.(*hclsyntax.Body)
	var redefined Diagnostics
	if ok {
		hd, redefined = splitRedefined(hd, body, src, filename)
	}
	if hd.HasErrors() {
		// The rest of the file cannot be trusted after a syntax error, and
		// checking it would only add noise to the real problem.
		diags := append(fromHCL(hd, filename, "", hcl.InitialPos), redefined...)
		for _, h := range huge {
			diags = append(diags, h.diag)
		}
		diags.sort()
		return nil, diags
	}
	if !ok {
		return nil, Diagnostics{{Filename: filename, Line: 1, Column: 1, Message: "not an HCL native syntax document"}}
	}

	c := Defaults()
	c.File = filename
	d := &decoder{
		filename: filename,
		ctx:      evalContext(),
		pos:      map[string]hcl.Pos{},
		failed:   map[string]bool{},
		huge:     huge,
	}
	for _, r := range redefined { // the first is decoded; the second is the problem
		d.diags = append(d.diags, r)
		d.failed[r.Path] = true
	}
	d.root(body, &c)
	for _, h := range huge {
		if !h.reported { // in no key that was evaluated (an unknown one, say)
			d.diags = append(d.diags, h.diag)
		}
	}
	d.validate(&c)
	d.diags.sort()
	return &c, d.diags
}

// splitRedefined takes HCL's "Attribute redefined" errors out of hd as
// problems of their key, named by its path (log.level) like every other;
// the file parsed, and the first setting is the one decoded, so they are
// reported with the file's other problems rather than alone.
func splitRedefined(hd hcl.Diagnostics, body *hclsyntax.Body, src []byte, filename string) (hcl.Diagnostics, Diagnostics) {
	var rest hcl.Diagnostics
	var out Diagnostics
	for _, d := range hd {
		if d.Severity != hcl.DiagError || d.Summary != "Attribute redefined" || d.Subject == nil ||
			d.Subject.End.Byte > len(src) || d.Subject.Start.Byte >= d.Subject.End.Byte {
			rest = append(rest, d)
			continue
		}
		name := string(src[d.Subject.Start.Byte:d.Subject.End.Byte])
		path, in := blockAt(body, d.Subject.Start.Byte)
		if path != "" {
			path += "."
		}
		msg := "is set twice: remove one"
		if first, ok := in.Attributes[name]; ok {
			p := first.NameRange.Start
			msg = fmt.Sprintf("is set twice (first at %s:%d:%d): remove one", filename, p.Line, p.Column)
		}
		out = append(out, Diagnostic{Filename: filename, Line: d.Subject.Start.Line, Column: d.Subject.Start.Column,
			Path: path + name, Message: msg})
	}
	return rest, out
}

// blockAt finds the innermost block of body holding the byte offset off:
// its path as key paths name it ("log", "plugin.chat.config") and its body
// (body itself and "" at the top level).
func blockAt(body *hclsyntax.Body, off int) (string, *hclsyntax.Body) {
	for _, b := range body.Blocks {
		if r := b.Range(); off < r.Start.Byte || off >= r.End.Byte {
			continue
		}
		name := b.Type
		if b.Type == "plugin" && len(b.Labels) > 0 {
			name += "." + b.Labels[0]
		}
		inner, in := blockAt(b.Body, off)
		if inner != "" {
			return name + "." + inner, in
		}
		return name, b.Body
	}
	return "", body
}

// decoder walks the syntax tree by hand rather than through gohcl so that it
// can report every problem at once, suggest names, and remember where each
// key was written for the checks that run after decoding.
type decoder struct {
	filename string
	ctx      *hcl.EvalContext
	diags    Diagnostics
	// pos is where each key path ("limits.max_batch") or block path
	// ("limits", "plugin.chat") was written.
	pos map[string]hcl.Pos
	// failed holds the key paths that already have an error, so that
	// validation does not pile a second, confusing one on top.
	failed map[string]bool
	// huge are the number literals out of range (masked in the source
	// parsed): eval reports those of a key with its path.
	huge []*hugeLiteral
}

func (d *decoder) errorf(pos hcl.Pos, path, format string, args ...any) {
	d.failed[path] = true
	d.diags = append(d.diags, Diagnostic{
		Filename: d.filename,
		Line:     pos.Line,
		Column:   pos.Column,
		Path:     path,
		Message:  fmt.Sprintf(format, args...),
	})
}

// posOf finds where path was written, falling back to its enclosing block and
// then to the start of the file, so that a missing key is reported at the
// block that lacks it.
func (d *decoder) posOf(path string) hcl.Pos {
	for p := path; p != ""; {
		if pos, ok := d.pos[p]; ok {
			return pos
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return hcl.InitialPos
}

// where renders a position for messages that point at another place.
func (d *decoder) where(pos hcl.Pos) string {
	return fmt.Sprintf("%s:%d:%d", d.filename, pos.Line, pos.Column)
}

// field decodes one key of a block into the Config.
type field func(v value)

// section is a singleton block: its name and its keys.
type section struct {
	name   string
	fields func(c *Config) map[string]field
}

var sections = []section{
	{"server", func(c *Config) map[string]field {
		return map[string]field{
			"listen":          func(v value) { v.str(&c.Server.Listen) },
			"allowed_origins": func(v value) { v.strings(&c.Server.AllowedOrigins) },
			"ping_interval":   func(v value) { v.duration(&c.Server.PingInterval) },
			"read_timeout":    func(v value) { v.duration(&c.Server.ReadTimeout) },
			"idle_timeout":    func(v value) { v.duration(&c.Server.IdleTimeout) },
			"admin_listen":    func(v value) { v.str(&c.Server.AdminListen) },
			"admin_token":     func(v value) { v.str(&c.Server.AdminToken) },
		}
	}},
	{"auth", func(c *Config) map[string]field {
		return map[string]field{
			"token_secret":  func(v value) { v.str(&c.Auth.TokenSecret) },
			"api_keys":      func(v value) { v.strings(&c.Auth.APIKeys) },
			"anonymous":     func(v value) { v.boolean(&c.Auth.Anonymous) },
			"open_channels": func(v value) { v.boolean(&c.Auth.OpenChannels) },
			"expiry_grace":  func(v value) { v.duration(&c.Auth.ExpiryGrace) },
			"auth_timeout":  func(v value) { v.duration(&c.Auth.AuthTimeout) },
		}
	}},
	{"delivery", func(c *Config) map[string]field {
		return map[string]field{
			"max_batch":     func(v value) { v.integer(&c.Delivery.MaxBatch) },
			"max_delay":     func(v value) { v.duration(&c.Delivery.MaxDelay) },
			"outbox_limit":  func(v value) { v.integer(&c.Delivery.OutboxLimit) },
			"outbox_bytes":  func(v value) { v.integer(&c.Delivery.OutboxBytes) },
			"write_timeout": func(v value) { v.duration(&c.Delivery.WriteTimeout) },
			"writers":       func(v value) { v.integer(&c.Delivery.Writers) },
			"io_uring":      func(v value) { v.boolean(&c.Delivery.IOUring) },
		}
	}},
	{"limits", func(c *Config) map[string]field {
		return map[string]field{
			"max_frame_bytes":    func(v value) { v.int64(&c.Limits.MaxFrameBytes) },
			"calls_per_second":   func(v value) { v.float(&c.Limits.CallsPerSecond) },
			"max_subscriptions":  func(v value) { v.integer(&c.Limits.MaxSubscriptions) },
			"call_timeout":       func(v value) { v.duration(&c.Limits.CallTimeout) },
			"max_inflight_calls": func(v value) { v.integer(&c.Limits.MaxInflightCalls) },
			"max_batch_calls":    func(v value) { v.integer(&c.Limits.MaxBatchCalls) },
			"max_publish_bytes":  func(v value) { v.int64(&c.Limits.MaxPublishBytes) },
			"idempotency_bytes":  func(v value) { v.int64(&c.Limits.IdempotencyBytes) },
		}
	}},
	{"history", func(c *Config) map[string]field {
		return map[string]field{
			"size":      func(v value) { v.integer(&c.History.Size) },
			"ttl":       func(v value) { v.duration(&c.History.TTL) },
			"max_bytes": func(v value) { v.int64(&c.History.MaxBytes) },
		}
	}},
	{"overload", func(c *Config) map[string]field {
		return map[string]field{
			"busy_connections":  func(v value) { v.integer(&c.Overload.BusyConnections) },
			"busy_outbox_ratio": func(v value) { v.float(&c.Overload.BusyOutboxRatio) },
		}
	}},
	{"state", func(c *Config) map[string]field {
		return map[string]field{
			"dir":       func(v value) { v.str(&c.State.Dir); c.State.DirSet = true },
			"max_bytes": func(v value) { v.int64(&c.State.MaxBytes) },
		}
	}},
	{"log", func(c *Config) map[string]field {
		return map[string]field{
			"level":                   func(v value) { v.str(&c.Log.Level) },
			"format":                  func(v value) { v.str(&c.Log.Format) },
			"plugin_lines_per_second": func(v value) { v.integer(&c.Log.PluginLinesPerSecond) },
		}
	}},
}

// brokerKinds are the keys each broker kind accepts.
var brokerKinds = map[string]func(c *Config) map[string]field{
	"memory": func(*Config) map[string]field { return nil },
	"nats": func(c *Config) map[string]field {
		return map[string]field{
			"url":      func(v value) { v.str(&c.Broker.URL) },
			"replicas": func(v value) { v.integer(&c.Broker.Replicas) },
		}
	},
}

// topLevel lists the blocks a config file may hold, in the order the docs
// present them; it is also the candidate list for suggestions.
var topLevel = []string{"server", "auth", "delivery", "limits", "history", "overload", "broker", "state", "log", "plugin"}

func (d *decoder) root(body *hclsyntax.Body, c *Config) {
	for _, a := range sortedAttrs(body) {
		if slices.Contains(topLevel, a.Name) {
			form := a.Name + " { ... }"
			switch a.Name {
			case "broker":
				form = `broker "memory" {}`
			case "plugin":
				form = `plugin "name" { ... }`
			}
			d.errorf(a.NameRange.Start, a.Name, "is a block, not a key: write %s without \"=\"", form)
			continue
		}
		d.errorf(a.NameRange.Start, a.Name, "unknown key at the top level%s", suggest(a.Name, topLevel, "; keys go inside a block such as server { ... }"))
	}

	first := map[string]hcl.Pos{} // where each singleton block was first seen
	plugins := map[string]hcl.Pos{}
	for _, b := range body.Blocks {
		pos := b.TypeRange.Start
		if b.Type == "plugin" {
			d.plugin(b, c, plugins)
			continue
		}
		if !slices.Contains(topLevel, b.Type) {
			d.errorf(pos, b.Type, "unknown block%s", suggest(b.Type, topLevel, ""))
			continue
		}
		if p, dup := first[b.Type]; dup {
			d.errorf(pos, b.Type, "duplicate block; the first is at %s and there can be only one", d.where(p))
			continue
		}
		first[b.Type] = pos
		d.pos[b.Type] = pos

		if b.Type == "broker" {
			d.broker(b, c)
			continue
		}
		if len(b.Labels) > 0 {
			d.errorf(b.LabelRanges[0].Start, b.Type, "takes no label: write %s { ... }", b.Type)
		}
		if b.Type == "server" {
			b = d.serverBlocks(b, c)
		}
		for _, s := range sections {
			if s.name == b.Type {
				d.body(b.Body, b.Type, b.Type, s.fields(c))
			}
		}
	}
}

func (d *decoder) broker(b *hclsyntax.Block, c *Config) {
	kinds := []string{"memory", "nats"}
	if len(b.Labels) != 1 {
		d.errorf(b.TypeRange.Start, "broker", `needs exactly one kind label: write broker "memory" {} or broker "nats" { url = "nats://127.0.0.1:4222" }`)
		return
	}
	kind := b.Labels[0]
	fields, ok := brokerKinds[kind]
	if !ok {
		d.errorf(b.LabelRanges[0].Start, "broker", "unknown kind %q%s", kind, suggest(kind, kinds, `; use "memory" or "nats"`))
		return
	}
	c.Broker.Kind = kind
	d.body(b.Body, "broker", fmt.Sprintf("broker %q", kind), fields(c))
}

// body decodes the keys of a block with a fixed schema; what names the block
// in messages. Nested blocks are never allowed there.
func (d *decoder) body(body *hclsyntax.Body, path, what string, fields map[string]field) {
	names := make([]string, 0, len(fields))
	for name := range fields {
		names = append(names, name)
	}
	slices.Sort(names)

	for _, a := range sortedAttrs(body) {
		keyPath := path + "." + a.Name
		set, ok := fields[a.Name]
		if !ok {
			d.unknownKey(a.NameRange.Start, keyPath, what, a.Name, names)
			continue
		}
		d.pos[keyPath] = a.NameRange.Start
		v, ok := d.eval(a, keyPath)
		if !ok || v.IsNull() {
			// null means "not set", as it does in Terraform: the default stays.
			continue
		}
		set(value{d: d, path: keyPath, attr: a, val: v})
	}
	for _, b := range body.Blocks {
		keyPath := path + "." + b.Type
		if _, ok := fields[b.Type]; ok {
			d.errorf(b.TypeRange.Start, keyPath, "is a key, not a block: write %s = ...", b.Type)
			continue
		}
		d.errorf(b.TypeRange.Start, keyPath, "unknown block; %s takes no nested blocks", what)
	}
}

func (d *decoder) unknownKey(pos hcl.Pos, path, what, name string, valid []string) {
	if len(valid) == 0 {
		d.errorf(pos, path, "unknown key; %s takes no keys", what)
		return
	}
	d.errorf(pos, path, "unknown key%s", suggest(name, valid, "; valid keys are "+strings.Join(valid, ", ")))
}

// hugeIn reports whether a huge literal starts in the bytes [start, end),
// marking each one found as reported.
func (d *decoder) hugeIn(start, end int) bool {
	found := false
	for _, h := range d.huge {
		if h.start >= start && h.start < end {
			h.reported, found = true, true
		}
	}
	return found
}

// eval evaluates an attribute's expression, reporting any error against the
// attribute's key path.
func (d *decoder) eval(a *hclsyntax.Attribute, path string) (cty.Value, bool) {
	if rng := a.Expr.Range(); d.hugeIn(rng.Start.Byte, rng.End.Byte) {
		d.errorf(a.NameRange.Start, path, outOfRange)
		return cty.NilVal, false
	}
	v, hd := a.Expr.Value(d.ctx)
	if hd.HasErrors() {
		d.failed[path] = true
		before := len(d.diags)
		switch e := a.Expr.(type) {
		case *hclsyntax.TupleConsExpr:
			// In a list, the error is the element's, named by its index
			// like the list's other errors (auth.api_keys[1]).
			for i, el := range e.Exprs {
				if _, ehd := el.Value(d.ctx); ehd.HasErrors() {
					d.diags = append(d.diags, fromHCL(ehd, d.filename, fmt.Sprintf("%s[%d]", path, i), el.Range().Start)...)
				}
			}
		case *hclsyntax.ObjectConsExpr:
			// In an object (a plugin's env = { ... }), the entry's, named
			// by its key.
			for _, item := range e.Items {
				k, khd := item.KeyExpr.Value(d.ctx)
				if khd.HasErrors() {
					d.diags = append(d.diags, fromHCL(khd, d.filename, path, item.KeyExpr.Range().Start)...)
					continue
				}
				if _, ehd := item.ValueExpr.Value(d.ctx); ehd.HasErrors() {
					entry := path
					if k.IsKnown() && !k.IsNull() && k.Type() == cty.String {
						entry = path + "." + k.AsString()
					}
					d.diags = append(d.diags, fromHCL(ehd, d.filename, entry, item.ValueExpr.Range().Start)...)
				}
			}
		}
		if len(d.diags) > before {
			return cty.NilVal, false
		}
		d.diags = append(d.diags, fromHCL(hd, d.filename, path, a.NameRange.Start)...)
		return cty.NilVal, false
	}
	if hugeNumber(v) {
		d.errorf(a.NameRange.Start, path, outOfRange)
		return cty.NilVal, false
	}
	if !v.IsWhollyKnown() {
		// Cannot happen without variables, but a value we cannot see is one
		// we cannot check.
		d.errorf(a.NameRange.Start, path, "value is not known")
		return cty.NilVal, false
	}
	return v, true
}

// sortedAttrs returns a body's attributes in source order; the parser keeps
// them in a map.
func sortedAttrs(body *hclsyntax.Body) []*hclsyntax.Attribute {
	attrs := make([]*hclsyntax.Attribute, 0, len(body.Attributes))
	for _, a := range body.Attributes {
		attrs = append(attrs, a)
	}
	slices.SortFunc(attrs, func(a, b *hclsyntax.Attribute) int {
		return a.SrcRange.Start.Byte - b.SrcRange.Start.Byte
	})
	return attrs
}
