package filter

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode"
)

// Geo clauses. Koncorde tests points against shapes with Boost.Geometry on
// the WGS84 spheroid: distances with the Andoyer-Lambert formula (and the
// meridian arc when both points share a longitude), polygons with the
// geographic winding rule whose sides are geodesics, boxes as plain
// latitude/longitude ranges; a circle is only tested for points inside a
// rough bounding box computed on a sphere of radius 6378137 m. We compute
// the same things so that points near a boundary get the same verdict.

type geoKind uint8

const (
	geoBox geoKind = iota
	geoCircle
	geoAnnulus
	geoPolygon
)

type shape struct {
	kind geoKind
	// box: lat/lon ranges; circle/annulus: their envelope
	minLat, minLon, maxLat, maxLon float64
	lat, lon                       float64 // center
	outer, inner                   float64 // meters
	poly                           [][2]float64
}

type geoPoint struct{ lat, lon float64 }

func (c *cond) geoKeyword() string {
	switch c.shape.kind {
	case geoBox:
		return "geoBoundingBox"
	case geoCircle:
		return "geoDistance"
	case geoAnnulus:
		return "geoDistanceRange"
	}
	return "geoPolygon"
}

func (p *parser) geoBoundingBox(arg Value, path string) (*node, error) {
	if err := isObject(arg, path, 1); err != nil {
		return nil, err
	}
	field, raw := arg.obj.keys[0], arg.obj.vals[0]
	fpath := p.join(path, field)
	if raw.k != kObj {
		return nil, perr(fpath, "unrecognized geo-point format")
	}
	bb := camelCased(raw.obj)
	var top, left, bottom, right float64
	all := true
	for _, k := range []string{"top", "left", "bottom", "right"} {
		v := bb.lookup(k)
		if v.k != kStr && v.k != kNum {
			all = false
		}
	}
	ok := false
	if all {
		vals := make([]float64, 4)
		for i, k := range []string{"top", "left", "bottom", "right"} {
			n := jsParseFloat(jsString(bb.lookup(k)))
			if math.IsNaN(n) {
				return nil, perr(fpath, "unrecognized geoBoundingBox format")
			}
			vals[i] = n
		}
		top, left, bottom, right, ok = vals[0], vals[1], vals[2], vals[3], true
	} else if tl, br := bb.lookup("topLeft"), bb.lookup("bottomRight"); tl.truthy() && br.truthy() {
		a, okA := convertGeopoint(tl)
		b, okB := convertGeopoint(br)
		if okA && okB {
			top, left, bottom, right, ok = a.lat, a.lon, b.lat, b.lon, true
		}
	}
	if !ok {
		return nil, perr(fpath, "unrecognized geo-point format")
	}
	// Koncorde's spatial index refuses these when the filter is stored.
	if bottom >= top {
		return nil, perr(fpath, "the bottom latitude must be below the top one")
	}
	if left >= right {
		return nil, perr(fpath, "the left longitude must be below the right one")
	}
	s := &shape{kind: geoBox, minLat: bottom, minLon: left, maxLat: top, maxLon: right}
	return p.leaf(&cond{op: opGeo, field: field, shape: s}), nil
}

func (p *parser) geoDistance(arg Value, path string) (*node, error) {
	if err := isObject(arg, path, 2); err != nil {
		return nil, err
	}
	d, ok := arg.obj.get("distance")
	if !ok {
		return nil, perr(path, `the property "distance" is missing`)
	}
	if err := isString(d, p.join(path, "distance")); err != nil {
		return nil, err
	}
	field, pt := otherKey(arg.obj, "distance", "")
	point, ok := convertGeopoint(pt)
	if !ok {
		return nil, perr(p.join(path, field), "unrecognized point format")
	}
	dist, err := convertDistance(d.s)
	if err != nil {
		return nil, &ParseError{Path: p.join(path, "distance"), Msg: err.Error(), Err: err}
	}
	s := &shape{kind: geoCircle, lat: point.lat, lon: point.lon, outer: dist}
	s.envelope()
	return p.leaf(&cond{op: opGeo, field: field, shape: s}), nil
}

