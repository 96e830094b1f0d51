package filter

import (
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf16"
	"unicode/utf8"
)

// kind is the JavaScript type of a JSON value, which is what Koncorde's
// semantics are written against (typeof, Array.isArray, strict equality).
type kind uint8

const (
	kUndef kind = iota // absent: a missing key
	kNull
	kBool
	kNum
	kStr
	kArr
	kObj
	// kProto stands for a key that is absent from the document but that
	// JavaScript finds on Object.prototype ("constructor", "toString", ...).
	// Koncorde reads document fields with doc[key], so such keys are not
	// "undefined" for it; we reproduce the few places where that shows.
	kProto
)

// Value is a decoded JSON value. Objects keep JavaScript's key order
// (integer-like keys ascending first, then insertion order), because
// Koncorde's flattening lets the later of two colliding paths win.
type Value struct {
	k   kind
	b   bool
	n   float64
	s   string // string value, or the text of a kProto value
	arr []Value
	obj *object
}

type object struct {
	keys []string
	vals []Value
}

func (o *object) get(key string) (Value, bool) {
	if o == nil {
		return Value{}, false
	}
	for i, k := range o.keys {
		if k == key {
			return o.vals[i], true
		}
	}
	return Value{}, false
}

// lookup reads a property the way JavaScript's obj[key] does for a plain
// object: own keys first, then Object.prototype's members.
func (o *object) lookup(key string) Value {
	if v, ok := o.get(key); ok {
		return v
	}
	if s, ok := protoNames[key]; ok {
		return Value{k: kProto, s: s}
	}
	return Value{}
}

// protoNames are the properties every plain JavaScript object inherits,
// with String() of each (what a regexp test sees).
var protoNames = map[string]string{
	"constructor":          "function Object() { [native code] }",
	"__defineGetter__":     "function __defineGetter__() { [native code] }",
	"__defineSetter__":     "function __defineSetter__() { [native code] }",
	"hasOwnProperty":       "function hasOwnProperty() { [native code] }",
	"__lookupGetter__":     "function __lookupGetter__() { [native code] }",
	"__lookupSetter__":     "function __lookupSetter__() { [native code] }",
	"isPrototypeOf":        "function isPrototypeOf() { [native code] }",
	"propertyIsEnumerable": "function propertyIsEnumerable() { [native code] }",
	"toString":             "function toString() { [native code] }",
	"valueOf":              "function valueOf() { [native code] }",
	"__proto__":            "[object Object]",
	"toLocaleString":       "function toLocaleString() { [native code] }",
}

// isProtoName is a quick protoNames membership test: most field names
// are rejected by their length or first byte without a map lookup.
func isProtoName(f string) bool {
	if len(f) < len("valueOf") || len(f) > len("propertyIsEnumerable") {
		return false
	}
	switch f[0] {
	case 'c', '_', 'h', 'i', 'p', 't', 'v':
		_, ok := protoNames[f]
		return ok
	}
	return false
}

func (v Value) isScalar() bool { return v.k >= kNull && v.k <= kStr }

// truthy is JavaScript's ToBoolean.
func (v Value) truthy() bool {
	switch v.k {
	case kBool:
		return v.b
	case kNum:
		return v.n != 0 && !math.IsNaN(v.n)
	case kStr:
		return v.s != ""
	case kArr, kObj, kProto:
		return true
	}
	return false
}

// strictEqual is === for scalars; arrays and objects are never equal to a
// value parsed from another JSON text (reference identity).
func strictEqual(a, b Value) bool {
	if a.k != b.k {
		return false
	}
	switch a.k {
	case kNull, kUndef:
		return true
	case kBool:
		return a.b == b.b
	case kNum:
		return a.n == b.n
	case kStr:
		return a.s == b.s
	}
	return false
}

// scalarKey identifies a scalar for hash lookups with SameValueZero
// semantics (what Map and Set use): 0 and -0 are one key.
type scalarKey struct {
	k kind
	u uint64
	s string
}

