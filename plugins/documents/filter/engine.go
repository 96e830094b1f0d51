package filter

import (
	"encoding/hex"
	"math"
	"regexp/syntax"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
)

// Engine holds registered filters and tests documents against all of
// them. One Engine serves one index/collection. All methods are safe for
// concurrent use; Match runs in parallel with other Match calls.
//
// A filter is stored as its terms (and-terms of conditions); identical
// terms and identical conditions are shared between filters. Each term is
// reached through one "anchor" condition, its most selective positive
// one, found with an index (hash maps for equals and array values,
// interval trees for ranges, literal prefixes for regexps, a grid for geo
// shapes); the term's other conditions are then checked directly, each
// at most once per document. Terms made only of negations are checked
// for every document, as they match almost every document anyway.
type Engine struct {
	opts Options

	mu      sync.RWMutex
	filters map[filterKey]*filterEntry // by the binary form of the ID: no string to compare
	terms   map[filterKey]*termEntry   // by a hash of the term's canonical form
	conds   map[string]*condEntry

	condList   []*condEntry // by id; nil for free ids
	condFree   []int32
	termList   []*termEntry
	termFree   []int32
	filterList []*filterEntry
	filterFree []int32

	fields  map[string]*fieldIndex // anchored conditions, by field
	scan    []int32                // anchored conditions tested on every document (match, select, everything)
	negOnly map[int32]struct{}     // terms without a positive condition

	// Geo conditions of each field are tested in the order Koncorde
	// registered their field ([0] positive, [1] negated): see geoGate.
	geoSeq   [2]map[string]int64
	geoCount [2]map[string]int
	nextSeq  int64

	scratch sync.Pool
}

// filterKey is a filter ID in binary: the ID is its hex encoding.
type filterKey [16]byte

// keyOfID decodes a filter ID; ok is false if it is not one.
func keyOfID(id string) (k filterKey, ok bool) {
	if len(id) != 2*len(k) {
		return k, false
	}
	_, err := hex.Decode(k[:], []byte(id))
	return k, err == nil && hex.EncodeToString(k[:]) == id
}

type filterEntry struct {
	idx   int32
	id    string
	terms []int32
	term1 [1]int32 // terms of one-term filters, without another allocation
}

type termEntry struct {
	idx     int32
	key     filterKey
	anchor  int32 // -1: none (negations only); -2: never matches
	rest    []int32
	filters []int32
	filter1 [1]int32 // filters while there is one, without another allocation
}

type condEntry struct {
	idx      int32
	c        *cond
	refs     int     // terms using it
	anchored []int32 // terms anchored on it
}

// New returns an empty engine.
func New(opts Options) *Engine {
	e := &Engine{
		opts:    opts.withDefaults(),
		filters: map[filterKey]*filterEntry{},
		terms:   map[filterKey]*termEntry{},
		conds:   map[string]*condEntry{},
		fields:  map[string]*fieldIndex{},
		negOnly: map[int32]struct{}{},
	}
	for i := range e.geoSeq {
		e.geoSeq[i] = map[string]int64{}
		e.geoCount[i] = map[string]int{}
	}
	return e
}

// Normalize validates a filter with the engine's options.
func (e *Engine) Normalize(filter []byte) (*Normalized, error) {
	return Normalize(filter, e.opts)
}

// Register normalizes and stores a filter (JSON) and returns its ID.
// Registering a filter that is already there (or one with the same
// normalized form) returns the same ID and shares it; as in Koncorde there
// is no reference count: one Remove unregisters it.
func (e *Engine) Register(filter []byte) (string, error) {
	dst := normDsts.Get().(*normDst)
	defer dst.release()
	n, err := normalizeJSON(filter, e.opts, dst)
	if err != nil {
		return "", err
	}
	return e.Add(n), nil
}

// RegisterValue is Register for a filter decoded by encoding/json.
func (e *Engine) RegisterValue(filter any) (string, error) {
	n, err := NormalizeValue(filter, e.opts)
	if err != nil {
		return "", err
	}
	return e.Add(n), nil
}