func (p *parser) geoDistanceRange(arg Value, path string) (*node, error) {
	if err := isObject(arg, path, 3); err != nil {
		return nil, err
	}
	for _, k := range []string{"from", "to"} {
		if _, ok := arg.obj.get(k); !ok {
			return nil, perr(path, "the property %q is missing", k)
		}
	}
	field, pt := otherKey(arg.obj, "from", "to")
	var ft [2]float64
	for i, k := range []string{"from", "to"} {
		v, _ := arg.obj.get(k)
		if err := isString(v, p.join(path, k)); err != nil {
			return nil, err
		}
		d, err := convertDistance(v.s)
		if err != nil {
			return nil, &ParseError{Path: p.join(path, k), Msg: err.Error(), Err: err}
		}
		ft[i] = d
	}
	if ft[0] >= ft[1] {
		return nil, perr(path, "inner radius must be smaller than outer radius")
	}
	point, ok := convertGeopoint(pt)
	if !ok {
		return nil, perr(p.join(path, field), "unrecognized point format")
	}
	s := &shape{kind: geoAnnulus, lat: point.lat, lon: point.lon, inner: ft[0], outer: ft[1]}
	s.envelope()
	return p.leaf(&cond{op: opGeo, field: field, shape: s}), nil
}

func (p *parser) geoPolygon(arg Value, path string) (*node, error) {
	if err := isObject(arg, path, 1); err != nil {
		return nil, err
	}
	field, spec := arg.obj.keys[0], arg.obj.vals[0]
	fpath := p.join(path, field)
	if err := isObject(spec, fpath, 1); err != nil {
		return nil, err
	}
	pts, ok := spec.obj.get("points")
	if !ok {
		return nil, perr(fpath, `the property "points" is missing`)
	}
	ppath := p.join(fpath, "points")
	if pts.k != kArr {
		return nil, perr(ppath, "must be an array")
	}
	if len(pts.arr) < 3 {
		return nil, perr(ppath, "at least 3 points are required to build a polygon")
	}
	s := &shape{kind: geoPolygon, minLat: math.Inf(1), minLon: math.Inf(1), maxLat: math.Inf(-1), maxLon: math.Inf(-1)}
	for i, v := range pts.arr {
		pt, ok := convertGeopoint(v)
		if !ok {
			return nil, perr(p.index(ppath, i), "unrecognized point format")
		}
		s.poly = append(s.poly, [2]float64{pt.lat, pt.lon})
		s.minLat, s.maxLat = math.Min(s.minLat, pt.lat), math.Max(s.maxLat, pt.lat)
		s.minLon, s.maxLon = math.Min(s.minLon, pt.lon), math.Max(s.maxLon, pt.lon)
	}
	return p.leaf(&cond{op: opGeo, field: field, shape: s}), nil
}

// otherKey returns the first key that is neither a nor b.
func otherKey(o *object, a, b string) (string, Value) {
	for i, k := range o.keys {
		if k != a && k != b {
			return k, o.vals[i]
		}
	}
	return "", Value{}
}

// camelCased renames lat_lon, top_left and bottom_right as Koncorde does.
func camelCased(o *object) *object {
	out := &object{}
	for i, k := range o.keys {
		switch k {
		case "lat_lon":
			k = "latLon"
		case "top_left":
			k = "topLeft"
		case "bottom_right":
			k = "bottomRight"
		}
		if j := indexOf(out.keys, k); j >= 0 {
			out.vals[j] = o.vals[i]
			continue
		}
		out.keys = append(out.keys, k)
		out.vals = append(out.vals, o.vals[i])
	}
	return out
}

func indexOf(keys []string, k string) int {
	for i, x := range keys {
		if x == k {
			return i
		}
	}
	return -1
}

// convertGeopoint accepts every point format Koncorde does:
// "lat, lon", a geohash, [lat, lon], {lat, lon}, {lat_lon|latLon: [lat, lon]},
// {latLon: {lat, lon}}, {latLon: "lat, lon" | geohash}.
func convertGeopoint(v Value) (geoPoint, bool) {
	if !v.truthy() {
		return geoPoint{}, false
	}
	switch v.k {
	case kStr:
		return geoFromString(v.s)
	case kArr:
		if len(v.arr) == 2 {
			return toCoordinate(v.arr[0], v.arr[1])
		}
		return geoPoint{}, false
	case kObj:
	default:
		return geoPoint{}, false
	}
	o := camelCased(v.obj)
	lat, okLat := o.get("lat")
	lon, okLon := o.get("lon")
	if okLat && okLon {
		return toCoordinate(lat, lon)
	}
	ll, ok := o.get("latLon")
	if !ok {
		return geoPoint{}, false
	}
	switch ll.k {
	case kArr:
		if len(ll.arr) == 2 {
			return toCoordinate(ll.arr[0], ll.arr[1])
		}
		return geoPoint{}, false
	case kObj:
		lat, okLat := ll.obj.get("lat")
		lon, okLon := ll.obj.get("lon")
		if okLat && okLon {
			return toCoordinate(lat, lon)
		}
	case kStr:
		return geoFromString(ll.s)
	}
	// {latLon: null} makes Koncorde throw; we just see no point.
	return geoPoint{}, false
}

