package filter

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"sort"
	"strings"
	"sync"
)

// Options bound what a filter may cost. The zero value means the defaults.
type Options struct {
	// MaxConditions limits the number of conditions of a filter, counted
	// as Koncorde counts them (its maxConditions, default 50). Negative
	// means no limit.
	MaxConditions int
	// MaxTerms limits how many and-terms a filter may expand to once in
	// disjunctive normal form (default 256). Koncorde has no such bound
	// and would spend exponential time on such filters instead.
	MaxTerms int
}

func (o Options) withDefaults() Options {
	if o.MaxConditions == 0 {
		o.MaxConditions = 50
	}
	if o.MaxTerms <= 0 {
		o.MaxTerms = 256
	}
	return o
}

// Normalized is a filter in canonical form: an OR of AND-terms of
// (possibly negated) conditions. Filters that mean the same thing in the
// same way share an ID.
type Normalized struct {
	ID    string
	key   filterKey // ID in binary
	terms [][]*cond
	// termKeys identify the terms: the first 16 bytes of the SHA-256 of
	// each term's canonical form followed by a zero byte (the ID of a
	// filter made of that term alone), as safe from collisions as IDs.
	termKeys []filterKey
}

// Normalize validates a filter (JSON) and returns its canonical form.
func Normalize(filter []byte, opts Options) (*Normalized, error) {
	return normalizeJSON(filter, opts, nil)
}

// normalizeJSON is Normalize; with dst, the result lives in dst (see
// normDst).
func normalizeJSON(filter []byte, opts Options, dst *normDst) (*Normalized, error) {
	// The decoded filter lives in reused memory until release: what the
	// normalized form keeps of it is copied (see cloneValue).
	v, p, err := parseFilterJSON(filter)
	defer putJSONParser(p)
	if err != nil {
		return nil, &ParseError{Msg: "invalid JSON: " + err.Error(), Err: err}
	}
	return normalizeValue(v, opts.withDefaults(), "", dst)
}

// normDst holds a Normalized that is used once and dropped, as Register
// does (the engine keeps its ID and conditions, not its lists): its lists
// are reused from one filter to the next.
type normDst struct {
	n       Normalized
	out     [][]*cond
	backing []*cond
	terms   [][]*cond
	keys    []filterKey
}

var normDsts = sync.Pool{New: func() any { return new(normDst) }}

func (d *normDst) release() {
	d.n = Normalized{}
	clear(d.out[:cap(d.out)])
	clear(d.backing[:cap(d.backing)])
	clear(d.terms[:cap(d.terms)])
	if cap(d.backing) <= 1024 && cap(d.out) <= 1024 {
		normDsts.Put(d)
	}
}

// NormalizeValue is Normalize for a filter already decoded by
// encoding/json (map[string]any and friends).
func NormalizeValue(filter any, opts Options) (*Normalized, error) {
	v, err := FromGo(filter)
	if err != nil {
		return nil, &ParseError{Msg: err.Error(), Err: err}
	}
	return normalizeValue(v, opts.withDefaults(), "", nil)
}

// String renders the canonical form, one term per line.
func (n *Normalized) String() string {
	var b strings.Builder
	for i, t := range n.terms {
		if i > 0 {
			b.WriteString("\n")
		}
		for j, c := range t {
			if j > 0 {
				b.WriteString(" AND ")
			}
			b.WriteString(c.identity())
		}
	}
	return b.String()
}

type literal struct {
	c   *cond
	not bool
}

func normalizeValue(v Value, opts Options, path string, dst *normDst) (*Normalized, error) {
	n, err := normalizeWith(v, opts, path, true, dst)
	if err != nil {
		// Again with clause paths, for the error message.
		return normalizeWith(v, opts, path, false, dst)
	}
	return n, nil
}

func normalizeWith(v Value, opts Options, path string, fast bool, dst *normDst) (*Normalized, error) {
	ns := getNormScratch(opts)
	defer putNormScratch(ns)
	p := &ns.p
	*p = parser{opts: &ns.opts, fast: fast, ns: ns}
	root, err := p.top(v)
	if err != nil {
		return nil, err
	}
	var terms [][]literal
	if root == nil {
		terms = [][]literal{{{c: &cond{op: opEverything}}}}
	} else {
		terms, err = canonical(root, opts, path, &ns.cx)
		if err != nil {
			return nil, err
		}
	}
	return finish(terms, path, ns, dst)
}

