package filter

import (
	"math"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
)

type op uint8

const (
	opEverything op = iota
	opNothing
	opEquals
	opExists
	opRange
	opRegexp
	opGeo
	opMatch
	opSelect
)

// opNames are Koncorde's keywords for the normalized conditions; terms
// are sorted by them.
var opNames = [...]string{"everything", "nothing", "equals", "exists", "range", "regexp", "geospatial", "match", "select"}

// cond is one normalized condition, possibly negated. It is kept small:
// most filters are made of equals, range and exists conditions, so the
// fields of the rarer kinds live in x.
type cond struct {
	op    op
	not   bool
	array bool // exists on an array value: tags["x"]
	field string
	val   Value // equals value, exists array value, match object
	rng   rangeSpec
	shape *shape
	x     *condExtra // regexp and select

	key string // identity, including the negation
}

// condExtra holds what only regexp and select conditions use.
type condExtra struct {
	pattern string
	flags   string
	re      *regexp.Regexp
	index   float64 // select
	sub     *program
}

// withNot returns the condition with its negation set. Every variable of
// a standardized filter has one polarity (it occurs once in the tree), so
// a condition is set in place; a copy is only made if it were to change.
func (c *cond) withNot(not bool) *cond {
	if c.key == "" || c.not == not {
		if c.not != not {
			c.not = not
		}
		return c
	}
	cp := *c
	cp.not = not
	cp.key = ""
	return &cp
}

// identity returns a canonical text for the condition: two conditions
// with the same identity are the same condition.
func (c *cond) identity() string {
	if c.key != "" {
		return c.key
	}
	var buf [128]byte
	c.key = string(c.appendIdentity(buf[:0]))
	return c.key
}

// appendIdentity appends the canonical text of the condition to b.
func (c *cond) appendIdentity(b []byte) []byte {
	if c.not {
		b = append(b, '!')
	}
	b = append(b, opNames[c.op]...)
	b = append(b, ' ')
	b = appendQuote(b, c.field)
	b = append(b, ' ')
	f := func(b []byte, x float64) []byte { return strconv.AppendFloat(b, x, 'g', -1, 64) }
	switch c.op {
	case opEquals, opMatch:
		b = appendCanon(b, c.val)
	case opExists:
		if c.array {
			b = append(b, "[]"...)
			b = appendCanon(b, c.val)
		}
	case opRange:
		r := &c.rng
		for _, x := range [...]struct {
			has bool
			n   string
			v   float64
		}{{r.hasGT, "gt", r.gt}, {r.hasGTE, "gte", r.gte}, {r.hasLT, "lt", r.lt}, {r.hasLTE, "lte", r.lte}} {
			if x.has {
				b = append(b, x.n...)
				b = append(b, ':')
				b = f(b, x.v)
				b = append(b, ' ')
			}
		}
	case opRegexp:
		b = append(b, '/')
		b = append(b, c.x.pattern...)
		b = append(b, '/')
		b = appendNormFlags(b, c.x.flags)
	case opGeo:
		s := c.shape
		switch s.kind {
		case geoBox:
			b = append(b, "box "...)
			b = f(b, s.minLat)
			b = append(b, ' ')
			b = f(b, s.minLon)
			b = append(b, ' ')
			b = f(b, s.maxLat)
			b = append(b, ' ')
			b = f(b, s.maxLon)
		case geoCircle:
			b = append(b, "circle "...)
			b = f(b, s.lat)
			b = append(b, ' ')
			b = f(b, s.lon)
			b = append(b, ' ')
			b = f(b, s.outer)
		case geoAnnulus:
			b = append(b, "annulus "...)
			b = f(b, s.lat)
			b = append(b, ' ')
			b = f(b, s.lon)
			b = append(b, ' ')
			b = f(b, s.inner)
			b = append(b, ' ')
			b = f(b, s.outer)
		case geoPolygon:
			b = append(b, "polygon"...)
			for _, p := range s.poly {
				b = append(b, ' ')
				b = f(b, p[0])
				b = append(b, ',')
				b = f(b, p[1])
			}
		}
	case opSelect:
		b = f(b, c.x.index)
		b = append(b, ' ')
		b = append(b, c.x.sub.id...)
	}
	return b
}