func geoFromString(s string) (geoPoint, bool) {
	parts := strings.Split(s, ",")
	if len(parts) == 2 {
		return toCoordinate(Value{k: kStr, s: parts[0]}, Value{k: kStr, s: parts[1]})
	}
	if isGeohash(s) {
		lat, lon := decodeGeohash(s)
		return geoPoint{lat, lon}, true
	}
	return geoPoint{}, false
}

func toCoordinate(lat, lon Value) (geoPoint, bool) {
	a := jsParseFloat(jsString(lat))
	b := jsParseFloat(jsString(lon))
	if math.IsNaN(a) || math.IsNaN(b) {
		return geoPoint{}, false
	}
	return geoPoint{a, b}, true
}

func isGeohash(s string) bool {
	if len(s) < 4 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z') {
			return false
		}
	}
	return true
}

const geohashAlphabet = "0123456789bcdefghjkmnpqrstuvwxyz"

// decodeGeohash returns the center of the geohash cell. Letters outside
// the geohash alphabet (a, i, l, o) count as 0, as in ngeohash.
func decodeGeohash(s string) (lat, lon float64) {
	isLon := true
	maxLat, minLat := 90.0, -90.0
	maxLon, minLon := 180.0, -180.0
	for i := 0; i < len(s); i++ {
		v := strings.IndexByte(geohashAlphabet, s[i])
		if v < 0 {
			v = 0
		}
		for bits := 4; bits >= 0; bits-- {
			bit := (v >> bits) & 1
			if isLon {
				mid := (maxLon + minLon) / 2
				if bit == 1 {
					minLon = mid
				} else {
					maxLon = mid
				}
			} else {
				mid := (maxLat + minLat) / 2
				if bit == 1 {
					minLat = mid
				} else {
					maxLat = mid
				}
			}
			isLon = !isLon
		}
	}
	return (minLat + maxLat) / 2, (minLon + maxLon) / 2
}

// jsParseFloat is JavaScript's parseFloat: leading white space skipped,
// the longest decimal prefix parsed, NaN when there is none.
func jsParseFloat(s string) float64 {
	s = strings.TrimLeftFunc(s, isJSSpace)
	i := 0
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		i++
	}
	if strings.HasPrefix(s[i:], "Infinity") {
		if s[0] == '-' {
			return math.Inf(-1)
		}
		return math.Inf(1)
	}
	start := i
	digits := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
		digits++
	}
	if i < len(s) && s[i] == '.' {
		j := i + 1
		frac := 0
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
			frac++
		}
		if digits > 0 || frac > 0 {
			i = j
			digits += frac
		}
	}
	if digits == 0 {
		return math.NaN()
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		j := i + 1
		if j < len(s) && (s[j] == '+' || s[j] == '-') {
			j++
		}
		k := j
		for k < len(s) && s[k] >= '0' && s[k] <= '9' {
			k++
		}
		if k > j {
			i = k
		}
	}
	_ = start
	f, _ := strconv.ParseFloat(s[:i], 64)
	return f
}

func isJSSpace(r rune) bool {
	switch r {
	case '\t', '\n', '\v', '\f', '\r', ' ', 0xA0, 0x1680, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000, 0xFEFF:
		return true
	}
	return r >= 0x2000 && r <= 0x200A || unicode.Is(unicode.Zs, r)
}

// Distance units: Koncorde hands "<number><unit>" to node-units, asking
// for meters. The rules below are that library's, including its
// surprises: time units are known too and "to m" then means minutes, so
// "1h" is 60 (meters); SI prefixes apply to any unit ("1km", "1cm", and
// "1min" is a milli-inch).

type unitDef struct {
	unit  string
	value float64
}

type unitSection struct {
	name  string
	units map[string]unitDef
}