// canonical turns a standardized tree into Koncorde's canonical form.
func canonical(root *node, opts Options, path string, cx *canonCtx) ([][]literal, error) {
	// A lone condition, negated or not (half the filters), is its own
	// canonical form.
	if root.k == nLeaf || (root.k == nNot && root.kids[0].k == nLeaf) {
		l := literal{c: root.leaf}
		if root.k == nNot {
			l = literal{c: root.kids[0].leaf, not: true}
		}
		return removeImpossible([][]literal{{l}}), nil
	}
	// Variables: the leaves, and groups made only of leaves (Koncorde
	// treats those as one variable, expanded after minimization).
	cx.extract(root)
	vars := cx.vars
	count := 0
	for _, v := range vars {
		if v.isGroup() {
			count += len(v.kids)
		} else {
			count++
		}
	}
	if opts.MaxConditions > 0 && count > opts.MaxConditions {
		return nil, &ParseError{Path: path, Err: ErrTooComplex,
			Msg: fmt.Sprintf("filter too complex: %d conditions, at most %d allowed", count, opts.MaxConditions)}
	}
	if len(vars) > 64 {
		return nil, &ParseError{Path: path, Err: ErrTooComplex, Msg: fmt.Sprintf("filter too complex: %d conditions", count)}
	}

	// Each variable occurs once in the formula, so the formula is unate
	// and its minimal DNF (what Koncorde's Espresso step yields) is the
	// set of its prime implicants: distribute, then drop absorbed terms.
	masks, err := cx.dnf(root, false)
	if err != nil {
		return nil, tooManyTerms(opts, path)
	}
	neg := cx.neg[:]

	// Expand group variables: an and-like group adds its conditions to
	// the term, or-like groups multiply terms.
	var out [][]literal
	for _, m := range masks {
		var sub []literal
		var ors [][]literal
		for rest := m; rest != 0; rest &= rest - 1 {
			i := bits.TrailingZeros64(rest)
			v, n := vars[i], neg[i]
			if !v.isGroup() {
				sub = append(sub, literal{v.leaf, n})
				continue
			}
			conds := make([]literal, len(v.kids))
			for j, k := range v.kids {
				if k.k == nNot {
					conds[j] = literal{k.kids[0].leaf, !n}
				} else {
					conds[j] = literal{k.leaf, n}
				}
			}
			if (v.k == nAnd) != n {
				sub = append(sub, conds...)
			} else {
				ors = append(ors, conds)
			}
		}
		total := 1
		for _, o := range ors {
			total *= len(o)
			if total > opts.MaxTerms {
				return nil, tooManyTerms(opts, path)
			}
		}
		if len(ors) == 0 {
			out = append(out, sub)
		} else {
			pick := make([]int, len(ors))
			for {
				t := append([]literal(nil), sub...)
				for j, o := range ors {
					t = append(t, o[pick[j]])
				}
				out = append(out, t)
				j := 0
				for ; j < len(ors); j++ {
					pick[j]++
					if pick[j] < len(ors[j]) {
						break
					}
					pick[j] = 0
				}
				if j == len(ors) {
					break
				}
			}
		}
		if len(out) > opts.MaxTerms {
			return nil, tooManyTerms(opts, path)
		}
	}
	out = removeImpossible(out)
	for _, t := range out {
		slices.SortStableFunc(t, func(a, b literal) int { return strings.Compare(opNames[a.c.op], opNames[b.c.op]) })
	}
	return out, nil
}

// canonCtx holds the variables of a formula being put in DNF.
type canonCtx struct {
	opts   *Options
	vars   []*node
	varBuf [16]*node
	neg    [64]bool
	idx    int
	leaf   [64]uint64 // one-element DNFs of the variables
}

func (cx *canonCtx) extract(n *node) {
	switch {
	case n.k == nLeaf:
		cx.vars = append(cx.vars, n)
	case n.k == nNot:
		cx.extract(n.kids[0])
	case n.isLeaf:
		cx.vars = append(cx.vars, n)
	default:
		for _, k := range n.kids {
			cx.extract(k)
		}
	}
}