func keyOf(v Value) scalarKey {
	switch v.k {
	case kBool:
		if v.b {
			return scalarKey{k: kBool, u: 1}
		}
		return scalarKey{k: kBool}
	case kNum:
		n := v.n
		if n == 0 {
			n = 0
		}
		return scalarKey{k: kNum, u: math.Float64bits(n)}
	case kStr:
		return scalarKey{k: kStr, s: v.s}
	}
	return scalarKey{k: v.k}
}

// jsString is JavaScript's String(v).
func jsString(v Value) string {
	var b strings.Builder
	writeJSString(&b, v, true)
	return b.String()
}

func writeJSString(b *strings.Builder, v Value, top bool) {
	switch v.k {
	case kUndef:
		if top {
			b.WriteString("undefined")
		}
	case kNull:
		if top {
			b.WriteString("null")
		}
	case kBool:
		if v.b {
			b.WriteString("true")
		} else {
			b.WriteString("false")
		}
	case kNum:
		b.WriteString(jsNumber(v.n))
	case kStr, kProto:
		b.WriteString(v.s)
	case kArr:
		for i, e := range v.arr {
			if i > 0 {
				b.WriteByte(',')
			}
			writeJSString(b, e, false)
		}
	case kObj:
		b.WriteString("[object Object]")
	}
}

// jsNumber formats a float64 like JavaScript's Number.prototype.toString.
func jsNumber(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	case f == 0:
		return "0"
	}
	neg := f < 0
	if neg {
		f = -f
	}
	// Shortest round-trip digits and decimal exponent.
	e := strconv.FormatFloat(f, 'e', -1, 64) // d.ddddde±XX
	mant, expStr, _ := strings.Cut(e, "e")
	digits := strings.Replace(mant, ".", "", 1)
	exp, _ := strconv.Atoi(expStr)
	n := exp + 1 // position of the decimal point relative to digits
	k := len(digits)
	var out string
	switch {
	case k <= n && n <= 21:
		out = digits + strings.Repeat("0", n-k)
	case 0 < n && n <= 21:
		out = digits[:n] + "." + digits[n:]
	case -6 < n && n <= 0:
		out = "0." + strings.Repeat("0", -n) + digits
	default:
		sign := "+"
		if n-1 < 0 {
			sign = "-"
		}
		ex := n - 1
		if ex < 0 {
			ex = -ex
		}
		if k == 1 {
			out = digits + "e" + sign + strconv.Itoa(ex)
		} else {
			out = digits[:1] + "." + digits[1:] + "e" + sign + strconv.Itoa(ex)
		}
	}
	if neg {
		return "-" + out
	}
	return out
}

// isArrayIndex reports whether a key is a canonical array index, which
// JavaScript enumerates before other keys, in ascending order.
func isArrayIndex(s string) (uint64, bool) {
	if s == "" || len(s) > 10 || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	var n uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	return n, n < 4294967295
}

// jsOrder reorders keys the way JavaScript enumerates own properties.
func (o *object) jsOrder() {
	hasIdx := false
	for _, k := range o.keys {
		if _, ok := isArrayIndex(k); ok {
			hasIdx = true
			break
		}
	}
	if !hasIdx {
		return
	}
	type kv struct {
		k   string
		v   Value
		idx uint64
		is  bool
		pos int
	}
	items := make([]kv, len(o.keys))
	for i, k := range o.keys {
		n, ok := isArrayIndex(k)
		items[i] = kv{k, o.vals[i], n, ok, i}
	}
	sort.SliceStable(items, func(a, b int) bool {
		if items[a].is != items[b].is {
			return items[a].is
		}
		if items[a].is {
			return items[a].idx < items[b].idx
		}
		return false
	})
	for i, it := range items {
		o.keys[i], o.vals[i] = it.k, it.v
	}
}

// errJSON is returned for malformed JSON.
var errJSON = errors.New("invalid JSON")

// maxDepth bounds nesting so hostile input cannot exhaust the stack.
const maxDepth = 512