// Has reports whether a filter ID is registered.
func (e *Engine) Has(id string) bool {
	e.mu.RLock()
	defer e.mu.RUnlock()
	k, valid := keyOfID(id)
	_, ok := e.filters[k]
	ok = ok && valid
	return ok
}

// Len returns the number of registered filters.
func (e *Engine) Len() int {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return len(e.filters)
}

// RegisterMany registers a batch of filters (JSON) with the same result
// as calling Register on each in order, for less: filters are normalized
// a few hundred at a time, in parallel on up to GOMAXPROCS goroutines
// (the next group while the previous one is stored), and stored in order
// under one write lock per group, so matches are not held up by
// normalization. ids[i] is the ID of filters[i], or "" when errs[i] tells
// why it was rejected; errs is nil when every filter was accepted.
func (e *Engine) RegisterMany(filters [][]byte) (ids []string, errs []error) {
	const chunk = 256 // filters per goroutine
	workers := max(1, min(runtime.GOMAXPROCS(0), (len(filters)+chunk-1)/chunk))
	group := min(len(filters), workers*chunk)
	normalize := func(slots []normSlot, from int) {
		for i := range slots {
			s := &slots[i]
			s.dst = normDsts.Get().(*normDst)
			s.n, s.err = normalizeJSON(filters[from+i], e.opts, s.dst)
		}
	}
	// start normalizes filters[from:from+len(slots)] into slots, in the
	// background when there are several workers.
	start := func(slots []normSlot, from int) *sync.WaitGroup {
		var wg sync.WaitGroup
		if workers == 1 {
			normalize(slots, from)
			return &wg
		}
		for lo := 0; lo < len(slots); lo += chunk {
			part := slots[lo:min(lo+chunk, len(slots))]
			wg.Go(func() { normalize(part, from+lo) })
		}
		return &wg
	}
	ids = make([]string, len(filters))
	bufs := [2][]normSlot{make([]normSlot, group)}
	if workers > 1 && len(filters) > group {
		bufs[1] = make([]normSlot, group)
	}
	cur := bufs[0][:min(group, len(filters))]
	wg := start(cur, 0)
	for base, k := 0, 0; base < len(filters); k++ {
		wg.Wait()
		next := base + len(cur)
		var nextSlots []normSlot
		if next < len(filters) {
			nextSlots = bufs[(k+1)%2]
			if nextSlots == nil { // one worker: one buffer, refilled after use
				nextSlots = bufs[0]
			}
			nextSlots = nextSlots[:min(group, len(filters)-next)]
			if workers > 1 {
				wg = start(nextSlots, next) // overlaps with storing cur
			}
		}
		e.mu.Lock()
		for i := range cur {
			if s := &cur[i]; s.err == nil {
				ids[base+i] = e.add(s.n)
			}
		}
		e.mu.Unlock()
		for i := range cur {
			s := &cur[i]
			if s.err != nil {
				if errs == nil {
					errs = make([]error, len(filters))
				}
				errs[base+i] = s.err
			}
			s.dst.release()
			*s = normSlot{}
		}
		if nextSlots != nil && workers == 1 {
			wg = start(nextSlots, next)
		}
		base, cur = next, nextSlots
	}
	return ids, errs
}

// normSlot is one filter of a RegisterMany group.
type normSlot struct {
	n   *Normalized
	dst *normDst
	err error
}

// Add stores a normalized filter and returns its ID.
func (e *Engine) Add(n *Normalized) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.add(n)
}

// add is Add with the write lock held.
func (e *Engine) add(n *Normalized) string {
	if _, ok := e.filters[n.key]; ok {
		return n.ID
	}
	f := &filterEntry{id: n.ID}
	f.terms = f.term1[:0]
	if len(e.filterFree) > 0 {
		f.idx = e.filterFree[len(e.filterFree)-1]
		e.filterFree = e.filterFree[:len(e.filterFree)-1]
		e.filterList[f.idx] = f
	} else {
		f.idx = int32(len(e.filterList))
		e.filterList = append(e.filterList, f)
	}
	e.filters[n.key] = f
	for i, t := range n.terms {
		f.terms = append(f.terms, e.addTerm(t, n.termKeys[i], f.idx))
	}
	return n.ID
}