func (cx *canonCtx) dnf(n *node, negated bool) ([]uint64, error) {
	if n.k == nLeaf || (n.isGroup() && n.isLeaf) {
		i := cx.idx
		cx.idx++
		cx.neg[i] = negated
		cx.leaf[i] = 1 << uint(i)
		return cx.leaf[i : i+1 : i+1], nil // full: append copies it
	}
	if n.k == nNot {
		return cx.dnf(n.kids[0], !negated)
	}
	isAnd := (n.k == nAnd) != negated
	var acc []uint64
	for j, k := range n.kids {
		sub, err := cx.dnf(k, negated)
		if err != nil {
			return nil, err
		}
		if j == 0 {
			acc = sub
			continue
		}
		if isAnd {
			if len(acc)*len(sub) > cx.opts.MaxTerms*4 {
				return nil, errTooManyTerms
			}
			prod := make([]uint64, 0, len(acc)*len(sub))
			for _, a := range acc {
				for _, b := range sub {
					prod = append(prod, a|b)
				}
			}
			acc = absorb(prod)
		} else {
			acc = absorb(append(acc, sub...))
		}
		if len(acc) > cx.opts.MaxTerms {
			return nil, errTooManyTerms
		}
	}
	return acc, nil
}

// errTooManyTerms stops the expansion; tooManyTerms is what callers get.
var errTooManyTerms = errors.New("too many terms")

func tooManyTerms(opts Options, path string) error {
	return &ParseError{Path: path, Err: ErrTooComplex,
		Msg: fmt.Sprintf("filter too complex: expands to more than %d terms", opts.MaxTerms)}
}

func absorb(ts []uint64) []uint64 {
	sort.Slice(ts, func(i, j int) bool {
		ci, cj := bits.OnesCount64(ts[i]), bits.OnesCount64(ts[j])
		if ci != cj {
			return ci < cj
		}
		return ts[i] < ts[j]
	})
	out := ts[:0:0]
	for _, t := range ts {
		keep := true
		for _, u := range out {
			if u&t == u {
				keep = false
				break
			}
		}
		if keep {
			out = append(out, t)
		}
	}
	return out
}

// removeImpossible drops the terms Koncorde considers unsatisfiable, with
// its exact rules, including the ones that are not quite right (a "not
// exists" on tags["x"] and an "exists" on tags conflict for it: both are
// keyed by the path "tags"). Object.prototype member names behave as
// already-set keys, as they do in the JavaScript objects it uses.
func removeImpossible(terms [][]literal) [][]literal {
	out := terms[:0:0]
	dropped := false // until a term is dropped, out is terms
	for i, t := range terms {
		if !mayConflict(t) {
			if dropped {
				out = append(out, t)
			}
			continue
		}
		equals := map[string]Value{}
		exists := map[string]bool{}
		notequals := map[string]map[string]bool{}
		notexists := map[string]bool{}
		ranges := map[string]*rangeSpec{}
		proto := func(f string) bool { _, ok := protoNames[f]; return ok }
		eqGet := func(f string) (Value, bool, bool) { // value, defined, isFunction
			if v, ok := equals[f]; ok {
				return v, true, false
			}
			if proto(f) {
				return Value{}, true, true
			}
			return Value{}, false, false
		}
		has := func(m map[string]bool, f string) bool { return m[f] || proto(f) }
		hasRange := func(f string) bool { _, ok := ranges[f]; return ok || proto(f) }
		neHas := func(f, v string) bool {
			if m := notequals[f]; m != nil && (m[v] || proto(v)) {
				return true
			}
			return false
		}
		conflict := func(v Value, r *rangeSpec) bool {
			if r == nil {
				return false
			}
			n := jsToNumber(v)
			return (r.hasLT && n >= r.lt) || (r.hasLTE && n > r.lte) || (r.hasGT && n <= r.gt) || (r.hasGTE && n < r.gte)
		}
		skip := false
		for _, l := range t {
			c, f := l.c, l.c.field
			switch {
			case c.op == opEquals && !l.not:
				if prev, def, fn := eqGet(f); def && (fn || !strictEqual(prev, c.val)) {
					skip = true
				}
				if skip {
					break
				}
				equals[f] = c.val
				if has(notexists, f) || neHas(f, jsString(c.val)) || conflict(c.val, ranges[f]) {
					skip = true
				}
			case c.op == opEquals && l.not:
				if notequals[f] == nil {
					notequals[f] = map[string]bool{}
				}
				notequals[f][jsString(c.val)] = true
				if prev, def, fn := eqGet(f); def && !fn && strictEqual(prev, c.val) {
					skip = true
				}
			case c.op == opExists && !l.not:
				exists[f] = true
				if has(notexists, f) {
					skip = true
				}
			case c.op == opExists && l.not:
				notexists[f] = true
				if _, def, _ := eqGet(f); def || has(exists, f) || hasRange(f) {
					skip = true
				}
			case c.op == opRange && !l.not:
				r := c.rng
				ranges[f] = &r
				if has(notexists, f) {
					skip = true
				} else if prev, def, fn := eqGet(f); def && !fn && conflict(prev, &r) {
					skip = true
				}
			}
			if skip {
				break
			}
		}
		if !skip {
			if dropped {
				out = append(out, t)
			}
		} else if !dropped {
			dropped = true
			out = append(out, terms[:i]...)
		}
	}
	if !dropped {
		out = terms
	}
	if len(out) == 0 {
		return [][]literal{{{c: &cond{op: opNothing}}}}
	}
	return out
}

