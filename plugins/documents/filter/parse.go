package filter

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strings"
)

// This file turns a filter (JSON) into Koncorde's standardized tree:
// keywords validated, sugar removed (in, ids, missing, bool), negations
// pushed down to the leaves with De Morgan, and and/or groups flattened
// and reordered the way Koncorde does it. The exact shape matters: the
// canonical form, the condition count limit and a few of Koncorde's
// rejections depend on it.

type nkind uint8

const (
	nLeaf nkind = iota
	nNot
	nAnd
	nOr
)

type node struct {
	k      nkind
	leaf   *cond
	kids   []*node
	isLeaf bool // for and/or: a group of leaves, one variable for the minimizer
}

func (n *node) isGroup() bool { return n.k == nAnd || n.k == nOr }

func flip(k nkind) nkind {
	if k == nAnd {
		return nOr
	}
	return nAnd
}

type parser struct {
	opts *Options
	// fast skips building clause paths, which only errors use: a filter
	// that fails is parsed again without it to name the clause.
	fast bool
	ns   *normScratch
}

func (p *parser) join(path, leaf string) string {
	if p.fast {
		return ""
	}
	return joinPath(path, leaf)
}

func (p *parser) index(path string, i int) string {
	if p.fast {
		return ""
	}
	return indexPath(path, i)
}

var keywords = map[string]bool{
	"and": true, "bool": true, "equals": true, "exists": true, "geoBoundingBox": true,
	"geoDistance": true, "geoDistanceRange": true, "geoPolygon": true, "ids": true, "in": true,
	"match": true, "missing": true, "not": true, "nothing": true, "or": true, "select": true,
	"range": true, "regexp": true,
}

// top standardizes a whole filter. A nil node means "match everything".
func (p *parser) top(v Value) (*node, error) {
	switch v.k {
	case kObj:
		if len(v.obj.keys) == 0 {
			return nil, nil
		}
	case kStr:
		if v.s != "" {
			return nil, perr("", "a filter must be an object")
		}
		return nil, nil
	case kArr:
		if len(v.arr) > 0 {
			return nil, perr("", "a filter must be an object")
		}
		return nil, nil
	default:
		// Koncorde reads Object.keys() of the filter: null, numbers and
		// booleans have none, so they mean "no filter".
		return nil, nil
	}
	return p.std(v, "")
}

func (p *parser) std(v Value, path string) (*node, error) {
	o := v.obj
	if len(o.keys) > 1 {
		return nil, perr(path, "a filter must have exactly one keyword, got %s", strings.Join(o.keys, ","))
	}
	kw := o.keys[0]
	arg := o.vals[0]
	if !keywords[kw] {
		return nil, perr(p.join(path, kw), "unknown keyword")
	}
	path = p.join(path, kw)
	switch kw {
	case "and", "or":
		return p.andOr(kw, arg, path)
	case "not":
		if err := isObject(arg, path, 1); err != nil {
			return nil, err
		}
		inner, err := p.std(arg, path)
		if err != nil {
			return nil, err
		}
		return p.negate(inner, path)
	case "bool":
		return p.boolean(arg, path)
	case "equals":
		return p.equals(arg, path)
	case "exists", "missing":
		return p.exists(kw, arg, path)
	case "ids", "in":
		return p.in(kw, arg, path)
	case "range":
		return p.rangeKw(arg, path)
	case "regexp":
		return p.regexpKw(arg, path)
	case "nothing":
		return p.leaf(&cond{op: opNothing}), nil
	case "match":
		if arg.k != kObj {
			return nil, perr(path, "must be an object")
		}
		if len(arg.obj.keys) == 0 {
			return nil, perr(path, "must be a non-empty object")
		}
		return p.leaf(&cond{op: opMatch, val: cloneValue(arg)}), nil
	case "select":
		return p.selectKw(arg, path)
	case "geoBoundingBox":
		return p.geoBoundingBox(arg, path)
	case "geoDistance":
		return p.geoDistance(arg, path)
	case "geoDistanceRange":
		return p.geoDistanceRange(arg, path)
	case "geoPolygon":
		return p.geoPolygon(arg, path)
	}
	return nil, perr(path, "unknown keyword")
}

func (p *parser) leaf(c *cond) *node { return p.node(node{k: nLeaf, leaf: c}) }

// node returns a copy of n in the normalization's scratch memory: the
// tree is dropped once the filter is normalized.
func (p *parser) node(n node) *node {
	ns := p.ns
	if ns.nodeN == len(ns.nodes) {
		ns.nodes, ns.nodeN = make([]node, 64), 0
	}
	x := &ns.nodes[ns.nodeN]
	ns.nodeN++
	*x = n
	return x
}