// Only the sections that can convert "to m" matter; mass, volume and
// storage units are found but never convertible, which is an error.
var unitSections = []unitSection{
	{"time", map[string]unitDef{
		"second": {"s", 1}, "sec": {"s", 1}, "s": {"s", 1},
		"minute": {"s", 60}, "min": {"s", 60}, "m": {"s", 60},
		"hour": {"s", 3600}, "hr": {"s", 3600}, "h": {"s", 3600},
		"day":  {"s", 86400},
		"week": {"day", 7},
	}},
	{"distance", map[string]unitDef{
		"meter": {"m", 1}, "m": {"m", 1},
		"feet": {"m", 0.3048}, "ft": {"m", 0.3048},
		"inch": {"m", 0.0254}, "in": {"m", 0.0254},
		"yard": {"m", 0.9144}, "yd": {"m", 0.9144},
		"mile": {"m", 1609.34}, "mi": {"m", 1609.34},
	}},
}

type prefix struct {
	p   string
	mod float64
}

var shortPrefixes = []prefix{
	{"da", 10}, {"mu", 1e-6}, {"m", 1e-3}, {"h", 100}, {"k", 1000}, {"M", 1e6}, {"G", 1e9},
	{"T", 1e12}, {"P", 1e15}, {"E", 1e18}, {"Z", 1e21}, {"Y", 1e24}, {"n", 1e-9}, {"p", 1e-12},
	{"c", 1e-2}, {"d", 1e-1}, {"f", 1e-15}, {"a", 1e-18}, {"z", 1e-21}, {"y", 1e-24},
}

var longPrefixes = []prefix{
	{"milli", 1e-3}, {"micro", 1e-6}, {"nano", 1e-9}, {"pico", 1e-12}, {"centi", 1e-2},
	{"deci", 1e-1}, {"femto", 1e-15}, {"atto", 1e-18}, {"zepto", 1e-21}, {"yocto", 1e-24},
	{"deka", 10}, {"hecto", 100}, {"kilo", 1000}, {"mega", 1e6}, {"giga", 1e9}, {"tera", 1e12},
	{"peta", 1e15}, {"exa", 1e18}, {"zeta", 1e21}, {"yotta", 1e24},
}

type unitMatch struct {
	section int
	unit    string
	mod     float64
}

func unitVariations(u string) []string {
	out := []string{u}
	if len(u) == 2 {
		return out
	}
	for _, suf := range []string{"s", "es", "ies"} {
		if strings.HasSuffix(strings.ToLower(u), suf) {
			out = append(out, u[:len(u)-len(suf)])
		}
	}
	return out
}

func unitModifier(u string) (string, float64) {
	if len(u) > 3 {
		for _, p := range longPrefixes {
			if len(u) >= len(p.p) && strings.EqualFold(u[:len(p.p)], p.p) {
				return u[len(p.p):], p.mod
			}
		}
		return u, 1
	}
	for _, p := range shortPrefixes {
		if strings.HasPrefix(u, p.p) {
			return u[len(p.p):], p.mod
		}
	}
	return u, 1
}

func unitTypes(u string) []unitMatch {
	var out []unitMatch
	vars := unitVariations(u)
	for si, sec := range unitSections {
		for _, v := range vars {
			if _, ok := sec.units[v]; ok {
				out = append(out, unitMatch{si, v, 1})
				continue
			}
			if mu, mod := unitModifier(v); mu != "" || mod != 1 {
				if _, ok := sec.units[mu]; ok {
					out = append(out, unitMatch{si, mu, mod})
				}
			}
		}
	}
	return out
}

func unitConvert(sec map[string]unitDef, value float64, from, to string, calls int) (float64, bool) {
	if calls <= 0 {
		return 0, false
	}
	fb, ok1 := sec[from]
	tb, ok2 := sec[to]
	if !ok1 || !ok2 {
		return 0, false
	}
	switch {
	case fb.unit == to:
		return value * fb.value, true
	case tb.unit == fb.unit:
		return value * fb.value / tb.value, true
	}
	r, ok := unitConvert(sec, fb.value, fb.unit, to, calls-1)
	if !ok {
		return 0, false
	}
	return value * r, true
}

// numberWords are the words node-units' number parser rewrites; a
// distance spelling them is refused rather than guessed at.
var numberWords = []string{"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
	"ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
	"nineteen", "ninteen", "twenty", "thirty", "forty", "fourty", "fifty", "sixty", "seventy", "eighty",
	"ninety", "hundred", "thousand", "million", "billion", "trillion", "half", "third", "fourth",
	"quarter", "fifth", "sixth", "seventh", "eighth", "nineth"}