// mayConflict is a fast pre-check for removeImpossible: terms whose
// equals/exists/range conditions are on distinct ordinary fields cannot
// be pruned.
func mayConflict(t []literal) bool {
	var seen [8]string
	n := 0
	for _, l := range t {
		switch l.c.op {
		case opEquals, opExists, opRange:
		default:
			continue
		}
		f := l.c.field
		if isProtoName(f) || n == len(seen) {
			return true
		}
		for _, s := range seen[:n] {
			if s == f {
				return true
			}
		}
		seen[n] = f
		n++
	}
	return false
}

// normScratch is the reusable working memory of one normalization.
type normScratch struct {
	opts   Options
	p      parser
	cx     canonCtx
	buf    []byte    // every term key, one after the other
	keys   []termKey // in buf
	order  []int
	all    []byte // sorted term keys, each followed by a zero byte
	bounds []termKey
	nodes  []node // chunk the parser's nodes are taken from
	nodeN  int
	kids   []*node
	kidN   int
}

type termKey struct{ start, end int }

var normScratches = sync.Pool{New: func() any { return new(normScratch) }}

func getNormScratch(opts Options) *normScratch {
	ns := normScratches.Get().(*normScratch)
	ns.opts = opts
	ns.cx = canonCtx{opts: &ns.opts}
	ns.cx.vars = ns.cx.varBuf[:0]
	return ns
}

func putNormScratch(ns *normScratch) {
	clear(ns.nodes[:ns.nodeN])
	clear(ns.kids[:ns.kidN])
	ns.nodeN, ns.kidN = 0, 0
	clear(ns.cx.varBuf[:])
	ns.cx.vars = nil
	ns.cx.opts = nil
	ns.p = parser{}
	if cap(ns.buf) <= 1<<16 && cap(ns.all) <= 1<<16 {
		normScratches.Put(ns)
	}
}

// normalized1 is a one-term Normalized in a single allocation.
type normalized1 struct {
	n Normalized
	t [1][]*cond
	k [1]filterKey
}