func (e *Engine) addTerm(t []*cond, key filterKey, filter int32) int32 {
	if te, ok := e.terms[key]; ok {
		te.filters = append(te.filters, filter)
		return te.idx
	}
	te := &termEntry{key: key, anchor: -1}
	te.filter1[0] = filter
	te.filters = te.filter1[:]
	if len(e.termFree) > 0 {
		te.idx = e.termFree[len(e.termFree)-1]
		e.termFree = e.termFree[:len(e.termFree)-1]
		e.termList[te.idx] = te
	} else {
		te.idx = int32(len(e.termList))
		e.termList = append(e.termList, te)
	}
	e.terms[key] = te
	best, bestRank := -1, 1<<30
	ids := make([]int32, len(t))
	for i, c := range t {
		ce := e.addCond(c)
		ids[i] = ce.idx
		if c.op == opNothing && !c.not {
			te.anchor = -2
		}
		if r := anchorRank(c); r < bestRank {
			best, bestRank = i, r
		}
	}
	if te.anchor == -2 {
		te.rest = ids
		return te.idx
	}
	if best < 0 {
		te.rest = ids
		e.negOnly[te.idx] = struct{}{}
		return te.idx
	}
	te.anchor = ids[best]
	te.rest = append(append([]int32{}, ids[:best]...), ids[best+1:]...)
	ce := e.condList[te.anchor]
	ce.anchored = append(ce.anchored, te.idx)
	if len(ce.anchored) == 1 {
		e.index(ce)
	}
	return te.idx
}

// anchorRank orders positive conditions by how few documents they are
// expected to let through; negated ones cannot anchor a term.
func anchorRank(c *cond) int {
	if c.not {
		return 1 << 30
	}
	switch c.op {
	case opEquals:
		return 0
	case opExists:
		if c.array {
			return 1
		}
		return 5
	case opRegexp:
		return 2
	case opGeo:
		return 3
	case opRange:
		return 4
	case opSelect:
		return 6
	case opMatch:
		return 7
	case opEverything:
		return 8
	}
	return 1 << 30
}

func (e *Engine) addCond(c *cond) *condEntry {
	k := c.identity()
	if ce, ok := e.conds[k]; ok {
		ce.refs++
		return ce
	}
	ce := &condEntry{c: c, refs: 1}
	if len(e.condFree) > 0 {
		ce.idx = e.condFree[len(e.condFree)-1]
		e.condFree = e.condFree[:len(e.condFree)-1]
		e.condList[ce.idx] = ce
	} else {
		ce.idx = int32(len(e.condList))
		e.condList = append(e.condList, ce)
	}
	e.conds[k] = ce
	if c.op == opGeo {
		i := 0
		if c.not {
			i = 1
		}
		if e.geoCount[i][c.field] == 0 {
			e.nextSeq++
			e.geoSeq[i][c.field] = e.nextSeq
		}
		e.geoCount[i][c.field]++
	}
	return ce
}

// Remove unregisters a filter and frees the terms and conditions that
// only it used. It reports whether the filter was registered.
func (e *Engine) Remove(id string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	k, valid := keyOfID(id)
	f, ok := e.filters[k]
	ok = ok && valid
	if !ok {
		return false
	}
	delete(e.filters, k)
	e.filterList[f.idx] = nil
	e.filterFree = append(e.filterFree, f.idx)
	for _, ti := range f.terms {
		te := e.termList[ti]
		te.filters = removeOne(te.filters, f.idx)
		if len(te.filters) > 0 {
			continue
		}
		delete(e.terms, te.key)
		delete(e.negOnly, te.idx)
		e.termList[ti] = nil
		e.termFree = append(e.termFree, ti)
		all := te.rest
		if te.anchor >= 0 {
			ce := e.condList[te.anchor]
			ce.anchored = removeOne(ce.anchored, ti)
			if len(ce.anchored) == 0 {
				e.unindex(ce)
			}
			all = append([]int32{te.anchor}, te.rest...)
		}
		for _, ci := range all {
			e.releaseCond(ci)
		}
	}
	return true
}