// convertDistance converts a distance such as "12km", "100 m", "1,5 mi" or
// "3 258,55 Ft" into meters, exactly as Koncorde does.
func convertDistance(distance string) (float64, error) {
	var b strings.Builder
	for _, r := range distance {
		switch {
		case r == '-' || isJSSpace(r):
		case r == ',':
			b.WriteByte('.')
		default:
			b.WriteRune(r)
		}
	}
	cleaned := strings.ToLower(b.String())
	split := -1
	for i := 0; i+1 < len(cleaned); i++ {
		if cleaned[i] >= '0' && cleaned[i] <= '9' && cleaned[i+1] >= 'a' && cleaned[i+1] <= 'z' {
			split = i + 1
			break
		}
	}
	bad := fmt.Errorf("unable to parse distance value %q", distance)
	if split < 0 {
		return 0, bad
	}
	num, unit := cleaned[:split], cleaned[split:]
	for i := 0; i < len(unit); i++ {
		if unit[i] < 'a' || unit[i] > 'z' {
			return 0, bad
		}
	}
	if strings.ContainsAny(num, "\n\r") {
		return 0, bad
	}
	for _, w := range numberWords {
		if strings.Contains(num, w) {
			return 0, fmt.Errorf("unsupported distance value %q: spell the number with digits", distance)
		}
	}
	value := jsParseFloat(num)
	from := unitTypes(unit)
	to := unitTypes("m")
	if len(from) == 0 {
		return 0, bad
	}
	var f, t *unitMatch
	for i := range from {
		for j := range to {
			if from[i].section == to[j].section {
				f, t = &from[i], &to[j]
				break
			}
		}
	}
	if f == nil {
		return 0, bad
	}
	value *= f.mod
	r, ok := unitConvert(unitSections[f.section].units, value, f.unit, t.unit, 5)
	if !ok {
		return 0, bad
	}
	return r / t.mod, nil
}

// --- geometry ---

const (
	wgs84A      = 6378137.0
	wgs84B      = 6356752.3142451793
	wgs84F      = (wgs84A - wgs84B) / wgs84A
	d2r         = math.Pi / 180
	sphereRadiu = 6378137
)

// envelope is Koncorde's rough bounding box of a circle, on a sphere.
func (s *shape) envelope() {
	r := s.outer
	dlat := r / sphereRadiu
	dlon := r / (sphereRadiu * math.Cos(math.Pi*s.lat/180))
	dlat *= 180 / math.Pi
	dlon *= 180 / math.Pi
	s.minLon, s.minLat = s.lon-dlon, s.lat-dlat
	s.maxLon, s.maxLat = s.lon+dlon, s.lat+dlat
}

// boxCovers is Boost's covered_by(point, box) for geographic boxes.
func boxCovers(minLat, minLon, maxLat, maxLon float64, p geoPoint) bool {
	if !(p.lat >= minLat && p.lat <= maxLat) {
		return false
	}
	if p.lon >= minLon && p.lon <= maxLon {
		return true
	}
	span := maxLon - minLon
	if span >= 360 {
		return true
	}
	diff := lonDistanceSigned(minLon, p.lon, 180)
	if diff < 0 {
		diff += 360
	}
	return minLon+diff <= maxLon
}

// covers tests a point against the shape as Koncorde's index does.
func (s *shape) covers(p geoPoint) bool {
	switch s.kind {
	case geoBox:
		return boxCovers(s.minLat, s.minLon, s.maxLat, s.maxLon, p)
	case geoCircle:
		if !boxCovers(s.minLat, s.minLon, s.maxLat, s.maxLon, p) {
			return false
		}
		return geoDistanceM(s.lat, s.lon, p.lat, p.lon) <= s.outer
	case geoAnnulus:
		if !boxCovers(s.minLat, s.minLon, s.maxLat, s.maxLon, p) {
			return false
		}
		d := geoDistanceM(s.lat, s.lon, p.lat, p.lon)
		return d <= s.outer && d >= s.inner
	case geoPolygon:
		return polygonCovers(s.poly, p)
	}
	return false
}