// kids returns a slice for n children, in scratch memory too; appending
// to it copies it.
func (p *parser) not(n *node) *node {
	k := p.kids(1)
	k[0] = n
	return p.node(node{k: nNot, kids: k})
}

func (p *parser) kids(n int) []*node {
	ns := p.ns
	if n > 64 {
		return make([]*node, n)
	}
	if ns.kidN+n > len(ns.kids) {
		ns.kids, ns.kidN = make([]*node, 256), 0
	}
	k := ns.kids[ns.kidN : ns.kidN+n : ns.kidN+n]
	ns.kidN += n
	return k
}

func isObject(v Value, path string, props int) error {
	if v.k != kObj {
		return perr(path, "must be an object")
	}
	if props > 0 && len(v.obj.keys) != props {
		s := "y"
		if props > 1 {
			s = "ies"
		}
		return perr(path, "expected an object with exactly %d propert%s, got %d", props, s, len(v.obj.keys))
	}
	return nil
}

func isString(v Value, path string) error {
	if v.k != kStr {
		return perr(path, "must be a string")
	}
	if v.s == "" {
		return perr(path, "cannot be empty")
	}
	return nil
}

func (p *parser) andOr(kw string, arg Value, path string) (*node, error) {
	if arg.k != kArr {
		return nil, perr(path, "must be an array")
	}
	if len(arg.arr) == 0 {
		return nil, perr(path, "cannot be empty")
	}
	for i, e := range arg.arr {
		if e.k != kObj || len(e.obj.keys) == 0 {
			return nil, perr(p.index(path, i), "%s can only contain non-empty objects", kw)
		}
	}
	kids := p.kids(len(arg.arr))
	for i, e := range arg.arr {
		n, err := p.std(e, p.index(path, i))
		if err != nil {
			return nil, err
		}
		kids[i] = n
	}
	op := nAnd
	if kw == "or" {
		op = nOr
	}
	return p.group(op, kids, path)
}

// group is Koncorde's _standardizeFilterArray on already standardized
// children: same-operator children are merged, groups come first, and a
// mix of leaves and groups gets its leaves wrapped in a group of their own.
func (p *parser) group(op nkind, kids []*node, path string) (*node, error) {
	isLeaf := true
	var leaves, andOrs []*node
	for _, sub := range kids {
		switch {
		case sub.k == op:
			leaves = append(leaves, sub.kids...)
			if !sub.isLeaf {
				isLeaf = false
			}
		case sub.isGroup():
			isLeaf = false
			andOrs = append(andOrs, sub)
		default:
			leaves = append(leaves, sub)
		}
	}
	if !isLeaf && len(leaves) > 1 {
		sub, err := p.restdGroup(op, leaves, path)
		if err != nil {
			return nil, err
		}
		return p.node(node{k: op, kids: append(andOrs, sub)}), nil
	}
	all := append(andOrs, leaves...)
	if len(all) == 1 {
		return all[0], nil
	}
	return p.node(node{k: op, kids: all, isLeaf: isLeaf}), nil
}

// restd standardizes an already standardized node again, which Koncorde
// does when it regroups leaves and when it negates a group. Its geo
// clauses do not survive that (Koncorde rejects them), so neither do ours.
func (p *parser) restd(n *node, path string) (*node, error) {
	switch n.k {
	case nLeaf:
		if n.leaf.op == opGeo {
			return nil, perr(path, "Koncorde cannot regroup or negate a group holding a geo clause (%s); move the geo clause out of the negated or mixed group", n.leaf.geoKeyword())
		}
		return n, nil
	case nNot:
		inner, err := p.restd(n.kids[0], path)
		if err != nil {
			return nil, err
		}
		return p.negate(inner, path)
	default:
		return p.restdGroup(n.k, n.kids, path)
	}
}

func (p *parser) restdGroup(op nkind, kids []*node, path string) (*node, error) {
	std := p.kids(len(kids))
	for i, k := range kids {
		n, err := p.restd(k, path)
		if err != nil {
			return nil, err
		}
		std[i] = n
	}
	return p.group(op, std, path)
}

// negate is Koncorde's "not" on a standardized node.
func (p *parser) negate(r *node, path string) (*node, error) {
	if r.isGroup() {
		isLeaf := true
		subs := p.kids(len(r.kids))
		for i, k := range r.kids {
			rk, err := p.restd(k, path)
			if err != nil {
				return nil, err
			}
			s, err := p.negate(rk, path)
			if err != nil {
				return nil, err
			}
			if s.isGroup() {
				isLeaf = false
			}
			subs[i] = s
		}
		return p.node(node{k: flip(r.k), kids: subs, isLeaf: isLeaf}), nil
	}
	if r.k == nNot {
		return r.kids[0], nil
	}
	return p.not(r), nil
}