func (e *Engine) releaseCond(ci int32) {
	ce := e.condList[ci]
	ce.refs--
	if ce.refs > 0 {
		return
	}
	c := ce.c
	delete(e.conds, c.identity())
	e.condList[ci] = nil
	e.condFree = append(e.condFree, ci)
	if c.op == opGeo {
		i := 0
		if c.not {
			i = 1
		}
		e.geoCount[i][c.field]--
		if e.geoCount[i][c.field] == 0 {
			delete(e.geoCount[i], c.field)
			delete(e.geoSeq[i], c.field)
		}
	}
}

func removeOne(s []int32, x int32) []int32 {
	for i, v := range s {
		if v == x {
			s[i] = s[len(s)-1]
			return s[:len(s)-1]
		}
	}
	return s
}

// --- indexes ---

type fieldIndex struct {
	equals    map[scalarKey][]int32
	exists    []int32
	arrValues map[scalarKey][]int32
	ranges    *rangeIndex
	regexps   *regexIndex
	geo       *geoIndex
}

func (fi *fieldIndex) empty() bool {
	return len(fi.equals) == 0 && len(fi.exists) == 0 && len(fi.arrValues) == 0 &&
		(fi.ranges == nil || len(fi.ranges.items) == 0) &&
		(fi.regexps == nil || fi.regexps.n == 0) && (fi.geo == nil || len(fi.geo.all) == 0)
}

func (e *Engine) field(name string) *fieldIndex {
	fi := e.fields[name]
	if fi == nil {
		fi = &fieldIndex{}
		e.fields[name] = fi
	}
	return fi
}

func (e *Engine) index(ce *condEntry) {
	c := ce.c
	switch c.op {
	case opEquals:
		fi := e.field(c.field)
		if fi.equals == nil {
			fi.equals = map[scalarKey][]int32{}
		}
		k := keyOf(c.val)
		fi.equals[k] = append(fi.equals[k], ce.idx)
	case opExists:
		fi := e.field(c.field)
		if !c.array {
			fi.exists = append(fi.exists, ce.idx)
			return
		}
		if !c.val.isScalar() {
			return // an object or array value is never found in a document
		}
		if fi.arrValues == nil {
			fi.arrValues = map[scalarKey][]int32{}
		}
		k := keyOf(c.val)
		fi.arrValues[k] = append(fi.arrValues[k], ce.idx)
	case opRange:
		fi := e.field(c.field)
		if fi.ranges == nil {
			fi.ranges = &rangeIndex{}
		}
		lo, hi := c.rng.interval()
		fi.ranges.add(lo, hi, ce.idx)
	case opRegexp:
		fi := e.field(c.field)
		if fi.regexps == nil {
			fi.regexps = &regexIndex{}
		}
		fi.regexps.add(c, ce.idx)
	case opGeo:
		fi := e.field(c.field)
		if fi.geo == nil {
			fi.geo = &geoIndex{}
		}
		fi.geo.add(c.shape, ce.idx)
	default:
		e.scan = append(e.scan, ce.idx)
	}
}

func (e *Engine) unindex(ce *condEntry) {
	c := ce.c
	fi := e.fields[c.field]
	switch c.op {
	case opEquals:
		k := keyOf(c.val)
		if l := removeOne(fi.equals[k], ce.idx); len(l) > 0 {
			fi.equals[k] = l
		} else {
			delete(fi.equals, k)
		}
	case opExists:
		if !c.array {
			fi.exists = removeOne(fi.exists, ce.idx)
		} else if c.val.isScalar() {
			k := keyOf(c.val)
			if l := removeOne(fi.arrValues[k], ce.idx); len(l) > 0 {
				fi.arrValues[k] = l
			} else {
				delete(fi.arrValues, k)
			}
		}
	case opRange:
		fi.ranges.remove(ce.idx)
	case opRegexp:
		fi.regexps.remove(c, ce.idx)
	case opGeo:
		fi.geo.remove(c.shape, ce.idx)
	default:
		e.scan = removeOne(e.scan, ce.idx)
		return
	}
	if fi.empty() {
		delete(e.fields, c.field)
	}
}