func fequals(a, b float64) bool {
	if a == b {
		return true
	}
	if math.IsInf(a, 0) || math.IsInf(b, 0) || math.IsNaN(a) || math.IsNaN(b) {
		return false
	}
	m := math.Max(math.Max(math.Abs(a), math.Abs(b)), 1)
	return math.Abs(a-b) <= 2.220446049250313e-16*m
}

// normalizeLon brings an angle into (-half, half] (half = 180 or pi).
func normalizeLon(x, half float64) float64 {
	period := 2 * half
	if fequals(x, -half) {
		return half
	}
	if x > -half && x <= half {
		return x
	}
	x = math.Mod(x+half, period)
	if x <= 0 {
		x += period
	}
	return x - half
}

func lonDistanceSigned(a, b, half float64) float64 {
	return normalizeLon(b-a, half)
}

func meridianArc(lat float64) float64 {
	n := wgs84F / (2 - wgs84F)
	m := wgs84A / (1 + n)
	return m * (lat + (-1.5*n)*math.Sin(2*lat))
}

// geoDistanceM is the geodesic distance in meters, as Boost computes it.
func geoDistanceM(lat1d, lon1d, lat2d, lon2d float64) float64 {
	lon1, lat1, lon2, lat2 := lon1d*d2r, lat1d*d2r, lon2d*d2r, lat2d*d2r
	diff := lonDistanceSigned(lon1, lon2, math.Pi)
	la1, la2 := lat1, lat2
	if la1 > la2 {
		la1, la2 = la2, la1
	}
	half := math.Pi / 2
	if fequals(diff, 0) || (fequals(la2, half) && fequals(la1, -half)) {
		return math.Abs(meridianArc(la2) - meridianArc(la1))
	}
	if fequals(math.Abs(diff), math.Pi) {
		sign := 1.0
		if la1+la2 < 0 {
			sign = -1
		}
		return math.Abs(sign*2*meridianArc(half) - meridianArc(la1) - meridianArc(la2))
	}
	return andoyer(lon1, lat1, lon2, lat2, true).dist
}

type inverse struct{ dist, azi float64 }

// andoyer is the Forsyth-Andoyer-Lambert inverse geodesic formula (first
// order), radians in, meters and radians out.
func andoyer(lon1, lat1, lon2, lat2 float64, wantDist bool) inverse {
	var res inverse
	if fequals(lon1, lon2) && fequals(lat1, lat2) {
		return res
	}
	f := wgs84F
	dlon := lon2 - lon1
	sinDlon, cosDlon := math.Sin(dlon), math.Cos(dlon)
	sinLat1, cosLat1 := math.Sin(lat1), math.Cos(lat1)
	sinLat2, cosLat2 := math.Sin(lat2), math.Cos(lat2)
	cosD := sinLat1*sinLat2 + cosLat1*cosLat2*cosDlon
	if cosD < -1 {
		cosD = -1
	} else if cosD > 1 {
		cosD = 1
	}
	d := math.Acos(cosD)
	sinD := math.Sin(d)
	if wantDist {
		K := (sinLat1 - sinLat2) * (sinLat1 - sinLat2)
		L := (sinLat1 + sinLat2) * (sinLat1 + sinLat2)
		threeSinD := 3 * sinD
		oneMinus, onePlus := 1-cosD, 1+cosD
		H, G := 0.0, 0.0
		if !fequals(oneMinus, 0) {
			H = (d + threeSinD) / oneMinus
		}
		if !fequals(onePlus, 0) {
			G = (d - threeSinD) / onePlus
		}
		dd := -(f / 4) * (H*K + G*L)
		res.dist = wgs84A * (d + dd)
		return res
	}
	if fequals(sinD, 0) {
		if cosD >= 0 || !fequals(sinLat1, 1) {
			res.azi = 0
		} else {
			res.azi = math.Pi
		}
		return res
	}
	A, U := 0.0, 0.0
	if fequals(cosLat2, 0) {
		if sinLat2 < 0 {
			A = math.Pi
		}
	} else {
		M := cosLat1*(sinLat2/cosLat2) - sinLat1*cosDlon
		A = math.Atan2(sinDlon, M)
		U = (f / 2) * cosLat1 * cosLat1 * math.Sin(2*A)
	}
	B, V := 0.0, 0.0
	if fequals(cosLat1, 0) {
		if sinLat1 < 0 {
			B = math.Pi
		}
	} else {
		N := cosLat2*(sinLat1/cosLat1) - sinLat2*cosDlon
		B = math.Atan2(sinDlon, N)
		V = (f / 2) * cosLat2 * cosLat2 * math.Sin(2*B)
	}
	T := d / sinD
	dA := V*T - U
	azi := A - dA
	if A >= 0 {
		if dA >= 0 {
			if azi < 0 {
				azi = 0
			}
		} else if azi > math.Pi {
			azi = math.Pi
		}
	} else {
		if dA <= 0 {
			if azi > 0 {
				azi = 0
			}
		} else if azi < -math.Pi {
			azi = -math.Pi
		}
	}
	res.azi = azi
	return res
}