func (p *parser) boolean(arg Value, path string) (*node, error) {
	if arg.k != kObj {
		return nil, perr(path, "must be an object")
	}
	if len(arg.obj.keys) == 0 {
		return nil, perr(path, "must be a non-empty object")
	}
	for _, k := range arg.obj.keys {
		switch k {
		case "must", "must_not", "should", "should_not":
		default:
			return nil, perr(path, "%q is not an allowed attribute (allowed: must,must_not,should,should_not)", k)
		}
	}
	// Rewritten as Koncorde does: and[...must, not(or(must_not)),
	// or(should), not(and(should_not))], then standardized as a whole.
	var and []Value
	obj := func(k string, v Value) Value {
		x := &object1{}
		x.k[0], x.v[0] = k, v
		x.o.keys, x.o.vals = x.k[:], x.v[:]
		return Value{k: kObj, obj: &x.o}
	}
	if v, _ := arg.obj.get("must"); v.truthy() {
		if v.k == kArr {
			and = append(and, v.arr...)
		} else {
			and = append(and, v)
		}
	}
	if v, _ := arg.obj.get("must_not"); v.truthy() {
		and = append(and, obj("not", obj("or", v)))
	}
	if v, _ := arg.obj.get("should"); v.truthy() {
		and = append(and, obj("or", v))
	}
	if v, _ := arg.obj.get("should_not"); v.truthy() {
		and = append(and, obj("not", obj("and", v)))
	}
	if and == nil {
		and = []Value{}
	}
	return p.andOr("and", Value{k: kArr, arr: and}, path)
}

func (p *parser) equals(arg Value, path string) (*node, error) {
	if err := isObject(arg, path, 1); err != nil {
		return nil, err
	}
	field, v := arg.obj.keys[0], arg.obj.vals[0]
	if !v.isScalar() {
		return nil, perr(p.join(path, field), "must either be a string, a number, a boolean, or null")
	}
	return p.leaf(&cond{op: opEquals, field: field, val: v}), nil
}

var arrayFieldRe = regexp.MustCompile(`^(.*?[^\\])\[(.*)\]$`)
var escapedBracketRe = regexp.MustCompile(`\\([\[\]])`)

// splitArrayField is arrayFieldRe.FindStringSubmatch: "name[value]" gives
// name and value. Without a newline (which "." does not match) it is the
// first "[" after a character other than a backslash, in a field that
// ends with "]"; with one, the regexp decides.
func splitArrayField(field string) (name, value string, ok bool) {
	if len(field) < 3 || field[len(field)-1] != ']' {
		return "", "", false
	}
	if strings.IndexByte(field, '\n') >= 0 {
		if m := arrayFieldRe.FindStringSubmatch(field); m != nil {
			return m[1], m[2], true
		}
		return "", "", false
	}
	for i := 1; i < len(field)-1; i++ {
		if field[i] == '[' && field[i-1] != '\\' {
			return field[:i], field[i+1 : len(field)-1], true
		}
	}
	return "", "", false
}

func (p *parser) exists(kw string, arg Value, path string) (*node, error) {
	var field string
	switch {
	case arg.k == kStr:
		if arg.s == "" {
			return nil, perr(path, "cannot test empty field name")
		}
		field = arg.s
	default:
		if arg.k != kObj {
			return nil, perr(path, "must be a string or an object")
		}
		if err := isObject(arg, path, 1); err != nil {
			return nil, err
		}
		f, ok := arg.obj.get("field")
		if !ok {
			return nil, perr(path, `the property "field" is missing`)
		}
		path = p.join(path, "field")
		if err := isString(f, path); err != nil {
			return nil, err
		}
		field = f.s
	}
	c := &cond{op: opExists, field: field}
	if name, val, ok := splitArrayField(field); ok {
		v, err := parseJSON([]byte(val))
		if err != nil {
			return nil, perr(path, "contains an invalid array value (%q)", val)
		}
		c.field, c.array, c.val = name, true, v
	}
	if strings.IndexByte(c.field, '\\') >= 0 {
		c.field = escapedBracketRe.ReplaceAllString(c.field, "$1")
	}
	n := p.leaf(c)
	if kw == "missing" {
		return p.not(n), nil
	}
	return n, nil
}