// --- matching ---

type scratch struct {
	d         doc
	gen       uint32
	condGen   []uint32
	condVal   []bool
	termGen   []uint32
	filterGen []uint32
	seen      map[scalarKey]struct{}
	// geo gate
	geoDone  [2]bool
	geoAbort [2]int64
	e        *Engine
	out      []string
}

func (e *Engine) getScratch() *scratch {
	s, _ := e.scratch.Get().(*scratch)
	if s == nil {
		s = &scratch{d: doc{m: map[string]Value{}}, seen: map[scalarKey]struct{}{}}
	}
	s.e = e
	s.gen++
	if s.gen == 0 { // wrapped: stale stamps could collide
		clear(s.condGen)
		clear(s.termGen)
		clear(s.filterGen)
		s.gen = 1
	}
	grow := func(x []uint32, n int) []uint32 {
		if len(x) < n {
			x = append(x, make([]uint32, n-len(x))...)
		}
		return x
	}
	s.condGen = grow(s.condGen, len(e.condList))
	if len(s.condVal) < len(e.condList) {
		s.condVal = append(s.condVal, make([]bool, len(e.condList)-len(s.condVal))...)
	}
	s.termGen = grow(s.termGen, len(e.termList))
	s.filterGen = grow(s.filterGen, len(e.filterList))
	s.geoDone = [2]bool{}
	s.d.reset()
	s.out = nil
	return s
}

func (s *scratch) geoAllowed(field string, negated bool) bool {
	i := 0
	if negated {
		i = 1
	}
	if !s.geoDone[i] {
		s.geoDone[i] = true
		s.geoAbort[i] = math.MaxInt64
		for f, seq := range s.e.geoSeq[i] {
			if seq >= s.geoAbort[i] {
				continue
			}
			v := s.d.get(f)
			if v.truthy() {
				if _, ok := convertGeopoint(v); !ok {
					s.geoAbort[i] = seq
				}
			}
		}
	}
	return s.e.geoSeq[i][field] < s.geoAbort[i]
}

func (s *scratch) eval(ci int32) bool {
	if s.condGen[ci] == s.gen {
		return s.condVal[ci]
	}
	v := s.e.condList[ci].c.eval(&s.d, s)
	s.condGen[ci], s.condVal[ci] = s.gen, v
	return v
}

// fire handles an anchor condition found true for the document.
func (s *scratch) fire(ci int32) {
	s.condGen[ci], s.condVal[ci] = s.gen, true
	for _, ti := range s.e.condList[ci].anchored {
		s.checkTerm(ti)
	}
}

func (s *scratch) checkTerm(ti int32) {
	if s.termGen[ti] == s.gen {
		return
	}
	s.termGen[ti] = s.gen
	te := s.e.termList[ti]
	for _, ci := range te.rest {
		if !s.eval(ci) {
			return
		}
	}
	for _, fi := range te.filters {
		if s.filterGen[fi] != s.gen {
			s.filterGen[fi] = s.gen
			s.out = append(s.out, s.e.filterList[fi].id)
		}
	}
}

// Match returns the IDs of the filters a document (a JSON object)
// matches, in no particular order.
func (e *Engine) Match(document []byte) ([]string, error) {
	v, err := parseJSON(document)
	if err != nil {
		return nil, err
	}
	return e.matchValue(v), nil
}

// MatchValue is Match for a document decoded by encoding/json.
func (e *Engine) MatchValue(document any) ([]string, error) {
	v, err := FromGo(document)
	if err != nil {
		return nil, err
	}
	return e.matchValue(v), nil
}

// Document is a parsed document, for callers that test one document
// several times or want parsing out of the measured path.
type Document struct{ v Value }