// pt is a point in Boost's order: x = longitude, y = latitude, degrees.
type pt struct{ x, y float64 }

func pointsEqual(a, b pt) bool {
	if !fequals(a.y, b.y) {
		return false
	}
	if fequals(math.Abs(a.y), 90) {
		return true
	}
	return fequals(lonDistanceSigned(a.x, b.x, 180), 0)
}

// side of p relative to the geodesic p1->p2: 1 left, -1 right, 0 on it.
func geoSide(p1, p2, p pt) int {
	if pointsEqual(p, p1) || pointsEqual(p, p2) || pointsEqual(p1, p2) {
		return 0
	}
	a1p := andoyer(p1.x*d2r, p1.y*d2r, p.x*d2r, p.y*d2r, false).azi
	a12 := andoyer(p1.x*d2r, p1.y*d2r, p2.x*d2r, p2.y*d2r, false).azi
	diff := a1p - a12
	for diff > math.Pi {
		diff -= 2 * math.Pi
	}
	for diff <= -math.Pi {
		diff += 2 * math.Pi
	}
	if fequals(diff, 0) || fequals(diff, math.Pi) || fequals(diff, -math.Pi) {
		return 0
	}
	if diff > 0 {
		return -1
	}
	return 1
}

type winding struct {
	count, countS, raw, rawAnti int
	touches                     bool
}

func lonEqual(a, b float64) bool { return fequals(lonDistanceSigned(a, b, 180), 0) }

func sign(x float64) int {
	switch {
	case x > 0:
		return 1
	case x < 0:
		return -1
	}
	return 0
}

// checkTouch and count follow Boost's spherical winding strategy.
func (w *winding) checkTouch(p, s1, s2 pt, eq1, eq2, anti *bool) bool {
	const pi, halfPi = 180.0, 90.0
	eq1Strict := lonEqual(s1.x, p.x)
	eq2Strict := lonEqual(s2.x, p.x)
	antiP := p.x - pi
	if p.x <= 0 {
		antiP = p.x + pi
	}
	eq1Anti, eq2Anti := false, false
	*eq1 = eq1Strict
	if !*eq1 {
		eq1Anti = lonEqual(s1.x, antiP)
		*eq1 = eq1Anti
	}
	*eq2 = eq2Strict
	if !*eq2 {
		eq2Anti = lonEqual(s2.x, antiP)
		*eq2 = eq2Anti
	}
	*anti = fequals(lonDistanceSigned(s1.x, s2.x, 180), pi)
	if *anti {
		e := *eq1 || *eq2
		*eq1, *eq2 = e, e
		if fequals(math.Abs(p.y), halfPi) {
			*eq1, *eq2 = true, true
		}
	}
	if lonDistanceSigned(s2.x, p.x, 180) == 0 {
		n, s := fequals(s1.y, halfPi), fequals(s1.y, -halfPi)
		if n || s {
			if s {
				w.touches = s2.y > p.y
			} else {
				w.touches = s2.y < p.y
			}
			return w.touches
		}
	}
	if lonDistanceSigned(s1.x, p.x, 180) == 0 {
		n, s := fequals(s2.y, halfPi), fequals(s2.y, -halfPi)
		if n || s {
			if s {
				w.touches = s1.y > p.y
			} else {
				w.touches = s1.y < p.y
			}
			return w.touches
		}
	}
	if *eq1 && *eq2 {
		if !*anti {
			if (s1.y <= p.y && s2.y >= p.y) || (s2.y <= p.y && s1.y >= p.y) {
				if !eq1Anti || !eq2Anti {
					w.touches = true
				}
			}
		} else {
			if pi-s1.y-s2.y <= pi {
				if (eq1Strict && s1.y <= p.y) || (eq2Strict && s2.y <= p.y) || fequals(p.y, halfPi) {
					w.touches = true
				} else if !eq1Strict && !eq2Strict && fequals(p.y, -halfPi) {
					return false
				}
			} else {
				if (eq1Strict && s1.y >= p.y) || (eq2Strict && s2.y >= p.y) || fequals(p.y, -halfPi) {
					w.touches = true
				} else if !eq1Strict && !eq2Strict && fequals(p.y, halfPi) {
					return false
				}
			}
		}
		return true
	}
	return false
}