func (p *parser) in(kw string, arg Value, path string) (*node, error) {
	var field string
	var vals Value
	if kw == "ids" {
		if err := isObject(arg, path, 1); err != nil {
			return nil, err
		}
		v, ok := arg.obj.get("values")
		if !ok {
			return nil, perr(path, `the property "values" is missing`)
		}
		field, vals, path = "_id", v, p.join(path, "values")
	} else {
		if err := isObject(arg, path, 1); err != nil {
			return nil, err
		}
		field, vals = arg.obj.keys[0], arg.obj.vals[0]
		path = p.join(path, field)
	}
	if vals.k != kArr {
		return nil, perr(path, "must be an array")
	}
	if len(vals.arr) == 0 {
		return nil, perr(path, "cannot be empty")
	}
	kids := p.kids(len(vals.arr))
	for i, v := range vals.arr {
		if v.k != kStr {
			return nil, perr(p.index(path, i), `must hold only values of type "string"`)
		}
		kids[i] = p.leaf(&cond{op: opEquals, field: field, val: v})
	}
	return p.node(node{k: nOr, kids: kids, isLeaf: true}), nil
}

func (p *parser) rangeKw(arg Value, path string) (*node, error) {
	if err := isObject(arg, path, 1); err != nil {
		return nil, err
	}
	field, spec := arg.obj.keys[0], arg.obj.vals[0]
	fpath := p.join(path, field)
	if spec.k != kObj {
		return nil, perr(fpath, "must be an object")
	}
	if len(spec.obj.keys) == 0 {
		return nil, perr(fpath, "must be a non-empty object")
	}
	for _, k := range spec.obj.keys {
		switch k {
		case "gt", "gte", "lt", "lte":
		default:
			return nil, perr(fpath, "%q is not an allowed attribute (allowed: gt,gte,lt,lte)", k)
		}
	}
	c := &cond{op: opRange, field: field}
	high, low := math.Inf(1), math.Inf(-1)
	for i, k := range spec.obj.keys {
		v := spec.obj.vals[i]
		if v.k != kNum {
			return nil, perr(p.join(fpath, k), "must be a number")
		}
		switch k {
		case "lt", "lte":
			if !math.IsInf(high, 1) {
				return nil, perr(fpath, "only one upper boundary allowed")
			}
			high = v.n
		case "gt", "gte":
			if !math.IsInf(low, -1) {
				return nil, perr(fpath, "only one lower boundary allowed")
			}
			low = v.n
		}
		c.rng.set(k, v.n)
	}
	if high <= low {
		return nil, perr(fpath, "lower boundary must be below the upper one")
	}
	return p.leaf(c), nil
}

func (p *parser) regexpKw(arg Value, path string) (*node, error) {
	if err := isObject(arg, path, 1); err != nil {
		return nil, err
	}
	field, spec := arg.obj.keys[0], arg.obj.vals[0]
	fpath := p.join(path, field)
	c := &cond{op: opRegexp, field: field, x: &condExtra{}}
	switch spec.k {
	case kStr:
		c.x.pattern = spec.s
	case kObj:
		if len(spec.obj.keys) == 0 {
			return nil, perr(fpath, "must be a non-empty object")
		}
		v, ok := spec.obj.get("value")
		if !ok {
			return nil, perr(fpath, `the property "value" is missing`)
		}
		for _, k := range spec.obj.keys {
			if k != "flags" && k != "value" {
				return nil, perr(fpath, "%q is not an allowed attribute (allowed: flags,value)", k)
			}
		}
		if v.k != kStr {
			return nil, perr(p.join(fpath, "value"), "must be a string")
		}
		c.x.pattern = v.s
		if f, _ := spec.obj.get("flags"); f.truthy() {
			if err := isString(f, p.join(fpath, "flags")); err != nil {
				return nil, err
			}
			c.x.flags = f.s
		}
	default:
		return nil, perr(fpath, "must be either a string or a non-empty object")
	}
	re, err := compileRegexp(c.x.pattern, c.x.flags)
	if err != nil {
		return nil, &ParseError{Path: fpath, Msg: "cannot parse regexp /" + c.x.pattern + "/" + c.x.flags + ": " + err.Error(), Err: err}
	}
	c.x.re = re
	return p.leaf(c), nil
}