// parseJSON decodes one JSON text.
func parseJSON(data []byte) (Value, error) {
	p := jsonStacks.Get().(*jsonParser)
	v, err := p.parseAll(data)
	putJSONParser(p)
	return v, err
}

// parseFilterJSON decodes a JSON text into memory of a pooled parser,
// reused once putJSONParser(p) is called: nothing may keep a reference
// into the value (strings excepted) after that.
func parseFilterJSON(data []byte) (v Value, p *jsonParser, err error) {
	p = jsonStacks.Get().(*jsonParser)
	p.arena = true
	v, err = p.parseAll(data)
	return v, p, err
}

// cloneValue deep-copies the arrays and objects of a value, for values
// decoded by parseFilterJSON that must outlive the parse.
func cloneValue(v Value) Value {
	switch v.k {
	case kArr:
		arr := make([]Value, len(v.arr))
		for i, e := range v.arr {
			arr[i] = cloneValue(e)
		}
		v.arr = arr
	case kObj:
		o := &object{keys: slices.Clone(v.obj.keys), vals: make([]Value, len(v.obj.vals))}
		for i, e := range v.obj.vals {
			o.vals[i] = cloneValue(e)
		}
		v.obj = o
	}
	return v
}

func putJSONParser(p *jsonParser) {
	p.resetArena()
	if cap(p.vals) <= 1024 && cap(p.keys) <= 1024 {
		jsonStacks.Put(p)
	}
}

func (p *jsonParser) parseAll(data []byte) (Value, error) {
	p.data, p.i = data, 0
	v, err := p.parse()
	p.data = nil
	clear(p.keys) // left over by an error; drop references for the GC
	clear(p.vals)
	p.keys, p.vals = p.keys[:0], p.vals[:0]
	return v, err
}

func (p *jsonParser) parse() (Value, error) {
	p.ws()
	v, err := p.value(0)
	if err != nil {
		return Value{}, err
	}
	p.ws()
	if p.i != len(p.data) {
		return Value{}, fmt.Errorf("%w: trailing data at offset %d", errJSON, p.i)
	}
	return v, nil
}

type jsonParser struct {
	data []byte
	i    int
	// stacks of the members of the objects and arrays being parsed
	keys []string
	vals []Value
	// With arena set, objects and arrays are carved from chunks that are
	// reused by the next parse (see parseFilterJSON); otherwise each is
	// its own allocation.
	arena bool
	objs  []object1
	objN  int
	avals []Value
	avalN int
}

// jsonStacks keeps the parsers' member stacks between parses.
var jsonStacks = sync.Pool{New: func() any { return &jsonParser{} }}

// object1 holds a one-member object, the most common kind in filters,
// in a single allocation.
type object1 struct {
	o object
	k [1]string
	v [1]Value
}

// newObject copies members into a new object.
func (p *jsonParser) newObject(keys []string, vals []Value) *object {
	if len(keys) == 1 {
		var x *object1
		if p.arena {
			if p.objN == len(p.objs) {
				p.objs, p.objN = make([]object1, 32), 0
			}
			x = &p.objs[p.objN]
			p.objN++
		} else {
			x = &object1{}
		}
		x.k[0], x.v[0] = keys[0], vals[0]
		x.o.keys, x.o.vals = x.k[:], x.v[:]
		return &x.o
	}
	o := &object{keys: slices.Clone(keys), vals: p.newValues(len(vals))}
	copy(o.vals, vals)
	return o
}

// newValues returns a slice for n values, from the arena if there is one.
func (p *jsonParser) newValues(n int) []Value {
	if !p.arena || n > 64 {
		return make([]Value, n)
	}
	if p.avalN+n > len(p.avals) {
		p.avals, p.avalN = make([]Value, 256), 0
	}
	s := p.avals[p.avalN : p.avalN+n : p.avalN+n]
	p.avalN += n
	return s
}

// resetArena makes the arena's memory available again: the values of the
// previous parse must no longer be used.
func (p *jsonParser) resetArena() {
	p.arena, p.objN, p.avalN = false, 0, 0
}