// appendQuote is strconv.AppendQuote, with a fast path for the common
// case of printable ASCII without quotes or backslashes.
func appendQuote(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			return strconv.AppendQuote(b, s)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// appendNormFlags appends regexp flags sorted bytewise.
func appendNormFlags(b []byte, flags string) []byte {
	start := len(b)
	b = append(b, flags...)
	slices.Sort(b[start:])
	return b
}

// appendCanon appends a value as JSON with object keys sorted, so that
// equal values have equal texts.
func appendCanon(b []byte, v Value) []byte {
	switch v.k {
	case kNull, kUndef:
		b = append(b, "null"...)
	case kBool:
		b = strconv.AppendBool(b, v.b)
	case kNum:
		b = append(b, 'n')
		b = strconv.AppendFloat(b, v.n, 'g', -1, 64)
	case kStr:
		b = appendQuote(b, v.s)
	case kArr:
		b = append(b, '[')
		for i, e := range v.arr {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendCanon(b, e)
		}
		b = append(b, ']')
	case kObj:
		idx := make([]int, len(v.obj.keys))
		for i := range idx {
			idx[i] = i
		}
		sort.Slice(idx, func(i, j int) bool { return v.obj.keys[idx[i]] < v.obj.keys[idx[j]] })
		b = append(b, '{')
		for n, i := range idx {
			if n > 0 {
				b = append(b, ',')
			}
			b = appendQuote(b, v.obj.keys[i])
			b = append(b, ':')
			b = appendCanon(b, v.obj.vals[i])
		}
		b = append(b, '}')
	}
	return b
}

// geoGate tells whether geo conditions on a field are evaluated for this
// document. Koncorde stops testing the geo conditions of every field that
// comes after (in registration order) a field holding something that is
// not a geopoint, and those of that field.
type geoGate interface {
	geoAllowed(field string, negated bool) bool
}

// eval tests a condition directly against a flattened document.
func (c *cond) eval(d *doc, g geoGate) bool {
	switch c.op {
	case opEverything:
		return !c.not
	case opNothing:
		return c.not
	case opEquals:
		v := d.get(c.field)
		eq := v.isScalar() && strictEqual(v, c.val)
		return eq != c.not
	case opExists:
		if !c.array {
			if c.not {
				return d.get(c.field).k == kUndef
			}
			_, ok := d.m[c.field]
			return ok
		}
		v := d.m[c.field]
		in := v.k == kArr && arrayIncludes(v.arr, c.val)
		return in != c.not
	case opRange:
		v := d.get(c.field)
		if v.k != kNum {
			return c.not
		}
		if !c.not {
			lo, hi := c.rng.interval()
			return lo <= v.n && v.n <= hi
		}
		bh, below, al, above := c.rng.notIntervals()
		return (below && v.n <= bh) || (above && v.n >= al)
	case opRegexp:
		v := d.get(c.field)
		if !c.not {
			return v.k == kStr && c.x.re.MatchString(v.s)
		}
		if v.k == kUndef {
			return true
		}
		return !c.x.re.MatchString(jsString(v))
	case opGeo:
		if !g.geoAllowed(c.field, c.not) {
			return false
		}
		v := d.get(c.field)
		if !v.truthy() {
			return c.not
		}
		p, ok := convertGeopoint(v)
		if !ok {
			return false
		}
		return c.shape.covers(p) != c.not
	case opMatch:
		m := matchObject(func(k string) Value { return d.get(k) }, c.val.obj)
		return m != c.not
	case opSelect:
		v := d.get(c.field)
		if v.k != kArr {
			return false
		}
		i := c.x.index
		if i < 0 {
			i += float64(len(v.arr))
		}
		if i < 0 || i >= float64(len(v.arr)) {
			return false
		}
		return c.x.sub.matchValue(v.arr[int(i)])
	}
	return false
}

// arrayIncludes is Array.prototype.includes (SameValueZero): objects and
// arrays from the filter are never found.
func arrayIncludes(arr []Value, x Value) bool {
	if !x.isScalar() {
		return false
	}
	for _, e := range arr {
		if strictEqual(e, x) {
			return true
		}
	}
	return false
}

func jsTypeof(v Value) string {
	switch v.k {
	case kUndef:
		return "undefined"
	case kBool:
		return "boolean"
	case kNum:
		return "number"
	case kStr:
		return "string"
	case kProto:
		if v.s == "[object Object]" {
			return "object"
		}
		return "function"
	}
	return "object"
}

// matchAny is Koncorde's "match" test: objects match when every key of
// the pattern matches, arrays when each pattern element matches a
// distinct element, scalars when strictly equal.
func matchAny(v, m Value) bool {
	if jsTypeof(v) != jsTypeof(m) {
		return false
	}
	if (v.k == kArr || v.k == kObj) && (m.k == kArr || m.k == kObj) {
		if (v.k == kArr) != (m.k == kArr) {
			return false
		}
		if v.k == kArr {
			return matchArray(v.arr, m.arr)
		}
		return matchObject(v.obj.lookup, m.obj)
	}
	if v.k == kProto || m.k == kProto {
		return false
	}
	return strictEqual(v, m)
}

func matchArray(arr, m []Value) bool {
	if len(arr) < len(m) {
		return false
	}
	left := append([]Value(nil), arr...)
	for _, x := range m {
		found := false
		for j := range left {
			if matchAny(left[j], x) {
				left = append(left[:j], left[j+1:]...)
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func matchObject(get func(string) Value, m *object) bool {
	for i, k := range m.keys {
		if !matchAny(get(k), m.vals[i]) {
			return false
		}
	}
	return true
}

// jsToNumber is JavaScript's ToNumber for scalars.
func jsToNumber(v Value) float64 {
	switch v.k {
	case kNum:
		return v.n
	case kBool:
		if v.b {
			return 1
		}
		return 0
	case kNull:
		return 0
	case kStr:
		s := strings.TrimFunc(v.s, isJSSpace)
		if s == "" {
			return 0
		}
		switch s {
		case "Infinity", "+Infinity":
			return math.Inf(1)
		case "-Infinity":
			return math.Inf(-1)
		}
		if len(s) > 2 && s[0] == '0' {
			base := 0
			switch s[1] {
			case 'x', 'X':
				base = 16
			case 'o', 'O':
				base = 8
			case 'b', 'B':
				base = 2
			}
			if base != 0 {
				n, err := strconv.ParseUint(s[2:], base, 64)
				if err != nil || strings.Contains(s, "_") {
					return math.NaN()
				}
				return float64(n)
			}
		}
		for i := 0; i < len(s); i++ {
			c := s[i]
			if !(c >= '0' && c <= '9' || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-') {
				return math.NaN()
			}
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
				return f
			}
			return math.NaN()
		}
		return f
	}
	return math.NaN()
}