func (p *parser) selectKw(arg Value, path string) (*node, error) {
	if err := isObject(arg, path, 3); err != nil {
		return nil, err
	}
	f, _ := arg.obj.get("field")
	if err := isString(f, p.join(path, "field")); err != nil {
		return nil, err
	}
	idx, _ := arg.obj.get("index")
	if idx.k != kNum {
		return nil, perr(p.join(path, "index"), "must be an integer")
	}
	if math.Floor(idx.n) != idx.n {
		return nil, perr(p.join(path, "index"), "cannot have decimals, must be an integer")
	}
	q, _ := arg.obj.get("query")
	qpath := p.join(path, "query")
	if q.k != kObj {
		return nil, perr(qpath, "must be an object")
	}
	if len(q.obj.keys) == 0 {
		return nil, perr(qpath, "must be a non-empty object")
	}
	sub, err := compileProgram(q, p.opts, qpath, p.fast)
	if err != nil {
		return nil, err
	}
	return p.leaf(&cond{op: opSelect, field: f.s, x: &condExtra{index: idx.n, sub: sub}}), nil
}

// rangeSpec keeps the boundaries as written: Koncorde's semantics depend
// on which of gt/gte/lt/lte was used.
type rangeSpec struct {
	hasGT, hasGTE, hasLT, hasLTE bool
	gt, gte, lt, lte             float64
}

func (r *rangeSpec) set(k string, v float64) {
	switch k {
	case "gt":
		r.hasGT, r.gt = true, v
	case "gte":
		r.hasGTE, r.gte = true, v
	case "lt":
		r.hasLT, r.lt = true, v
	case "lte":
		r.hasLTE, r.lte = true, v
	}
}

// interval is the closed interval Koncorde stores for a range: strict
// bounds are moved by 1e-10 (in float64 arithmetic, so for large numbers
// the move vanishes and gt behaves like gte, as it does in Koncorde).
func (r *rangeSpec) interval() (lo, hi float64) {
	lo, hi = math.Inf(-1), math.Inf(1)
	if r.hasGT {
		lo = r.gt + 1e-10
	}
	if r.hasGTE {
		lo = r.gte
	}
	if r.hasLT {
		hi = r.lt - 1e-10
	}
	if r.hasLTE {
		hi = r.lte
	}
	return lo, hi
}

// notIntervals are the closed intervals Koncorde stores for a negated
// range; a side is absent (ok=false) when the range is open on that side.
func (r *rangeSpec) notIntervals() (belowHi float64, below bool, aboveLo float64, above bool) {
	switch {
	case r.hasGT:
		belowHi, below = r.gt, true
	case r.hasGTE:
		belowHi, below = r.gte-1e-10, true
	}
	switch {
	case r.hasLT:
		aboveLo, above = r.lt, true
	case r.hasLTE:
		aboveLo, above = r.lte+1e-10, true
	}
	return
}

// compileRegexp builds a Go (RE2) regexp with JavaScript flags. i, m and s
// map to RE2 flags; g, y, u, d and v change nothing for a stateless test.
// Any other flag, or one given twice, is refused, as a JavaScript RegExp
// (Koncorde's) refuses it.
func compileRegexp(pattern, flags string) (*regexp.Regexp, error) {
	var pre strings.Builder
	for i, f := range flags {
		if !strings.ContainsRune("dgimsuvy", f) {
			return nil, fmt.Errorf("invalid flag %q (flags are d, g, i, m, s, u, v and y)", f)
		}
		if strings.ContainsRune(flags[:i], f) {
			return nil, fmt.Errorf("flag %q given twice", f)
		}
		switch f {
		case 'i', 'm', 's':
			pre.WriteRune(f)
		}
	}
	src := translateJSRegexp(pattern)
	if pre.Len() > 0 {
		src = "(?" + pre.String() + ")" + src
	}
	return regexp.Compile(src)
}

// translateJSRegexp rewrites the JavaScript escapes RE2-in-node accepts
// but Go's syntax spells differently: \uXXXX, \u{...} and \0.
func translateJSRegexp(p string) string {
	if !strings.Contains(p, `\`) {
		return p
	}
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c != '\\' || i+1 >= len(p) {
			b.WriteByte(c)
			continue
		}
		n := p[i+1]
		switch {
		case n == 'u' && i+5 < len(p) && isHex(p[i+2:i+6]):
			b.WriteString(`\x{` + p[i+2:i+6] + `}`)
			i += 5
		case n == 'u' && i+2 < len(p) && p[i+2] == '{':
			b.WriteString(`\x`)
			i++
		case n == '0' && (i+2 >= len(p) || p[i+2] < '0' || p[i+2] > '9'):
			b.WriteString(`\x00`)
			i++
		default:
			b.WriteByte(c)
			b.WriteByte(n)
			i++
		}
	}
	return b.String()
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// Validate reports whether a filter is valid, without registering it.
func Validate(filter []byte) error {
	_, err := Normalize(filter, Options{})
	return err
}

var _ = json.Valid