func (p *jsonParser) ws() {
	for p.i < len(p.data) {
		switch p.data[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *jsonParser) fail(what string) error {
	return fmt.Errorf("%w: %s at offset %d", errJSON, what, p.i)
}

func (p *jsonParser) value(depth int) (Value, error) {
	if depth > maxDepth {
		return Value{}, p.fail("nesting too deep")
	}
	if p.i >= len(p.data) {
		return Value{}, p.fail("unexpected end")
	}
	switch c := p.data[p.i]; {
	case c == '{':
		p.i++
		p.ws()
		if p.i < len(p.data) && p.data[p.i] == '}' {
			p.i++
			return Value{k: kObj, obj: &object{}}, nil
		}
		// Members go on the parser's stacks, then into slices of the
		// exact size: one allocation per slice instead of append's chain.
		base, vbase := len(p.keys), len(p.vals)
		var seen map[string]int
		for {
			p.ws()
			if p.i >= len(p.data) || p.data[p.i] != '"' {
				return Value{}, p.fail("expected key")
			}
			key, err := p.str(true)
			if err != nil {
				return Value{}, err
			}
			p.ws()
			if p.i >= len(p.data) || p.data[p.i] != ':' {
				return Value{}, p.fail("expected ':'")
			}
			p.i++
			p.ws()
			v, err := p.value(depth + 1)
			if err != nil {
				return Value{}, err
			}
			// A repeated key keeps its first position and its last value,
			// as JSON.parse does.
			keys := p.keys[base:]
			dup := -1
			if seen != nil {
				if j, ok := seen[key]; ok {
					dup = j
				}
			} else {
				for j, k := range keys {
					if k == key {
						dup = j
						break
					}
				}
				if len(keys) >= 8 {
					seen = make(map[string]int, 16)
					for j, k := range keys {
						seen[k] = j
					}
				}
			}
			if dup >= 0 {
				p.vals[vbase+dup] = v
			} else {
				if seen != nil {
					seen[key] = len(keys)
				}
				p.keys = append(p.keys, key)
				p.vals = append(p.vals, v)
			}
			p.ws()
			if p.i >= len(p.data) {
				return Value{}, p.fail("unexpected end")
			}
			if p.data[p.i] == ',' {
				p.i++
				continue
			}
			if p.data[p.i] == '}' {
				p.i++
				o := p.newObject(p.keys[base:], p.vals[vbase:])
				clear(p.keys[base:])
				clear(p.vals[vbase:])
				p.keys, p.vals = p.keys[:base], p.vals[:vbase]
				o.jsOrder()
				return Value{k: kObj, obj: o}, nil
			}
			return Value{}, p.fail("expected ',' or '}'")
		}
	case c == '[':
		p.i++
		p.ws()
		if p.i < len(p.data) && p.data[p.i] == ']' {
			p.i++
			return Value{k: kArr, arr: []Value{}}, nil
		}
		base := len(p.vals)
		for {
			p.ws()
			v, err := p.value(depth + 1)
			if err != nil {
				return Value{}, err
			}
			p.vals = append(p.vals, v)
			p.ws()
			if p.i >= len(p.data) {
				return Value{}, p.fail("unexpected end")
			}
			if p.data[p.i] == ',' {
				p.i++
				continue
			}
			if p.data[p.i] == ']' {
				p.i++
				arr := p.newValues(len(p.vals) - base)
				copy(arr, p.vals[base:])
				clear(p.vals[base:])
				p.vals = p.vals[:base]
				return Value{k: kArr, arr: arr}, nil
			}
			return Value{}, p.fail("expected ',' or ']'")
		}
	case c == '"':
		s, err := p.str(false)
		if err != nil {
			return Value{}, err
		}
		return Value{k: kStr, s: s}, nil
	case c == 't':
		return p.lit("true", Value{k: kBool, b: true})
	case c == 'f':
		return p.lit("false", Value{k: kBool})
	case c == 'n':
		return p.lit("null", Value{k: kNull})
	case c == '-' || (c >= '0' && c <= '9'):
		return p.num()
	}
	return Value{}, p.fail("unexpected character")
}

func (p *jsonParser) lit(word string, v Value) (Value, error) {
	if len(p.data)-p.i < len(word) || string(p.data[p.i:p.i+len(word)]) != word {
		return Value{}, p.fail("invalid literal")
	}
	p.i += len(word)
	return v, nil
}

func (p *jsonParser) num() (Value, error) {
	start := p.i
	if p.data[p.i] == '-' {
		p.i++
	}
	digits := func() int {
		n := 0
		for p.i < len(p.data) && p.data[p.i] >= '0' && p.data[p.i] <= '9' {
			p.i++
			n++
		}
		return n
	}
	if p.i < len(p.data) && p.data[p.i] == '0' {
		p.i++
	} else if digits() == 0 {
		return Value{}, p.fail("invalid number")
	}
	if p.i < len(p.data) && p.data[p.i] == '.' {
		p.i++
		if digits() == 0 {
			return Value{}, p.fail("invalid number")
		}
	}
	if p.i < len(p.data) && (p.data[p.i] == 'e' || p.data[p.i] == 'E') {
		p.i++
		if p.i < len(p.data) && (p.data[p.i] == '+' || p.data[p.i] == '-') {
			p.i++
		}
		if digits() == 0 {
			return Value{}, p.fail("invalid number")
		}
	}
	f, err := strconv.ParseFloat(string(p.data[start:p.i]), 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return Value{}, p.fail("invalid number")
	}
	return Value{k: kNum, n: f}, nil
}

// str decodes a string; object keys (keywords, field names: few and
// repeated) are interned.
func (p *jsonParser) str(isKey bool) (string, error) {
	p.i++ // opening quote
	start := p.i
	// Fast path: no escapes.
	for p.i < len(p.data) {
		c := p.data[p.i]
		if c == '"' {
			var s string
			if isKey {
				s = intern(p.data[start:p.i])
			} else {
				s = string(p.data[start:p.i])
			}
			p.i++
			return s, nil
		}
		if c == '\\' || c < 0x20 {
			break
		}
		p.i++
	}
	var b strings.Builder
	b.Write(p.data[start:p.i])
	for p.i < len(p.data) {
		c := p.data[p.i]
		switch {
		case c == '"':
			p.i++
			return b.String(), nil
		case c < 0x20:
			return "", p.fail("control character in string")
		case c == '\\':
			p.i++
			if p.i >= len(p.data) {
				return "", p.fail("unexpected end")
			}
			e := p.data[p.i]
			p.i++
			switch e {
			case '"', '\\', '/':
				b.WriteByte(e)
			case 'b':
				b.WriteByte('\b')
			case 'f':
				b.WriteByte('\f')
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 't':
				b.WriteByte('\t')
			case 'u':
				r, ok := p.hex4()
				if !ok {
					return "", p.fail("invalid \\u escape")
				}
				if utf16.IsSurrogate(r) {
					if p.i+1 < len(p.data) && p.data[p.i] == '\\' && p.data[p.i+1] == 'u' {
						save := p.i
						p.i += 2
						r2, ok := p.hex4()
						if ok {
							if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
								b.WriteRune(d)
								continue
							}
						}
						p.i = save
					}
					r = utf8.RuneError
				}
				b.WriteRune(r)
			default:
				return "", p.fail("invalid escape")
			}
		default:
			b.WriteByte(c)
			p.i++
		}
	}
	return "", p.fail("unterminated string")
}

func (p *jsonParser) hex4() (rune, bool) {
	if len(p.data)-p.i < 4 {
		return 0, false
	}
	var r rune
	for _, c := range p.data[p.i : p.i+4] {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c-'a') + 10
		case c >= 'A' && c <= 'F':
			r |= rune(c-'A') + 10
		default:
			return 0, false
		}
	}
	p.i += 4
	return r, true
}