// ParseDocument parses a JSON document.
func ParseDocument(document []byte) (*Document, error) {
	v, err := parseJSON(document)
	if err != nil {
		return nil, err
	}
	return &Document{v}, nil
}

// MatchDocument is Match for a parsed document.
func (e *Engine) MatchDocument(d *Document) []string {
	return e.matchValue(d.v)
}

func (e *Engine) matchValue(v Value) []string {
	e.mu.RLock()
	defer e.mu.RUnlock()
	s := e.getScratch()
	defer func() { s.out = nil; e.scratch.Put(s) }()
	s.d.flatten(v)

	if len(e.fields) < len(s.d.keys) {
		for name, fi := range e.fields {
			if dv, ok := s.d.m[name]; ok {
				s.probe(name, fi, dv)
			}
		}
	} else {
		for _, name := range s.d.keys {
			if fi := e.fields[name]; fi != nil {
				s.probe(name, fi, s.d.m[name])
			}
		}
	}
	for _, ci := range e.scan {
		if s.eval(ci) {
			s.fire(ci)
		}
	}
	for ti := range e.negOnly {
		s.checkTerm(ti)
	}
	return s.out
}

func (s *scratch) probe(name string, fi *fieldIndex, v Value) {
	for _, ci := range fi.exists {
		s.fire(ci)
	}
	switch v.k {
	case kNull, kBool, kNum, kStr:
		if fi.equals != nil {
			for _, ci := range fi.equals[keyOf(v)] {
				s.fire(ci)
			}
		}
		if v.k == kNum && fi.ranges != nil {
			fi.ranges.stab(v.n, s.fire)
		}
		if v.k == kStr && fi.regexps != nil {
			fi.regexps.match(v.s, s)
		}
	case kArr:
		if fi.arrValues != nil {
			clear(s.seen)
			for _, el := range v.arr {
				if !el.isScalar() {
					continue
				}
				k := keyOf(el)
				if _, dup := s.seen[k]; dup {
					continue
				}
				s.seen[k] = struct{}{}
				for _, ci := range fi.arrValues[k] {
					s.fire(ci)
				}
			}
		}
	}
	if fi.geo != nil && v.truthy() && s.geoAllowed(name, false) {
		if p, ok := convertGeopoint(v); ok {
			fi.geo.query(p, s.fire)
		}
	}
}

// --- range index: a centered interval tree, rebuilt lazily ---

type ivl struct {
	lo, hi float64
	ci     int32
}

type rangeIndex struct {
	items []ivl
	dirty atomic.Bool
	mu    sync.Mutex
	root  atomic.Pointer[ivNode]
}

type ivNode struct {
	center      float64
	byLo, byHi  []ivl // intervals containing center, by lo ascending / hi descending
	left, right *ivNode
}

func (r *rangeIndex) add(lo, hi float64, ci int32) {
	if lo > hi || math.IsNaN(lo) || math.IsNaN(hi) {
		r.items = append(r.items, ivl{math.Inf(1), math.Inf(-1), ci}) // empty: kept for removal only
	} else {
		r.items = append(r.items, ivl{lo, hi, ci})
	}
	r.dirty.Store(true)
}

func (r *rangeIndex) remove(ci int32) {
	for i, it := range r.items {
		if it.ci == ci {
			r.items[i] = r.items[len(r.items)-1]
			r.items = r.items[:len(r.items)-1]
			break
		}
	}
	r.dirty.Store(true)
}

func (r *rangeIndex) stab(x float64, fire func(int32)) {
	if r.dirty.Load() {
		r.mu.Lock()
		if r.dirty.Load() {
			var valid []ivl
			for _, it := range r.items {
				if it.lo <= it.hi {
					valid = append(valid, it)
				}
			}
			r.root.Store(buildIv(valid))
			r.dirty.Store(false)
		}
		r.mu.Unlock()
	}
	for n := r.root.Load(); n != nil; {
		switch {
		case x < n.center:
			for _, it := range n.byLo {
				if it.lo > x {
					break
				}
				fire(it.ci)
			}
			n = n.left
		case x > n.center:
			for _, it := range n.byHi {
				if it.hi < x {
					break
				}
				fire(it.ci)
			}
			n = n.right
		default:
			for _, it := range n.byLo {
				fire(it.ci)
			}
			return
		}
	}
}

