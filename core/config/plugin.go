package config

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"maps"
	"math"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/heraldhq/herald/sdk/confine"
	"github.com/zclconf/go-cty/cty"
)

// pluginName is what a plugin may be called: its name prefixes method names
// (chat.saveDraft) and sits in URL paths (/v1/plugins/chat/...), so it must
// not hold dots, slashes or spaces.
var pluginName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]{0,63}$`)

var pluginKeys = []string{"args", "command", "config", "emit_channels", "env", "inherit_env"}

func (d *decoder) plugin(b *hclsyntax.Block, c *Config, seen map[string]hcl.Pos) {
	pos := b.TypeRange.Start
	if len(b.Labels) != 1 {
		d.errorf(pos, "plugin", `needs exactly one name label: write plugin "chat" { command = "bin/plugins/chat" }`)
		return
	}
	name := b.Labels[0]
	path := "plugin." + name
	if !pluginName.MatchString(name) {
		d.errorf(b.LabelRanges[0].Start, path, `invalid name %q: start with a letter, then up to 63 letters, digits, "_" or "-"`, name)
		return
	}
	if name == "rpc" {
		// Its methods would be rpc.*, which JSON-RPC 2.0 reserves.
		d.errorf(b.LabelRanges[0].Start, path, `the name "rpc" is reserved: JSON-RPC 2.0 keeps methods named rpc.* for itself; choose another name`)
		return
	}
	if first, dup := seen[name]; dup {
		d.errorf(pos, path, "duplicate plugin %q; the first is at %s", name, d.where(first))
		return
	}
	seen[name] = pos
	d.pos[path] = pos

	p := Plugin{Name: name, Config: map[string]any{}}
	fields := map[string]field{
		"command": func(v value) { v.str(&p.Command) },
		"args":    func(v value) { v.strings(&p.Args) },
		"env":     func(v value) { v.env(&p.Env) },
		"emit_channels": func(v value) {
			v.strings(&p.EmitChannels)
			for i, ch := range p.EmitChannels {
				if err := confine.CheckEntry(ch); err != nil {
					v.d.errorf(v.d.pos[fmt.Sprintf("%s[%d]", v.path, i)], fmt.Sprintf("%s[%d]", v.path, i), "%v", err)
				}
			}
		},
		"inherit_env": func(v value) { v.boolean(&p.InheritEnv) },
	}
	for _, a := range sortedAttrs(b.Body) {
		keyPath := path + "." + a.Name
		set, ok := fields[a.Name]
		if !ok {
			if a.Name == "config" {
				d.errorf(a.NameRange.Start, keyPath, "is a block, not a key: write config { ... } without \"=\"")
				continue
			}
			d.unknownKey(a.NameRange.Start, keyPath, "", a.Name, pluginKeys)
			continue
		}
		d.pos[keyPath] = a.NameRange.Start
		if v, ok := d.eval(a, keyPath); ok && !v.IsNull() {
			set(value{d: d, path: keyPath, attr: a, val: v})
		}
	}

	var configAt *hcl.Pos
	for _, nb := range b.Body.Blocks {
		keyPath := path + "." + nb.Type
		switch {
		case nb.Type != "config" && slices.Contains(pluginKeys, nb.Type):
			d.errorf(nb.TypeRange.Start, keyPath, "is a key, not a block: write %s = ...", nb.Type)
		case nb.Type != "config":
			d.errorf(nb.TypeRange.Start, keyPath, "unknown block%s", suggest(nb.Type, []string{"config"}, "; a plugin takes only a config { ... } block"))
		case configAt != nil:
			d.errorf(nb.TypeRange.Start, keyPath, "duplicate block; the first is at %s and there can be only one", d.where(*configAt))
		case len(nb.Labels) > 0:
			d.errorf(nb.LabelRanges[0].Start, keyPath, "takes no label: write config { ... }")
		default:
			configAt = &nb.TypeRange.Start
			d.pos[keyPath] = nb.TypeRange.Start
			p.Config = d.freeform(nb.Body, keyPath)
		}
	}

	p.Hash = pluginHash(p)
	if d.filename != "" {
		p.Dir, _ = filepath.Abs(filepath.Dir(d.filename)) // Abs fails only without a working directory
	}
	p.Pos = map[string]Position{"": d.position(pos)}
	for k, at := range d.pos {
		if rest, ok := strings.CutPrefix(k, path+"."); ok {
			p.Pos[rest] = d.position(at)
		}
	}
	c.Plugins = append(c.Plugins, p)
}

func (d *decoder) position(p hcl.Pos) Position {
	return Position{File: d.filename, Line: p.Line, Column: p.Column}
}

func (v value) env(dst *map[string]string) {
	m, ok := v.to(cty.Map(cty.String), "an object of strings, such as { LOG_LEVEL = \"debug\" }")
	if !ok {
		return
	}
	vals := m.AsValueMap()
	out := make(map[string]string, len(vals))
	for _, k := range slices.Sorted(maps.Keys(vals)) {
		e := vals[k]
		switch {
		case k == "" || strings.ContainsAny(k, "=\x00"):
			v.errorf("invalid variable name %q", k)
		case e.IsNull():
			v.errorf("%s must be a string, not null", k)
		default:
			out[k] = e.AsString()
		}
	}
	*dst = out
}

// freeform turns a plugin's config block into plain Go values. The shape is
// the one a JSON document would have, so that a plugin can decode it with
// mapstructure into its own struct:
//
//   - a key becomes a map entry with its value;
//   - a nested block `store { ... }` becomes a map entry holding a map, and a
//     block written several times becomes a list of maps;
//   - a labelled block `index "by_user" { ... }` nests under its labels:
//     {"index": {"by_user": {...}}}.
func (d *decoder) freeform(body *hclsyntax.Body, path string) map[string]any {
	out := map[string]any{}
	for _, a := range sortedAttrs(body) {
		keyPath := path + "." + a.Name
		d.pos[keyPath] = a.NameRange.Start
		if v, ok := d.eval(a, keyPath); ok {
			out[a.Name] = plain(v)
		}
	}

	type group struct {
		at     hcl.Pos
		labels int
		count  int
	}
	groups := map[string]*group{}
	for _, b := range body.Blocks {
		keyPath := path + "." + b.Type
		pos := b.TypeRange.Start
		if _, isKey := body.Attributes[b.Type]; isKey {
			d.errorf(pos, keyPath, "is both a key and a block; use one or the other")
			continue
		}
		g, ok := groups[b.Type]
		if !ok {
			g = &group{at: pos, labels: len(b.Labels)}
			groups[b.Type] = g
			d.pos[keyPath] = pos
		} else if g.labels != len(b.Labels) {
			d.errorf(pos, keyPath, "has %d labels but the block at %s has %d; write every %s block with the same number of labels",
				len(b.Labels), d.where(g.at), g.labels, b.Type)
			continue
		}
		inner := d.freeform(b.Body, keyPath)

		if len(b.Labels) == 0 {
			// One block is an object; a repeated block is a list of objects.
			switch g.count {
			case 0:
				out[b.Type] = inner
			case 1:
				out[b.Type] = []any{out[b.Type], inner}
			default:
				out[b.Type] = append(out[b.Type].([]any), inner)
			}
			g.count++
			continue
		}

		m, _ := out[b.Type].(map[string]any)
		if m == nil {
			m = map[string]any{}
			out[b.Type] = m
		}
		for i, label := range b.Labels {
			if i == len(b.Labels)-1 {
				if _, dup := m[label]; dup {
					d.errorf(pos, keyPath, "duplicate block %s %s", b.Type, quoteAll(b.Labels))
					break
				}
				m[label] = inner
				break
			}
			next, _ := m[label].(map[string]any)
			if next == nil {
				next = map[string]any{}
				m[label] = next
			}
			m = next
		}
		g.count++
	}
	return out
}

func quoteAll(labels []string) string {
	q := make([]string, len(labels))
	for i, l := range labels {
		q[i] = fmt.Sprintf("%q", l)
	}
	return strings.Join(q, " ")
}

// pluginHash fingerprints what running a plugin depends on: its command,
// args, env and config (not its name, which is how a reload pairs the old
// block with the new one). Two blocks that differ only in layout, comments,
// key order or an absent versus empty args/env hash the same.
func pluginHash(p Plugin) string {
	h := sha256.New()
	writeCanonical(h, p.Command)
	writeCanonical(h, toAny(p.Args))
	envAny := make(map[string]any, len(p.Env))
	for k, v := range p.Env {
		envAny[k] = v
	}
	writeCanonical(h, envAny)
	writeCanonical(h, p.Config)
	// Confinement changes restart the plugin too: the host applies it per
	// process. Written only when set, so that blocks without the keys keep
	// the hash they had before the keys existed.
	if len(p.EmitChannels) > 0 || p.InheritEnv {
		writeCanonical(h, toAny(p.EmitChannels))
		writeCanonical(h, p.InheritEnv)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// writeCanonical writes v in an unambiguous, order-independent encoding: a
// type tag, then a length or the value, with map keys sorted.
func writeCanonical(h hash.Hash, v any) {
	writeU64 := func(n uint64) {
		var buf [8]byte
		binary.BigEndian.PutUint64(buf[:], n)
		h.Write(buf[:])
	}
	writeLen := func(n int) { writeU64(uint64(n)) }
	writeStr := func(s string) {
		writeLen(len(s))
		h.Write([]byte(s))
	}
	switch v := v.(type) {
	case nil:
		h.Write([]byte{'n'})
	case string:
		h.Write([]byte{'s'})
		writeStr(v)
	case bool:
		if v {
			h.Write([]byte{'t'})
		} else {
			h.Write([]byte{'f'})
		}
	case int64:
		h.Write([]byte{'i'})
		writeU64(uint64(v))
	case float64:
		h.Write([]byte{'d'})
		writeU64(math.Float64bits(v))
	case []any:
		h.Write([]byte{'l'})
		writeLen(len(v))
		for _, e := range v {
			writeCanonical(h, e)
		}
	case map[string]any:
		h.Write([]byte{'m'})
		writeLen(len(v))
		for _, k := range slices.Sorted(maps.Keys(v)) {
			writeStr(k)
			writeCanonical(h, v[k])
		}
	default:
		// plain never produces anything else; hash a description rather
		// than fail if it one day does.
		fmt.Fprintf(h, "?%T:%v", v, v)
	}
}