// internTable remembers recently decoded short object keys (keywords,
// field names) so that decoding them again does not allocate. It is kept
// small to stay in cache: interning values too cost more in cache misses
// than it saved in allocations.
// Slots are chosen by hash and overwritten on collision; each holds an
// immutable string, so readers and writers need no lock.
var internTable [1024]atomic.Pointer[string]

var internSeed = maphash.MakeSeed()

const maxInterned = 32

func intern(b []byte) string {
	if len(b) > maxInterned || len(b) == 0 {
		return string(b)
	}
	slot := &internTable[maphash.Bytes(internSeed, b)&(uint64(len(internTable))-1)]
	if p := slot.Load(); p != nil && *p == string(b) {
		return *p
	}
	s := new(string)
	*s = string(b)
	slot.Store(s)
	return *s
}

// FromGo converts a value decoded by encoding/json (map[string]any,
// []any, string, float64, json.Number, bool, nil) into a Value. Go maps
// have no order, so object keys are taken in JavaScript's order for
// integer-like keys and sorted order for the others; this only matters
// when a literal dotted key collides with a nested path.
func FromGo(x any) (Value, error) {
	return fromGo(x, 0)
}

func fromGo(x any, depth int) (Value, error) {
	if depth > maxDepth {
		return Value{}, errors.New("nesting too deep")
	}
	switch t := x.(type) {
	case nil:
		return Value{k: kNull}, nil
	case bool:
		return Value{k: kBool, b: t}, nil
	case float64:
		return Value{k: kNum, n: t}, nil
	case float32:
		return Value{k: kNum, n: float64(t)}, nil
	case int:
		return Value{k: kNum, n: float64(t)}, nil
	case int64:
		return Value{k: kNum, n: float64(t)}, nil
	case interface{ Float64() (float64, error) }: // json.Number
		f, err := t.Float64()
		if err != nil && !errors.Is(err, strconv.ErrRange) {
			return Value{}, err
		}
		return Value{k: kNum, n: f}, nil
	case string:
		return Value{k: kStr, s: t}, nil
	case []any:
		arr := make([]Value, len(t))
		for i, e := range t {
			v, err := fromGo(e, depth+1)
			if err != nil {
				return Value{}, err
			}
			arr[i] = v
		}
		return Value{k: kArr, arr: arr}, nil
	case map[string]any:
		o := &object{keys: make([]string, 0, len(t)), vals: make([]Value, 0, len(t))}
		for k := range t {
			o.keys = append(o.keys, k)
		}
		sort.Strings(o.keys)
		for _, k := range o.keys {
			v, err := fromGo(t[k], depth+1)
			if err != nil {
				return Value{}, err
			}
			o.vals = append(o.vals, v)
		}
		o.jsOrder()
		return Value{k: kObj, obj: o}, nil
	}
	return Value{}, fmt.Errorf("unsupported type %T", x)
}