func calcCount(p, seg1, seg2 pt, eq1, eq2, anti bool) (int, bool) {
	const pi, halfPi = 180.0, 90.0
	s1Pole := fequals(math.Abs(seg1.y), halfPi)
	s2Pole := fequals(math.Abs(seg2.y), halfPi)
	if s1Pole && s2Pole {
		return 0, false
	}
	s1, s2 := seg1.x, seg2.x
	if s1Pole {
		s1 = 1
		if p.x != 0 {
			s1 = 0
		}
	}
	if s2Pole {
		s2 = 1
		if p.x != 0 {
			s2 = 0
		}
	}
	s1p := lonDistanceSigned(s1, p.x, 180)
	if anti {
		if s1p < 0 {
			return -2, false
		}
		return 2, false
	}
	s1s2 := lonDistanceSigned(s1, s2, 180)
	if eq1 || eq2 {
		c := 1
		if s1s2 < 0 {
			c = -1
		}
		e := s2
		if eq1 {
			e = s1
		}
		return c, lonEqual(p.x+pi, e)
	}
	c := 2
	if s1s2 < 0 {
		c = -2
	}
	if sign(s1p) == sign(s1s2) && math.Abs(s1p) < math.Abs(s1s2) {
		return c, false
	}
	s1pAnti := lonDistanceSigned(s1, p.x+pi, 180)
	if sign(s1pAnti) == sign(s1s2) && math.Abs(s1pAnti) < math.Abs(s1s2) {
		return c, true
	}
	return 0, false
}

func sideEqual(p, se pt, count int) int {
	if fequals(p.y, se.y) {
		return 0
	}
	ss1 := se
	ss2 := pt{se.x, se.y}
	if count > 0 {
		ss2.x += 1
	} else {
		ss2.x -= 1
	}
	ss2.x = normalizeLon(ss2.x, 180)
	return geoSide(ss1, ss2, p)
}

func (w *winding) apply(p, s1, s2 pt) bool {
	var eq1, eq2, anti bool
	var count int
	var isAnti bool
	if !w.checkTouch(p, s1, s2, &eq1, &eq2, &anti) {
		count, isAnti = calcCount(p, s1, s2, eq1, eq2, anti)
	}
	if count != 0 {
		if !isAnti {
			side := 0
			if count == 1 || count == -1 {
				se := s2
				if eq1 {
					se = s1
				}
				side = sideEqual(p, se, count)
			} else if !anti {
				side = geoSide(s1, s2, p)
			} else {
				v := 1
				if 180-s1.y-s2.y <= 180 {
					v = -1
				}
				side = sign(float64(count)) * v
			}
			if side == 0 {
				w.touches = true
				w.count = 0
				return false
			}
			if side*count > 0 {
				w.count += count
			}
			w.raw += count
		} else {
			w.countS -= count
			w.rawAnti -= count
		}
	}
	return !w.touches
}

func (w *winding) code() int {
	if w.touches {
		return 0
	}
	if w.raw != 0 && w.rawAnti != 0 {
		if w.raw > 0 {
			if w.count+w.countS == 0 {
				return -1
			}
			return 1
		}
	}
	if w.count == 0 {
		return -1
	}
	return 1
}

// polygonCovers is Boost's covered_by(point, polygon) for an open,
// counter-clockwise ring of [lat, lon] vertices (Koncorde's declaration):
// the ring is walked reversed, closing segment included.
func polygonCovers(poly [][2]float64, p geoPoint) bool {
	n := len(poly)
	if n < 3 {
		return false
	}
	q := pt{p.lon, p.lat}
	var w winding
	at := func(i int) pt { // reversed, closed view
		v := poly[(n-i%n)%n]
		return pt{v[1], v[0]}
	}
	for i := 0; i < n; i++ {
		if !w.apply(q, at(i), at(i+1)) {
			break
		}
	}
	return w.code() >= 0
}