func buildIv(items []ivl) *ivNode {
	if len(items) == 0 {
		return nil
	}
	pts := make([]float64, 0, 2*len(items))
	for _, it := range items {
		if !math.IsInf(it.lo, 0) {
			pts = append(pts, it.lo)
		}
		if !math.IsInf(it.hi, 0) {
			pts = append(pts, it.hi)
		}
	}
	center := 0.0
	if len(pts) > 0 {
		sort.Float64s(pts)
		center = pts[len(pts)/2]
	}
	n := &ivNode{center: center}
	var left, right []ivl
	for _, it := range items {
		switch {
		case it.hi < center:
			left = append(left, it)
		case it.lo > center:
			right = append(right, it)
		default:
			n.byLo = append(n.byLo, it)
		}
	}
	n.byHi = append([]ivl(nil), n.byLo...)
	sort.Slice(n.byLo, func(i, j int) bool { return n.byLo[i].lo < n.byLo[j].lo })
	sort.Slice(n.byHi, func(i, j int) bool { return n.byHi[i].hi > n.byHi[j].hi })
	if len(left) == len(items) || len(right) == len(items) {
		// cannot split further (all on one side of a degenerate center)
		n.byLo = append(n.byLo, append(left, right...)...)
		sort.Slice(n.byLo, func(i, j int) bool { return n.byLo[i].lo < n.byLo[j].lo })
		n.byHi = append([]ivl(nil), n.byLo...)
		sort.Slice(n.byHi, func(i, j int) bool { return n.byHi[i].hi > n.byHi[j].hi })
		return n
	}
	n.left = buildIv(left)
	n.right = buildIv(right)
	return n
}

// --- regexp index: anchored literal prefixes are looked up, not run ---

type regexIndex struct {
	n        int
	prefixed map[string][]int32
	lens     []int
	lenCount map[int]int
	other    []int32
}

// anchoredPrefix returns the literal a regexp requires at the start of
// the input (^abc...), case-sensitively, or "".
func anchoredPrefix(c *cond) string {
	re, err := syntax.Parse(c.x.re.String(), syntax.Perl)
	if err != nil {
		return ""
	}
	re = re.Simplify()
	if re.Op != syntax.OpConcat || len(re.Sub) < 2 || re.Sub[0].Op != syntax.OpBeginText {
		return ""
	}
	lit := re.Sub[1]
	if lit.Op != syntax.OpLiteral || lit.Flags&syntax.FoldCase != 0 {
		return ""
	}
	return string(lit.Rune)
}

func (x *regexIndex) add(c *cond, ci int32) {
	x.n++
	p := anchoredPrefix(c)
	if p == "" {
		x.other = append(x.other, ci)
		return
	}
	if x.prefixed == nil {
		x.prefixed = map[string][]int32{}
		x.lenCount = map[int]int{}
	}
	x.prefixed[p] = append(x.prefixed[p], ci)
	if x.lenCount[len(p)] == 0 {
		x.lens = append(x.lens, len(p))
		sort.Ints(x.lens)
	}
	x.lenCount[len(p)]++
}

func (x *regexIndex) remove(c *cond, ci int32) {
	x.n--
	p := anchoredPrefix(c)
	if p == "" {
		x.other = removeOne(x.other, ci)
		return
	}
	if l := removeOne(x.prefixed[p], ci); len(l) > 0 {
		x.prefixed[p] = l
	} else {
		delete(x.prefixed, p)
	}
	x.lenCount[len(p)]--
	if x.lenCount[len(p)] == 0 {
		delete(x.lenCount, len(p))
		for i, l := range x.lens {
			if l == len(p) {
				x.lens = append(x.lens[:i], x.lens[i+1:]...)
				break
			}
		}
	}
}