// doc is a flattened document: every path "a", "a.b", "a.b.c" of nested
// objects maps to its value (arrays are not descended), as Koncorde's
// flattenObject builds it.
type doc struct {
	m    map[string]Value
	keys []string // in flattening order, each once
}

func (d *doc) reset() {
	clear(d.m)
	d.keys = d.keys[:0]
}

func (d *doc) set(k string, v Value) {
	if _, ok := d.m[k]; !ok {
		d.keys = append(d.keys, k)
	}
	d.m[k] = v
}

func (d *doc) flatten(v Value) {
	if v.k != kObj {
		return
	}
	d.flattenStep(v.obj, "")
}

func (d *doc) flattenStep(o *object, prefix string) {
	for i, k := range o.keys {
		key := k
		if prefix != "" {
			key = prefix + "." + k
		}
		val := o.vals[i]
		d.set(key, val)
		if val.k == kObj {
			d.flattenStep(val.obj, key)
			// Koncorde assigns the object again after descending, which
			// restores it if a literal dotted key inside overwrote it.
			d.m[key] = val
		}
	}
}

// get reads doc[key] with JavaScript's prototype lookup.
func (d *doc) get(key string) Value {
	if v, ok := d.m[key]; ok {
		return v
	}
	if s, ok := protoNames[key]; ok {
		return Value{k: kProto, s: s}
	}
	return Value{}
}