// finish applies Koncorde's storage-time rejections, deduplicates and
// computes the identity.
func finish(terms [][]literal, path string, ns *normScratch, dst *normDst) (*Normalized, error) {
	buf := ns.buf[:0]
	keys := ns.keys[:0]
	total := 0
	for _, t := range terms {
		total += len(t)
	}
	var out [][]*cond
	var backing []*cond // the terms' conditions, one after the other
	if dst != nil && cap(dst.backing) >= total && cap(dst.out) >= len(terms) {
		out, backing = dst.out[:0], dst.backing[:0]
	} else {
		out, backing = make([][]*cond, 0, len(terms)), make([]*cond, 0, total)
	}
	if dst != nil {
		dst.out, dst.backing = out, backing
	}
	for _, t := range terms {
		conds := backing[len(backing) : len(backing) : len(backing)+len(t)]
	lits:
		for _, l := range t {
			if l.not && (l.c.op == opNothing || l.c.op == opSelect) {
				// Koncorde has no storage for these and throws.
				return nil, perr(path, "%s cannot be negated", opNames[l.c.op])
			}
			c := l.c.withNot(l.not)
			k := c.identity()
			for _, o := range conds {
				if o.key == k {
					continue lits
				}
			}
			conds = append(conds, c)
		}
		slices.SortFunc(conds, func(a, b *cond) int { return strings.Compare(a.key, b.key) })
		start := len(buf)
		for _, c := range conds {
			buf = append(buf, c.key...)
			buf = append(buf, '\n')
		}
		k := buf[start:]
		dup := false
		for _, o := range keys {
			if string(buf[o.start:o.end]) == string(k) {
				dup = true
				break
			}
		}
		if dup {
			buf = buf[:start]
			continue
		}
		keys = append(keys, termKey{start, len(buf)})
		out = append(out, conds)
		backing = backing[:len(backing)+len(conds)]
	}
	ns.buf, ns.keys = buf, keys
	order := ns.order[:0]
	for i := range out {
		order = append(order, i)
	}
	ns.order = order
	if len(order) > 1 {
		slices.SortFunc(order, func(a, b int) int {
			return bytes.Compare(buf[keys[a].start:keys[a].end], buf[keys[b].start:keys[b].end])
		})
	}
	// The ID hashes the sorted term keys, each followed by a zero byte.
	all := ns.all[:0]
	bounds := ns.bounds[:0]
	for _, o := range order {
		start := len(all)
		all = append(all, buf[keys[o].start:keys[o].end]...)
		bounds = append(bounds, termKey{start, len(all)})
		all = append(all, 0)
	}
	ns.all, ns.bounds = all, bounds
	sum := sha256.Sum256(all)
	var hexID [32]byte
	hex.Encode(hexID[:], sum[:16])
	var n *Normalized
	if dst != nil {
		n = &dst.n
		if cap(dst.terms) < len(out) {
			dst.terms, dst.keys = make([][]*cond, len(out)), make([]filterKey, len(out))
		}
		n.terms, n.termKeys = dst.terms[:len(out)], dst.keys[:len(out)]
	} else if len(out) == 1 {
		x := &normalized1{}
		n = &x.n
		n.terms, n.termKeys = x.t[:], x.k[:]
	} else {
		n = &Normalized{terms: make([][]*cond, len(out)), termKeys: make([]filterKey, len(out))}
	}
	n.ID = string(hexID[:32])
	copy(n.key[:], sum[:])
	for i, o := range order {
		n.terms[i] = out[o]
		if len(out) == 1 {
			copy(n.termKeys[i][:], sum[:])
		} else {
			ts := sha256.Sum256(all[bounds[i].start : bounds[i].end+1])
			copy(n.termKeys[i][:], ts[:])
		}
	}
	return n, nil
}

// program evaluates a normalized filter directly; select's sub-queries
// use it.
type program struct {
	id    string
	terms [][]*cond
	geo   [2]map[string]int // field -> position, for positive and negated geo conditions
}

func compileProgram(v Value, opts *Options, path string, fast bool) (*program, error) {
	n, err := normalizeWith(v, *opts, path, fast, nil)
	if err != nil {
		return nil, err
	}
	pr := &program{id: n.ID, terms: n.terms}
	for _, t := range n.terms {
		for _, c := range t {
			if c.op != opGeo {
				continue
			}
			i := 0
			if c.not {
				i = 1
			}
			if pr.geo[i] == nil {
				pr.geo[i] = map[string]int{}
			}
			if _, ok := pr.geo[i][c.field]; !ok {
				pr.geo[i][c.field] = len(pr.geo[i])
			}
		}
	}
	return pr, nil
}

type programGate struct {
	p     *program
	d     *doc
	abort [2]int
	done  [2]bool
}

func (g *programGate) geoAllowed(field string, negated bool) bool {
	i := 0
	if negated {
		i = 1
	}
	if !g.done[i] {
		g.done[i] = true
		g.abort[i] = 1 << 30
		for f, pos := range g.p.geo[i] {
			v := g.d.get(f)
			if v.truthy() {
				if _, ok := convertGeopoint(v); !ok && pos < g.abort[i] {
					g.abort[i] = pos
				}
			}
		}
	}
	return g.p.geo[i][field] < g.abort[i]
}

// matchValue tests {value: v}, flattened, as Koncorde's select does.
func (p *program) matchValue(v Value) bool {
	d := &doc{m: map[string]Value{}}
	d.flatten(Value{k: kObj, obj: &object{keys: []string{"value"}, vals: []Value{v}}})
	g := &programGate{p: p, d: d}
	for _, t := range p.terms {
		ok := true
		for _, c := range t {
			if !c.eval(d, g) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}