func (x *regexIndex) match(s string, sc *scratch) {
	for _, l := range x.lens {
		if l > len(s) {
			break
		}
		for _, ci := range x.prefixed[s[:l]] {
			if sc.eval(ci) {
				sc.fire(ci)
			}
		}
	}
	for _, ci := range x.other {
		if sc.eval(ci) {
			sc.fire(ci)
		}
	}
}

// --- geo index: a one-degree grid; huge shapes are always tested ---

type geoIndex struct {
	cells map[[2]int32][]int32
	big   []int32
	all   []int32
	shape map[int32]*shape
}

const maxGeoCells = 400

func geoCellsOf(s *shape) (minLat, maxLat, minLon, maxLon float64, ok bool) {
	minLat, maxLat, minLon, maxLon = s.minLat, s.maxLat, s.minLon, s.maxLon
	if s.kind == geoPolygon {
		span := math.Max(maxLat-minLat, maxLon-minLon)
		if span > 20 || math.Abs(minLat) > 70 || math.Abs(maxLat) > 70 {
			return 0, 0, 0, 0, false
		}
		m := span*0.5 + 0.05
		minLat, maxLat, minLon, maxLon = minLat-m, maxLat+m, minLon-m, maxLon+m
	}
	for _, v := range []float64{minLat, maxLat, minLon, maxLon} {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return 0, 0, 0, 0, false
		}
	}
	if maxLon-minLon >= 360 {
		return 0, 0, 0, 0, false
	}
	cells := (math.Floor(maxLat) - math.Floor(minLat) + 1) * (math.Floor(maxLon) - math.Floor(minLon) + 1)
	if cells > maxGeoCells {
		return 0, 0, 0, 0, false
	}
	return minLat, maxLat, minLon, maxLon, true
}

func lonCell(lon float64) int32 {
	c := int64(math.Floor(lon))
	c = ((c+180)%360+360)%360 - 180
	return int32(c)
}

func (g *geoIndex) add(s *shape, ci int32) {
	g.all = append(g.all, ci)
	if g.shape == nil {
		g.shape = map[int32]*shape{}
		g.cells = map[[2]int32][]int32{}
	}
	g.shape[ci] = s
	minLat, maxLat, minLon, maxLon, ok := geoCellsOf(s)
	if !ok {
		g.big = append(g.big, ci)
		return
	}
	for la := math.Floor(minLat); la <= math.Floor(maxLat); la++ {
		for lo := math.Floor(minLon); lo <= math.Floor(maxLon); lo++ {
			k := [2]int32{int32(la), lonCell(lo)}
			g.cells[k] = append(g.cells[k], ci)
		}
	}
}

func (g *geoIndex) remove(s *shape, ci int32) {
	g.all = removeOne(g.all, ci)
	delete(g.shape, ci)
	minLat, maxLat, minLon, maxLon, ok := geoCellsOf(s)
	if !ok {
		g.big = removeOne(g.big, ci)
		return
	}
	for la := math.Floor(minLat); la <= math.Floor(maxLat); la++ {
		for lo := math.Floor(minLon); lo <= math.Floor(maxLon); lo++ {
			k := [2]int32{int32(la), lonCell(lo)}
			if l := removeOne(g.cells[k], ci); len(l) > 0 {
				g.cells[k] = l
			} else {
				delete(g.cells, k)
			}
		}
	}
}

func (g *geoIndex) query(p geoPoint, fire func(int32)) {
	if math.IsNaN(p.lat) || math.IsInf(p.lat, 0) || math.IsInf(p.lon, 0) || math.IsNaN(p.lon) || math.Abs(p.lat) > 1e6 || math.Abs(p.lon) > 1e9 {
		for _, ci := range g.all {
			if g.shape[ci].covers(p) {
				fire(ci)
			}
		}
		return
	}
	k := [2]int32{int32(math.Floor(p.lat)), lonCell(p.lon)}
	for _, ci := range g.cells[k] {
		if g.shape[ci].covers(p) {
			fire(ci)
		}
	}
	for _, ci := range g.big {
		if g.shape[ci].covers(p) {
			fire(ci)
		}
	}
}
